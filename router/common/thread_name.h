// Names the calling thread (at most 15 characters are kept), so `top -H`, `ps -L`, perf and gdb
// tell the router's threads apart: dv-io-N, dv-journal, dv-worker-N, dv-maint and one name per
// adapter thread kind.
#pragma once

#include <pthread.h>

#include <string>

namespace dvrouter {

inline void SetThreadName(const std::string& name) {
  ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace dvrouter
