#include "tests/support/nats_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <thread>

#include <nats/nats.h>
#include <simdjson.h>

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
  static int clusters = 0;  // test thread only
  constexpr int kAttempts = 3;
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    const std::string name =
        "dvrouter-test-" + std::to_string(::getpid()) + "-" + std::to_string(++clusters);
    const std::string dir = dir_.path() + "/" + name;
    ::mkdir(dir.c_str(), 0700);
    StartServers(dir, name);
    std::string why = "a server did not start";
    if (ok()) {
      // Every 200 ms: each look opens six connections to the servers forming the cluster.
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (!Formed(&why) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
      }
      if (why.empty()) return;
      why = "not formed in 30 s: " + why;
    }
    error_ = "cluster " + name + ", attempt " + std::to_string(attempt) + " of " +
             std::to_string(kAttempts) + ": " + why + "; its servers' logs:\n" + LogTails() +
             error();
    std::fprintf(stderr, "NatsCluster: %s\n", error_.c_str());
    servers_.clear();  // stops them
  }
}

void NatsCluster::StartServers(const std::string& dir, const std::string& name) {
  std::vector<uint16_t> ports, routes, monitors;
  for (int i = 0; i < 3; ++i) {
    ports.push_back(FreeLoopbackPort());
    routes.push_back(FreeLoopbackPort());
    monitors.push_back(FreeLoopbackPort());
  }
  for (int i = 0; i < 3; ++i) {
    const std::string node_dir = dir + "/n" + std::to_string(i);
    ::mkdir(node_dir.c_str(), 0700);
    std::string config =
        "server_name: n" + std::to_string(i) + "\nlisten: 127.0.0.1:" + std::to_string(ports[i]) +
        "\nhttp: 127.0.0.1:" + std::to_string(monitors[i]) + "\njetstream {\n  store_dir: \"" +
        node_dir + "/store\"\n}\ncluster {\n  name: " + name +
        "\n  listen: 127.0.0.1:" + std::to_string(routes[i]) + "\n  routes: [\n";
    for (int k = 0; k < 3; ++k) {
      if (k != i) config += "    nats-route://127.0.0.1:" + std::to_string(routes[k]) + "\n";
    }
    config += "  ]\n}\n";
    servers_.push_back(std::unique_ptr<NatsServer>(new NatsServer(node_dir, config, monitors[i])));
  }
  for (auto& s : servers_) s->ok_ = s->Start();
}

bool NatsCluster::Formed(std::string* why) const {
  bool leader_sees_all = false;
  for (size_t i = 0; i < servers_.size(); ++i) {
    const NatsServer& s = *servers_[i];
    const std::string server = "n" + std::to_string(i);
    if (!s.JetStreamCurrent()) {
      *why = server + "'s /healthz is not 200 (its JetStream is not current)";
      return false;
    }
    HttpClient client(s.monitor_port_);
    const HttpReply jsz = client.Connect() ? client.Get("/jsz") : HttpReply{};
    if (jsz.status != 200) {
      *why = server + "'s /jsz did not answer 200";
      return false;
    }
    // Only the meta leader lists the replicas: {"meta_cluster": {"replicas": [{"current":
    // true, ...}, ...]}}; a peer it has not heard from is missing, not current or offline.
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    simdjson::dom::array replicas;
    if (parser.parse(jsz.body).get(doc) != simdjson::SUCCESS) {
      *why = server + "'s /jsz is not JSON";
      return false;
    }
    if (doc.at_pointer("/meta_cluster/replicas").get(replicas) != simdjson::SUCCESS) continue;
    size_t current = 0;
    for (simdjson::dom::element peer : replicas) {
      bool is_current = false;
      bool offline = false;  // absent when false
      if (peer["current"].get(is_current) != simdjson::SUCCESS) is_current = false;
      if (peer["offline"].get(offline) != simdjson::SUCCESS) offline = false;
      if (is_current && !offline) ++current;
    }
    if (current == servers_.size() - 1) leader_sees_all = true;
  }
  if (!leader_sees_all) {
    *why = "no meta leader lists the other two servers as current peers";
    return false;
  }
  // Named apart from the tests' streams.
  if (!PlaceThreeReplicas("DVTEST_FIXTURE_PROBE", why)) return false;
  why->clear();
  return true;
}

bool NatsCluster::PlaceThreeReplicas(const std::string& name, std::string* why) const {
  const std::vector<std::string> servers = urls();
  std::vector<const char*> list;
  for (const std::string& u : servers) list.push_back(u.c_str());
  natsOptions* opts = nullptr;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 2000;
  natsStatus s = natsOptions_Create(&opts);
  if (s == NATS_OK) s = natsOptions_SetServers(opts, list.data(), static_cast<int>(list.size()));
  if (s == NATS_OK) s = natsOptions_SetTimeout(opts, 2000);
  if (s == NATS_OK) s = natsConnection_Connect(&nc, opts);
  if (s == NATS_OK) s = natsConnection_JetStream(&js, nc, &jo);
  int replicas = -1;
  if (s == NATS_OK) {
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name.c_str();
    const std::string subject = "dvtest." + name;
    const char* subjects[] = {subject.c_str()};
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Replicas = 3;
    cfg.Storage = js_MemoryStorage;
    jsStreamInfo* info = nullptr;
    s = js_AddStream(&info, js, &cfg, nullptr, nullptr);
    if (info != nullptr && info->Cluster != nullptr) replicas = info->Cluster->ReplicasLen;
    if (info != nullptr) jsStreamInfo_Destroy(info);
    if (s == NATS_OK) s = js_DeleteStream(js, cfg.Name, nullptr, nullptr);
  }
  if (s != NATS_OK) {
    *why = std::string("a stream of 3 replicas is not placed yet: ") + natsStatus_GetText(s) +
           " (" + nats_GetLastError(nullptr) + ")";
  } else if (replicas != 2) {
    *why = "a stream of 3 replicas was placed with " + std::to_string(replicas) +
           " replicas beside its leader";
  }
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  natsOptions_Destroy(opts);
  return s == NATS_OK && replicas == 2;
}

bool NatsCluster::ok() const {
  if (servers_.size() != 3) return false;
  for (const auto& s : servers_) {
    if (!s->ok()) return false;
  }
  return true;
}

std::string NatsCluster::error() const {
  std::string out = servers_.empty() ? error_ : "";
  for (const auto& s : servers_) out += s->error();
  return out;
}

std::string NatsCluster::LogTails(size_t lines) const {
  std::string out;
  for (const auto& s : servers_) {
    std::ifstream in(s->dir_ + "/nats.log");
    std::deque<std::string> tail;
    for (std::string line; std::getline(in, line);) {
      tail.push_back(std::move(line));
      if (tail.size() > lines) tail.pop_front();
    }
    out += "--- " + s->dir_ + "/nats.log, last lines:\n";
    for (const std::string& line : tail) out += line + "\n";
  }
  return out;
}

std::vector<std::string> NatsCluster::urls() const {
  std::vector<std::string> out;
  for (const auto& s : servers_) out.push_back(s->url());
  return out;
}

}  // namespace dvrouter::testing
