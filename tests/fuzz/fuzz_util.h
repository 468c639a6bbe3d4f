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

// Text holding an integer outside [INT64_MIN, UINT64_MAX]: valid JSON that simdjson's DOM refuses
// (as NUMBER_ERROR, like a malformed number), copied by the router as the webhook sent it.
// (The 1-hour run of 2026-12-05 found -9515224950150682424, below INT64_MIN, which the first
// version of this rule, 20 digits or more, did not allow.)
inline bool HasHugeInteger(std::string_view text) {
  // simdjson takes integers in [INT64_MIN, UINT64_MAX]; JSON allows any number of digits.
  constexpr std::string_view kMaxNegative = "9223372036854775808";
  constexpr std::string_view kMaxPositive = "18446744073709551615";
  for (size_t i = 0; i < text.size();) {
    if (text[i] < '0' || text[i] > '9') {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < text.size() && text[end] >= '0' && text[end] <= '9') ++end;
    const std::string_view digits = text.substr(i, end - i);
    const std::string_view max = i > 0 && text[i - 1] == '-' ? kMaxNegative : kMaxPositive;
    if (digits.size() > max.size() || (digits.size() == max.size() && digits > max)) return true;
    i = end;
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
