// nats-server processes for tests (Debian's nats-server with JetStream): one server, or a
// cluster of three (server_name, a cluster block with routes, one store_dir each), on free
// loopback ports in a temporary directory. A cluster is handed over formed: its JetStream meta
// group lists all three servers. Every server is stopped (SIGKILL if it must) when its object
// goes. Test thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/test_util.h"

namespace dvrouter::testing {

class NatsServer {
 public:
  // Whether nats-server is installed; false with a reason if not.
  static bool Available(std::string* why);

  // A single JetStream server.
  NatsServer();
  ~NatsServer();
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  uint16_t port() const { return port_; }
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return child_ ? child_->pid() : -1; }
  std::string log() const;

  // SIGKILL and reap (a crash); Start() brings it back on the same ports and store.
  void Kill();
  // SIGTERM, bounded wait, SIGKILL as a last resort.
  void Stop();
  // Starts (again); waits until it accepts connections. False with error() set.
  bool Start();
  // A cluster's server: whether its /healthz says its JetStream is current with the meta leader
  // and holds every stream and consumer it is a member of up to date (a server that came back
  // has caught up). Always false for a single server, which has no monitoring port.
  bool JetStreamCurrent() const;

 private:
  friend class NatsCluster;
  NatsServer(std::string dir, std::string config, uint16_t monitor_port);

  TempDir own_;
  std::string dir_, config_path_;
  uint16_t port_ = 0;
  uint16_t monitor_port_ = 0;  // 0: none
  std::unique_ptr<ChildProcess> child_;
  int starts_ = 0;
  bool ok_ = false;
  std::string error_;
};

// Three clustered JetStream servers (a stream of 3 replicas survives one's loss). The
// constructor waits until the meta group's leader counts the other two servers as current
// peers and a stream of 3 replicas is placed (and deleted again): before that such a stream
// finds "no suitable peers for placement". A cluster that has not formed in
// 30 s is stopped, its servers' logs go to stderr, and a new one starts on newly chosen ports;
// after 3 attempts in all, ok() is false and size() is 0.
class NatsCluster {
 public:
  NatsCluster();
  bool ok() const;
  std::string error() const;
  // The last lines of each server's log, for a failure message.
  std::string LogTails(size_t lines = 30) const;
  NatsServer& server(size_t i) { return *servers_[i]; }
  size_t size() const { return servers_.size(); }
  // The servers' URLs, for journal.nats.servers.
  std::vector<std::string> urls() const;
  // Creates the stream `name` of 3 replicas (memory storage, subject "dvtest.<name>") with one
  // JetStream request, no retry, and deletes it: true when it was placed on a leader and two
  // replicas, else false with *why. A server the meta group counts as a peer is still passed
  // over until its first statistics message arrives (nats-server 2.9).
  bool PlaceThreeReplicas(const std::string& name, std::string* why) const;

 private:
  // Starts three servers in `dir` on new ports under a cluster name of their own.
  void StartServers(const std::string& dir, const std::string& name);
  // Whether every server's JetStream is current, the meta leader has two current peers and a
  // stream of 3 replicas is placed; if not, *why says what is missing.
  bool Formed(std::string* why) const;

  TempDir dir_;
  std::vector<std::unique_ptr<NatsServer>> servers_;
  std::string error_;
};

}  // namespace dvrouter::testing
