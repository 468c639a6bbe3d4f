// Helpers shared by the libFuzzer harnesses (tests/fuzz/*_fuzz.cc, docs/testing.md "Fuzzing"):
// a check that aborts with a message (libFuzzer then saves the input), and a scratch directory
// for harnesses that go through files. Each harness runs on one thread.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include <unistd.h>

namespace dvrouter::fuzz {

// An invariant of the code under test: its violation is a finding, like a crash.
inline void Check(bool ok, std::string_view what) {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %.*s\n", static_cast<int>(what.size()), what.data());
  std::abort();
}

// Text holding an integer of 20 digits or more: valid JSON that simdjson's DOM refuses (as
// NUMBER_ERROR, like a malformed number), copied by the router as the webhook sent it.
inline bool HasHugeInteger(std::string_view text) {
  size_t run = 0;
  for (char c : text) {
    run = (c >= '0' && c <= '9') ? run + 1 : 0;
    if (run >= 20) return true;
  }
  return false;
}

// This process's scratch directory (in /dev/shm when there is one: the journal harness writes
// files on every input), removed when the fuzzer exits; a crash leaves it for inspection.
inline const std::string& ScratchBase() {
  // Never destroyed: the exit handler below runs after static destructors would.
  static const std::string* const base = [] {
    const std::string root = std::filesystem::is_directory("/dev/shm")
                                 ? "/dev/shm"
                                 : std::filesystem::temp_directory_path().string();
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(ScratchBase(), ec);
    });
    return new std::string(root + "/dvrouter-fuzz-" + std::to_string(::getpid()));
  }();
  return *base;
}

// A directory of its own under ScratchBase(), emptied before each use.
inline std::string ScratchDir(std::string_view name) {
  const std::string dir = ScratchBase() + "/" + std::string(name);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir, ec);
  return dir;
}

}  // namespace dvrouter::fuzz
