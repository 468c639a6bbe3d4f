// Test helpers: temporary directories, fixture files, child processes, waiting on conditions.
// Used from the test's main thread only.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace dvrouter::testing {

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string ReadFileOrDie(const std::string& path);
// The names in a directory, sorted.
std::vector<std::string> DirectoryEntries(const std::string& dir);
void WriteFileOrDie(const std::string& path, const std::string& contents);

// The Dataverse fixtures copied into tests/fixtures/dataverse.
std::string Fixture(const std::string& name);
std::vector<std::string> FixtureNames();

// Every occurrence of `from` replaced by `to` (building request variants from fixtures).
std::string ReplaceAll(std::string s, const std::string& from, const std::string& to);

// The value of "key":"value" in a flat JSON answer, or "" (tests read the router's replies).
std::string JsonStringField(const std::string& json, const std::string& key);

// A TCP port on 127.0.0.1 that was free a moment ago: chosen at random below the kernel's
// ephemeral range, which outgoing connections draw from, never the same twice in this process,
// checked by binding it; 0 if none was found. Thread-safe. docs/testing.md, "Ports".
uint16_t FreeLoopbackPort();

// A socket listening on 127.0.0.1:`port` (a test holding a port); -1 if it cannot bind or listen.
int ListenOnLoopback(uint16_t port);

// A self-signed certificate for 127.0.0.1 and localhost (openssl req): <dir>/<name>.crt and
// <dir>/<name>.key (PEM). False with openssl's output in *error.
bool MakeSelfSignedCert(const std::string& dir, const std::string& name, std::string* error);

// Polls `condition` until it holds or `timeout` passes; returns whether it held.
bool WaitFor(const std::function<bool()>& condition,
             std::chrono::milliseconds timeout = std::chrono::seconds(10));

// A child process; killed (SIGKILL) and reaped on destruction if still running.
class ChildProcess {
 public:
  ChildProcess(const std::string& binary, const std::vector<std::string>& args,
               const std::string& log_path);
  ~ChildProcess();
  pid_t pid() const { return pid_; }
  void Kill(int signal);
  // Waits for exit; returns the wait status, or -1 on timeout.
  int Wait(std::chrono::milliseconds timeout = std::chrono::seconds(30));

 private:
  pid_t pid_ = -1;
};

// Sets an environment variable for the lifetime of the object, then restores the old state.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, const char* value) : name_(std::move(name)) {
    if (const char* old = std::getenv(name_.c_str())) old_ = old;
    if (value == nullptr) {
      ::unsetenv(name_.c_str());
    } else {
      ::setenv(name_.c_str(), value, 1);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace dvrouter::testing
