// dvrouter's command-line entry point.
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>

#include <simdjson.h>

#include "adapters/dataverse/registration.h"
#include "adapters/registry.h"
#include "router/app/app.h"
#include "router/common/encoding.h"
#include "router/config/config.h"
#include "router/journal/file_journal.h"

namespace {

using dvrouter::Config;
using dvrouter::Result;
using dvrouter::Status;

struct Overrides {
  std::string listen, admin_listen, data_dir;
};

Result<Config> LoadWithOverrides(const std::string& path, const Overrides& o) {
  Result<Config> config = dvrouter::LoadConfigFile(path);
  if (!config.ok()) return config;
  if (!o.listen.empty()) {
    auto ep = dvrouter::ParseEndpoint(o.listen);
    if (!ep.ok())
      return dvrouter::InvalidArgument("--listen: " + std::string(ep.status().message()));
    config->ingress.listen = *ep;
  }
  if (!o.admin_listen.empty()) {
    auto ep = dvrouter::ParseEndpoint(o.admin_listen);
    if (!ep.ok()) {
      return dvrouter::InvalidArgument("--admin-listen: " + std::string(ep.status().message()));
    }
    config->admin.listen = *ep;
    if (Status st = dvrouter::ValidateAdmin(config->admin); !st.ok()) {
      return dvrouter::InvalidArgument("--admin-listen: " + std::string(st.message()));
    }
  }
  if (!o.data_dir.empty()) dvrouter::SetDataDir(&*config, o.data_dir);
  return config;
}

// Names come from decoded JSON strings: keep the output valid JSON whatever they hold.
std::string JsonSafe(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += '?';
    } else {
      out += c;
    }
  }
  return out;
}

