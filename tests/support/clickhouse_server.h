// A real clickhouse-server for tests and benchmarks: a minimal configuration written into a
// temporary directory, free loopback ports (HTTP and native), started as a child process
// (tests/support/test_util.h: it dies with the test process), stopped and removed on
// destruction. Used from one thread.
#pragma once

#include <memory>
#include <string>

#include "tests/support/test_util.h"

namespace dvrouter::testing {

class ClickHouseServer {
 public:
  // Is the Debian package's server binary installed?
  static bool Available(std::string* why);

  ClickHouseServer();
  ~ClickHouseServer();
  ClickHouseServer(const ClickHouseServer&) = delete;
  ClickHouseServer& operator=(const ClickHouseServer&) = delete;

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  uint16_t http_port() const { return http_port_; }
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(http_port_); }

  // (Re)starts on the same directory and ports; waits (<= 60 s) for GET /ping.
  bool Start();
  // SIGKILL, then reaped.
  void Kill();
  // SIGTERM, bounded wait, SIGKILL as a last resort. Idempotent.
  void Stop();

  struct QueryResult {
    int status = 0;  // HTTP status; 0: no answer
    std::string body;
  };
  // Runs `sql` over HTTP (POST /); the answer's text with the trailing newline removed.
  QueryResult Query(const std::string& sql) const;

 private:
  TempDir dir_;
  uint16_t http_port_ = 0, tcp_port_ = 0;
  std::unique_ptr<ChildProcess> child_;
  bool ok_ = false;
  std::string error_;
};

}  // namespace dvrouter::testing
