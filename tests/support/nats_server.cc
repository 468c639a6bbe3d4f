#include "tests/support/nats_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include "tests/support/http_client.h"

namespace dvrouter::testing {

namespace {

constexpr char kBinary[] = "/usr/sbin/nats-server";  // Debian installs it there

bool Accepts(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

bool NatsServer::Available(std::string* why) {
  if (::access(kBinary, X_OK) == 0) return true;
  *why = std::string(kBinary) + " not found (apt-get install nats-server)";
  return false;
}

NatsServer::NatsServer() : dir_(own_.path()) {
  port_ = FreeLoopbackPort();
  config_path_ = dir_ + "/nats.conf";
  WriteFileOrDie(config_path_, "listen: 127.0.0.1:" + std::to_string(port_) +
                                   "\njetstream {\n  store_dir: \"" + dir_ + "/store\"\n}\n");
  ok_ = Start();
}

NatsServer::NatsServer(std::string dir, std::string config, uint16_t monitor_port)
    : dir_(std::move(dir)), monitor_port_(monitor_port) {
  config_path_ = dir_ + "/nats.conf";
  WriteFileOrDie(config_path_, config);
  const size_t at = config.find("listen: 127.0.0.1:");
  port_ = static_cast<uint16_t>(std::stoi(config.substr(at + 18)));
}

NatsServer::~NatsServer() { Stop(); }

std::string NatsServer::log() const { return ReadFileOrDie(dir_ + "/nats.log"); }

bool NatsServer::Start() {
  Stop();
  child_ = std::make_unique<ChildProcess>(kBinary, std::vector<std::string>{"-c", config_path_},
                                          dir_ + "/nats.log");
  ++starts_;
  if (!WaitFor([&] { return Accepts(port_); }, std::chrono::seconds(20))) {
    error_ =
        "nats-server did not accept connections on port " + std::to_string(port_) + ":\n" + log();
    return false;
  }
  return true;
}

bool NatsServer::JetStreamCurrent() const {
  if (monitor_port_ == 0 || !child_) return false;
  HttpClient client(monitor_port_);
  return client.Connect() && client.Get("/healthz").status == 200;
}

void NatsServer::Kill() {
  if (!child_) return;
  child_->Kill(SIGKILL);
  child_->Wait();
  child_.reset();
}

void NatsServer::Stop() {
  if (!child_) return;
  child_->Kill(SIGTERM);
  if (child_->Wait(std::chrono::seconds(10)) == -1) {
    child_->Kill(SIGKILL);
    child_->Wait();
  }
  child_.reset();
}

NatsCluster::NatsCluster() {
  std::vector<uint16_t> ports, routes, monitors;
  for (int i = 0; i < 3; ++i) {
    ports.push_back(FreeLoopbackPort());
    routes.push_back(FreeLoopbackPort());
    monitors.push_back(FreeLoopbackPort());
  }
  for (int i = 0; i < 3; ++i) {
    const std::string dir = dir_.path() + "/n" + std::to_string(i);
    ::mkdir(dir.c_str(), 0700);
    std::string config =
        "server_name: n" + std::to_string(i) + "\nlisten: 127.0.0.1:" + std::to_string(ports[i]) +
        "\nhttp: 127.0.0.1:" + std::to_string(monitors[i]) + "\njetstream {\n  store_dir: \"" +
        dir + "/store\"\n}\ncluster {\n  name: dvrouter-test\n  listen: 127.0.0.1:" +
        std::to_string(routes[i]) + "\n  routes: [\n";
    for (int k = 0; k < 3; ++k) {
      if (k != i) config += "    nats-route://127.0.0.1:" + std::to_string(routes[k]) + "\n";
    }
    config += "  ]\n}\n";
    servers_.push_back(std::unique_ptr<NatsServer>(new NatsServer(dir, config, monitors[i])));
  }
  for (auto& s : servers_) s->ok_ = s->Start();
}

bool NatsCluster::ok() const {
  for (const auto& s : servers_) {
    if (!s->ok()) return false;
  }
  return true;
}

std::string NatsCluster::error() const {
  std::string out;
  for (const auto& s : servers_) out += s->error();
  return out;
}

std::vector<std::string> NatsCluster::urls() const {
  std::vector<std::string> out;
  for (const auto& s : servers_) out.push_back(s->url());
  return out;
}

}  // namespace dvrouter::testing