int Serve(const std::string& path, const Overrides& o) {
  Result<Config> config = LoadWithOverrides(path, o);
  if (!config.ok()) {
    std::fprintf(stderr, "dvrouter: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  // Every file and directory the router creates (journal, DLQ, cursors, lake, SQLite) holds CRM
  // data: owner only (docs/operations.md, "Files and permissions").
  ::umask(0077);
  // Block the stop signals before any thread starts, then wait for them here.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  dvrouter::App app(std::move(config).value());
  if (Status st = app.Start(); !st.ok()) {
    std::fprintf(stderr, "dvrouter: cannot start: %s\n", st.ToString().c_str());
    app.Shutdown();
    return 1;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "dvrouter: signal %d, shutting down\n", sig);
  app.Shutdown();
  return 0;
}

int CheckConfig(const std::string& path, const Overrides& o) {
  Result<Config> config = LoadWithOverrides(path, o);
  if (!config.ok()) {
    std::fprintf(stderr, "dvrouter: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  std::cout << path << ": OK\n" << dvrouter::DescribeConfig(*config);
  return 0;
}

// Prints one JSON line per journal record (no body): what an operator checks first.
int DumpJournal(const std::string& data_dir, uint64_t from_seq, uint64_t limit) {
  uint64_t printed = 0;
  Status st = dvrouter::FileJournal::ScanDirectory(
      data_dir + "/journal", [&](const dvrouter::RecordView& v) {
        if (v.handle.seq < from_seq) return true;
        const dvrouter::EventHeader& h = *v.header;
        std::printf(
            "{\"seq\":%llu,\"event_id\":\"%s\",\"partition\":%u,\"received_ms\":%lld,"
            "\"table\":\"%s\",\"row_id\":\"%s\",\"message\":\"%s\",\"stage\":%d,"
            "\"mode\":%d,\"operation_id\":\"%s\",\"size_exceeded\":%s,\"body_bytes\":%zu,"
            "\"status_record\":%s,\"segment\":%llu,\"offset\":%llu}\n",
            static_cast<unsigned long long>(v.handle.seq), v.key.ToHex().c_str(),
            v.handle.partition, static_cast<long long>(v.received_ms),
            JsonSafe(h.primary_entity_name).c_str(), h.primary_entity_id.c_str(),
            JsonSafe(h.message_name).c_str(), h.stage, h.mode, h.operation_id.c_str(),
            h.size_exceeded ? "true" : "false", v.body.size(), h.status_record ? "true" : "false",
            static_cast<unsigned long long>(v.handle.segment),
            static_cast<unsigned long long>(v.handle.offset));
        return limit == 0 || ++printed < limit;
      });
  if (!st.ok()) {
    std::fprintf(stderr, "dvrouter: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}

// `dvrouter register`: the webhook and its steps in Dataverse (adapters/dataverse/registration.h).
int AdminCall(const std::string& admin, const std::string& token_file, const std::string& method,
              const std::string& target, std::string* body = nullptr);

// POST /reconcile, then GET /reconcile until that run finished; prints its summary. Exit 0 when
// it had no error, 1 otherwise (docs/reconciliation.md, "How it runs").
int Reconcile(const std::string& admin, const std::string& token_file, bool dry_run,
              const std::string& since, const std::string& table, int64_t timeout_s) {
  std::string answer, query;
  if (dry_run) query += "&dry_run=1";
  if (!since.empty()) query += "&since=" + dvrouter::UrlEncode(since);
  if (!table.empty()) query += "&table=" + dvrouter::UrlEncode(table);
  if (!query.empty()) query[0] = '?';
  if (int rc = AdminCall(admin, token_file, "POST", "/reconcile" + query, &answer); rc != 0) {
    return rc;
  }
  const size_t at = answer.find("\"started\":");
  if (at == std::string::npos) return 1;
  const std::string id = std::to_string(std::strtoull(answer.c_str() + at + 10, nullptr, 10));
  const std::string mark = "{\"id\":" + id + ",";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  for (;;) {
    if (std::chrono::steady_clock::now() > deadline) {
      std::cerr << "dvrouter: reconcile run " << id << " still running after --timeout "
                << timeout_s << "s; see GET /reconcile\n";
      return 1;
    }
    std::string runs;
    if (int rc = AdminCall(admin, token_file, "GET", "/reconcile", &runs); rc != 0) return rc;
    const size_t run = runs.find(mark);
    if (run != std::string::npos) {
      const size_t end = runs.find("\n", run);
      const std::string summary =
          runs.substr(run, end == std::string::npos ? runs.size() - run - 2 : end - run - 1);
      if (summary.find("\"state\":\"running\"") == std::string::npos) {
        // Its progress lines (a step or table each) to stderr, the summary to stdout.
        simdjson::dom::parser parser;
        simdjson::dom::array lines;
        if (parser.parse(summary).at_key("progress").get(lines) == simdjson::SUCCESS) {
          for (simdjson::dom::element line : lines) {
            std::string_view text;
            if (line.get(text) == simdjson::SUCCESS) std::cerr << text << "\n";
          }
        }
        std::cout << summary << "\n";
        return summary.find("\"state\":\"ok\"") != std::string::npos ? 0 : 1;
      }
    }
    usleep(200'000);  // a person waits for a run: poll five times a second
  }
}

int Register(const std::string& path, bool dry_run) {
  Result<Config> config = dvrouter::LoadConfigFile(path);
  if (!config.ok()) {
    std::fprintf(stderr, "dvrouter: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }
  if (!config->registration.present) {
    std::fprintf(stderr, "dvrouter: %s has no `registration` section\n", path.c_str());
    return 2;
  }
  const dvrouter::AdapterConfig* dv = config->FindAdapter(config->registration.dataverse);
  std::unique_ptr<dvrouter::WebApiClient> web;
  if (!dry_run)
    web = std::make_unique<dvrouter::WebApiClient>(dv->Settings<dvrouter::DataverseConfig>());
  if (Status st = dvrouter::RegisterWebhook(*config, web.get(), dry_run, std::cout); !st.ok()) {
    std::cout.flush();
    std::fprintf(stderr, "dvrouter: register: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  return 0;
}

// The admin token (docs/operations.md, "Admin authentication"): the file's content when
// --token-file is given, else $DVROUTER_ADMIN_TOKEN, else none; trailing whitespace dropped.
Result<std::string> AdminToken(const std::string& token_file) {
  std::string token;
  if (!token_file.empty()) {
    std::FILE* f = std::fopen(token_file.c_str(), "r");
    if (f == nullptr) {
      return dvrouter::InvalidArgument("--token-file: cannot read " + token_file + ": " +
                                       std::strerror(errno));
    }
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof(buf), f)) > 0;) token.append(buf, n);
    std::fclose(f);
    if (token.find_first_not_of(" \t\r\n") == std::string::npos) {
      return dvrouter::InvalidArgument("--token-file: " + token_file + " is empty");
    }
  } else if (const char* env = std::getenv("DVROUTER_ADMIN_TOKEN")) {
    token = env;
  }
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.find_first_of("\r\n") != std::string::npos) {
    return dvrouter::InvalidArgument("the admin token must be one line");
  }
  return token;
}

// One request to the admin listener (HTTP/1.1, Connection: close), with the admin token when
// there is one. Prints the body; returns 0 for 2xx, 1 otherwise (the body then explains).
int AdminCall(const std::string& admin, const std::string& token_file, const std::string& method,
              const std::string& target, std::string* body_out) {
  Result<std::string> token = AdminToken(token_file);
  if (!token.ok()) {
    std::fprintf(stderr, "dvrouter: %s\n", std::string(token.status().message()).c_str());
    return 2;
  }
  auto ep = dvrouter::ParseEndpoint(admin);
  if (!ep.ok()) {
    std::fprintf(stderr, "dvrouter: --admin: %s\n", std::string(ep.status().message()).c_str());
    return 2;
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string host = ep->host == "0.0.0.0" ? "127.0.0.1" : ep->host;
  if (int rc = getaddrinfo(host.c_str(), std::to_string(ep->port).c_str(), &hints, &res); rc != 0) {
    std::fprintf(stderr, "dvrouter: %s: %s\n", host.c_str(), gai_strerror(rc));
    return 2;
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    std::fprintf(stderr, "dvrouter: cannot reach the admin listener at %s: %s\n", admin.c_str(),
                 std::strerror(errno));
    freeaddrinfo(res);
    if (fd >= 0) close(fd);
    return 2;
  }
  freeaddrinfo(res);
  std::string request = method + " " + target + " HTTP/1.1\r\nHost: " + host +
                        "\r\nContent-Length: 0\r\nConnection: close\r\n";
  if (!token->empty()) request += "Authorization: Bearer " + *token + "\r\n";
  request += "\r\n";
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    std::fprintf(stderr, "dvrouter: send to %s failed\n", admin.c_str());
    close(fd);
    return 2;
  }
  std::string response;
  char buf[65536];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  const size_t split = response.find("\r\n\r\n");
  int status = 0;
  if (split == std::string::npos || std::sscanf(response.c_str(), "HTTP/1.%*d %d", &status) != 1) {
    std::fprintf(stderr, "dvrouter: malformed answer from %s\n", admin.c_str());
    return 2;
  }
  std::string body = response.substr(split + 4);
  if (body_out != nullptr && status / 100 == 2) {
    *body_out = std::move(body);
    return 0;
  }
  if (body.empty() || body.back() != '\n') body += '\n';
  std::fputs(body.c_str(), status / 100 == 2 ? stdout : stderr);
  return status / 100 == 2 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli{"dvrouter: durable Dataverse webhook router"};
  cli.require_subcommand(1);
  std::string config_path;
  Overrides overrides;

  CLI::App* serve = cli.add_subcommand("serve", "Run the router");
  serve->add_option("-c,--config", config_path, "YAML configuration file")->required();
  serve->add_option("--listen", overrides.listen,
                    "Ingress listener ADDR:PORT (overrides the file)");
  serve->add_option("--admin-listen", overrides.admin_listen,
                    "Admin listener ADDR:PORT (overrides the file)");
  serve->add_option("--data-dir", overrides.data_dir, "Data directory (overrides the file)");

  bool reference = false;
  CLI::App* check = cli.add_subcommand("check-config", "Validate a configuration file and exit");
  check->add_option("-c,--config", config_path, "YAML configuration file");
  check->add_flag("--reference", reference,
                  "Print every configuration key with its default and range (Markdown) and exit");
  check->add_option("--listen", overrides.listen, "Ingress listener ADDR:PORT");
  check->add_option("--admin-listen", overrides.admin_listen, "Admin listener ADDR:PORT");
  check->add_option("--data-dir", overrides.data_dir, "Data directory");

  std::string journal_dir = "./data";
  uint64_t from_seq = 0, limit = 0;
  CLI::App* journal = cli.add_subcommand("journal", "Print the journal's records as JSON lines");
  journal->add_option("--data-dir", journal_dir, "Data directory (the journal is in DIR/journal)");
  journal->add_option("--from", from_seq, "First sequence number to print");
  journal->add_option("--limit", limit, "Print at most this many records (0: all)");

  // Operations on a running router, through its admin listener.
  std::string admin = "127.0.0.1:9400";
  std::string token_file;
  std::string adapter, event_id;
  uint64_t dlq_id = 0, range_from = 0, range_to = 0;
  bool all = false;
  auto admin_option = [&](CLI::App* sub) {
    sub->add_option("--admin", admin, "The router's admin listener HOST:PORT")
        ->capture_default_str();
    sub->add_option("--token-file", token_file,
                    "File holding the admin token (default: $DVROUTER_ADMIN_TOKEN)");
  };
  CLI::App* status = cli.add_subcommand("status", "Show an event's delivery status per adapter");
  status->add_option("event_id", event_id, "The event id (32 hex digits)")->required();
  admin_option(status);
  CLI::App* dlq = cli.add_subcommand("dlq", "Dead-letter queue: list or replay");
  dlq->require_subcommand(1);
  CLI::App* dlq_list = dlq->add_subcommand("list", "List DLQ entries (JSON)");
  dlq_list->add_option("--adapter", adapter, "Only this adapter's entries");
  dlq_list->add_option("--id", dlq_id, "Only this entry");
  dlq_list->add_flag("--all", all, "Include entries already replayed");
  admin_option(dlq_list);
  CLI::App* dlq_replay = dlq->add_subcommand("replay", "Send DLQ entries back to their adapter");
  dlq_replay->add_option("--adapter", adapter, "Only this adapter's entries");
  dlq_replay->add_option("--id", dlq_id, "Only this entry");
  admin_option(dlq_replay);
  CLI::App* replay =
      cli.add_subcommand("replay", "Deliver a retained journal range again to one adapter");
  replay->add_option("--adapter", adapter, "The adapter")->required();
  replay->add_option("--from", range_from, "First sequence number")->required();
  replay->add_option("--to", range_to, "Last sequence number")->required();
  admin_option(replay);

  bool dry_run = false;
  CLI::App* reconcile = cli.add_subcommand(
      "reconcile",
      "Run reconciliation with Dataverse now in the running router, print each run's summary");
  reconcile->add_flag("--dry-run", dry_run, "Count what would be journaled; journal nothing");
  std::string reconcile_since, reconcile_table;
  int64_t reconcile_timeout_s = 4 * 3600;
  reconcile
      ->add_option("--timeout", reconcile_timeout_s,
                   "Seconds to wait for the run to finish (it goes on in the router)")
      ->check(CLI::Range(int64_t{1}, int64_t{7 * 24 * 3600}));
  reconcile->add_option(
      "--since", reconcile_since,
      "Check every failed job of this span again, handled or not (45s, 90m, 36h, 2d)");
  reconcile->add_option("--table", reconcile_table,
                        "Only this table's steps and change tracking (logical name)");
  admin_option(reconcile);
  CLI::App* reg = cli.add_subcommand(
      "register", "Create or update the webhook and its steps in Dataverse (idempotent)");
  reg->add_option("-c,--config", config_path, "YAML configuration file")->required();
  reg->add_flag("--dry-run", dry_run, "Print the requests instead of sending them");

  CLI11_PARSE(cli, argc, argv);
  auto filters = [&] {
    std::string q;
    if (!adapter.empty()) q += "&adapter=" + dvrouter::UrlEncode(adapter);
    if (dlq_id != 0) q += "&id=" + std::to_string(dlq_id);
    if (all) q += "&all=1";
    if (!q.empty()) q[0] = '?';
    return q;
  };
  if (status->parsed())
    return AdminCall(admin, token_file, "GET", "/events/" + dvrouter::UrlEncode(event_id));
  if (dlq_list->parsed()) return AdminCall(admin, token_file, "GET", "/dlq" + filters());
  if (dlq_replay->parsed()) return AdminCall(admin, token_file, "POST", "/dlq/replay" + filters());
  if (replay->parsed()) {
    return AdminCall(admin, token_file, "POST",
                     "/replay?adapter=" + dvrouter::UrlEncode(adapter) +
                         "&from=" + std::to_string(range_from) + "&to=" + std::to_string(range_to));
  }
  if (reconcile->parsed())
    return Reconcile(admin, token_file, dry_run, reconcile_since, reconcile_table,
                     reconcile_timeout_s);
  if (reg->parsed()) return Register(config_path, dry_run);
  if (journal->parsed()) return DumpJournal(journal_dir, from_seq, limit);
  if (serve->parsed()) return Serve(config_path, overrides);
  if (check->parsed() && reference) {
    std::cout << dvrouter::ConfigReference();
    return 0;
  }
  if (check->parsed() && config_path.empty()) {
    std::cerr << "check-config: --config is required (or --reference)\n";
    return 2;
  }
  if (check->parsed()) return CheckConfig(config_path, overrides);
  return 2;
}
