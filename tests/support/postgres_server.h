// A real PostgreSQL server for tests and benchmarks: initdb into a temporary directory, a free
// loopback port, its own socket directory, stopped and removed on destruction (also when a test
// fails midway). PostgreSQL refuses to run as root: as root, the server runs as the `postgres`
// system user (else `nobody`). Only the postmaster this object started and its children are
// ever signalled. Used from one thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dvrouter::testing {

class PostgresServer {
 public:
  // Finds initdb and postgres (/usr/lib/postgresql/<newest>/bin); false with a reason if absent.
  static bool Available(std::string* why);

  // initdb (trust auth, superuser "dvrouter", UTF8), start, wait until ready, create database
  // "dvrouter". fsync=false runs with fsync=off (tests: only processes are killed, never the
  // machine); true keeps PostgreSQL's durable default (benchmarks).
  // With a certificate and key (PEM), the server also accepts TLS (ssl=on).
  // A postmaster that cannot bind its port (taken since it was chosen) is started again on
  // another, three attempts in all; `first_port` (0: a free one) is the first attempt's.
  explicit PostgresServer(bool fsync = false, std::string tls_cert_pem = "",
                          std::string tls_key_pem = "", uint16_t first_port = 0);
  // Stops the server (or removes what a killed one left in shared memory), removes the directory.
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  // "host=127.0.0.1 port=N user=dvrouter dbname=dvrouter"
  std::string ConnInfo() const;
  // A router config's postgres adapter `name` on this server (under `adapters:`, two-space
  // indent), followed by `extra` (its other keys, four-space indent).
  std::string AdapterYaml(const std::string& name, const std::string& extra = "") const;

  // Starts the postmaster on the same directory and port; waits (<= 60 s) until it accepts
  // connections. False with error() set.
  bool Start();
  // SIGKILL to the postmaster and its backends (a crash), then reaps it; waits until no old
  // backend holds the shared memory, so Start() recovers on the same directory.
  void Kill();
  // Fast shutdown (SIGINT), bounded wait, SIGKILL as a last resort. Idempotent.
  void Stop();

  struct QueryResult {
    bool ok = false;
    std::string error;
    std::vector<std::vector<std::optional<std::string>>> rows;  // nullopt: NULL
  };
  // Runs `sql` on a fresh connection.
  QueryResult Query(const std::string& sql) const;

 private:
  bool RunAsServerUser(const std::vector<std::string>& argv, const std::string& log);
  pid_t Spawn(const std::vector<std::string>& argv, const std::string& log);
  bool Fail(const std::string& what);

  std::string bin_;
  std::string root_;  // temp dir: data/, sock/, log
  uint16_t port_ = 0;
  bool fsync_ = false;
  bool tls_ = false;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  bool drop_ = false;  // running as root: switch to uid_/gid_ in the child
  pid_t pid_ = -1;
  bool ok_ = false;
  std::string error_;
};

}  // namespace dvrouter::testing
