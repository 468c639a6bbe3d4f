// A simulator (tests/simulators/) as a child process on a free loopback port: started with
// `--listen 127.0.0.1:0`, ready once it logs "<name> listening on 127.0.0.1:PORT", stopped with
// SIGTERM when the object goes (and by PDEATHSIG if the test dies).
#pragma once

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/http_client.h"
#include "tests/support/test_util.h"

namespace dvrouter::testing {

// The integer after "key": in a flat JSON text, or -1.
inline int64_t JsonNumber(const std::string& json, const std::string& key) {
  const size_t at = json.find("\"" + key + "\":");
  return at == std::string::npos ? -1 : std::atoll(json.c_str() + at + key.size() + 3);
}

class SimProcess {
 public:
  SimProcess(const std::string& binary, const std::string& name, const TempDir& tmp,
             const std::vector<std::string>& flags)
      : log_(tmp.path() + "/" + name + ".log") {
    WriteFileOrDie(log_, "");
    std::vector<std::string> args = {"--listen", "127.0.0.1:0"};
    args.insert(args.end(), flags.begin(), flags.end());
    child_ = std::make_unique<ChildProcess>(binary, args, log_);
    ready_ = WaitFor([&] {
      const std::string text = ReadFileOrDie(log_);
      const std::string marker = name + " listening on 127.0.0.1:";
      const size_t at = text.find(marker);
      if (at == std::string::npos) return false;
      port_ = static_cast<uint16_t>(std::stoi(text.substr(at + marker.size())));
      return true;
    });
  }
  ~SimProcess() { Stop(); }
  // Sends SIGTERM and returns the wait status (a second call: that of the first).
  int Stop() {
    if (!stopped_) {
      child_->Kill(SIGTERM);
      status_ = child_->Wait();
      stopped_ = true;
    }
    return status_;
  }
  bool ready() const { return ready_; }
  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string Get(const std::string& target) { return HttpClient(port_).Get(target).body; }
  std::string Stats() { return Get("/_stats"); }
  int64_t Stat(const std::string& key) { return JsonNumber(Stats(), key); }
  void Control(const std::string& query) {
    EXPECT_EQ(HttpClient(port_).Post("/_control?" + query, "").status, 200) << query;
  }
  std::string log() const { return ReadFileOrDie(log_); }

 private:
  std::string log_;
  std::unique_ptr<ChildProcess> child_;
  uint16_t port_ = 0;
  bool ready_ = false;
  bool stopped_ = false;
  int status_ = -1;
};

}  // namespace dvrouter::testing
