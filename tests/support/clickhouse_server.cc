#include "tests/support/clickhouse_server.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "tests/support/http_client.h"

namespace dvrouter::testing {

namespace {

// Debian 12 installs it in /usr/sbin; other packagings in /usr/bin.
std::string Binary() {
  for (const char* path : {"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"}) {
    if (::access(path, X_OK) == 0) return path;
  }
  return "";
}

std::string Tail(const std::string& text, size_t max = 2000) {
  return text.size() > max ? text.substr(text.size() - max) : text;
}

}  // namespace

bool ClickHouseServer::Available(std::string* why) {
  if (!Binary().empty()) return true;
  *why = "no clickhouse-server in /usr/sbin or /usr/bin (Debian package clickhouse-server)";
  return false;
}

ClickHouseServer::ClickHouseServer() {
  http_port_ = FreeLoopbackPort();
  tcp_port_ = FreeLoopbackPort();
  const std::string d = dir_.path();
  WriteFileOrDie(d + "/config.xml",
                 "<?xml version=\"1.0\"?>\n<yandex>\n"
                 "  <logger><level>warning</level><console>1</console></logger>\n"
                 "  <http_port>" +
                     std::to_string(http_port_) +
                     "</http_port>\n"
                     "  <tcp_port>" +
                     std::to_string(tcp_port_) +
                     "</tcp_port>\n"
                     "  <listen_host>127.0.0.1</listen_host>\n"
                     "  <path>" +
                     d + "/data/</path>\n  <tmp_path>" + d + "/tmp/</tmp_path>\n" +
                     "  <user_files_path>" + d + "/user_files/</user_files_path>\n" +
                     "  <format_schema_path>" + d + "/format_schemas/</format_schema_path>\n" +
                     "  <mark_cache_size>5368709</mark_cache_size>\n"
                     "  <max_concurrent_queries>50</max_concurrent_queries>\n"
                     "  <users_config>users.xml</users_config>\n"
                     "  <default_profile>default</default_profile>\n"
                     "  <default_database>default</default_database>\n"
                     "</yandex>\n");
  WriteFileOrDie(d + "/users.xml",
                 "<?xml version=\"1.0\"?>\n<yandex>\n"
                 "  <profiles><default></default></profiles>\n"
                 "  <users><default><password></password>"
                 "<networks><ip>127.0.0.1</ip><ip>::1</ip></networks>"
                 "<profile>default</profile><quota>default</quota></default></users>\n"
                 "  <quotas><default></default></quotas>\n"
                 "</yandex>\n");
  ok_ = Start();
}

ClickHouseServer::~ClickHouseServer() { Stop(); }

bool ClickHouseServer::Start() {
  if (child_) return true;
  const std::string log = dir_.path() + "/server.log";
  child_ = std::make_unique<ChildProcess>(
      Binary(), std::vector<std::string>{"--config-file=" + dir_.path() + "/config.xml"}, log);
  const bool up = WaitFor(
      [&] {
        HttpClient client(http_port_);
        return client.Get("/ping").status == 200;
      },
      std::chrono::seconds(60));
  if (!up) {
    error_ = "clickhouse-server did not answer /ping within 60 s: " + Tail(ReadFileOrDie(log));
    Kill();
    return ok_ = false;
  }
  return ok_ = true;
}

void ClickHouseServer::Kill() {
  if (!child_) return;
  child_->Kill(SIGKILL);
  child_->Wait();
  child_.reset();
}

void ClickHouseServer::Stop() {
  if (!child_) return;
  child_->Kill(SIGTERM);
  if (child_->Wait(std::chrono::seconds(30)) == -1) {
    child_->Kill(SIGKILL);
    child_->Wait();
  }
  child_.reset();
}

ClickHouseServer::QueryResult ClickHouseServer::Query(const std::string& sql) const {
  HttpClient client(http_port_);
  HttpReply r = client.Post("/", sql);
  QueryResult out;
  out.status = r.status;
  out.body = r.body;
  while (!out.body.empty() && out.body.back() == '\n') out.body.pop_back();
  return out;
}

}  // namespace dvrouter::testing
