// A dvrouter child process on free loopback ports, for crash and end-to-end tests.
#pragma once

#include <string>

#include "tests/support/http_client.h"
#include "tests/support/test_util.h"

namespace dvrouter::testing {

// The sum of every series on the admin listener's /metrics whose text starts with `prefix`
// (the name and leading labels), 0 if none.
inline double MetricSum(uint16_t admin_port, const std::string& prefix) {
  HttpClient admin(admin_port);
  const std::string text = admin.Get("/metrics").body;
  double sum = 0;
  for (size_t at = text.find("\n" + prefix); at != std::string::npos;
       at = text.find("\n" + prefix, at + 1)) {
    sum += std::stod(text.substr(text.find(' ', at + 1) + 1));
  }
  return sum;
}

class RouterProcess {
 public:
  // Runs `dvrouter serve -c <dir>/router.yaml --data-dir <dir>/data` on 127.0.0.1:0 ports (the
  // ingress on `listen` when given), appending its stderr to `log`.
  RouterProcess(const TempDir& tmp, const std::string& log,
                const std::string& listen = "127.0.0.1:0")
      : log_(log),
        child_(DVROUTER_BINARY,
               {"serve", "-c", tmp.path() + "/router.yaml", "--listen", listen, "--admin-listen",
                "127.0.0.1:0", "--data-dir", tmp.path() + "/data"},
               log) {}

  // Waits for the `run`-th "ingress on ..." line in the log and reads the ports from it.
  bool WaitReady(size_t run) {
    return WaitFor(
        [&] {
          // "dvrouter: ingress on 127.0.0.1:PORT/path, admin on 127.0.0.1:PORT".
          const std::string text = ReadFileOrDie(log_);
          const std::string kIngress = "ingress on ", kAdmin = "admin on 127.0.0.1:";
          size_t at = 0;
          for (size_t found = 0; (at = text.find(kIngress, at)) != std::string::npos;) {
            at += kIngress.size();
            if (text.compare(at, 8, "https://") == 0) at += 8;  // ingress.tls
            if (text.compare(at, 10, "127.0.0.1:") != 0) continue;
            at += 10;
            size_t admin_at = text.find(kAdmin, at);
            if (++found == run && admin_at != std::string::npos) {
              port = static_cast<uint16_t>(std::stoi(text.substr(at)));
              admin_port = static_cast<uint16_t>(std::stoi(text.substr(admin_at + kAdmin.size())));
              return true;
            }
          }
          return false;
        },
        std::chrono::seconds(30));
  }

  ChildProcess& child() { return child_; }
  uint16_t port = 0;
  uint16_t admin_port = 0;

 private:
  std::string log_;
  ChildProcess child_;
};

}  // namespace dvrouter::testing
