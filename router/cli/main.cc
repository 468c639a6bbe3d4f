// dvrouter's command-line entry point.
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <iostream>

#include "router/app/app.h"
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
  }
  if (!o.data_dir.empty()) config->journal.data_dir = o.data_dir;
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
            "\"segment\":%llu,\"offset\":%llu}\n",
            static_cast<unsigned long long>(v.handle.seq), v.key.ToHex().c_str(),
            v.handle.partition, static_cast<long long>(v.received_ms),
            JsonSafe(h.primary_entity_name).c_str(), h.primary_entity_id.c_str(),
            JsonSafe(h.message_name).c_str(), h.stage, h.mode, h.operation_id.c_str(),
            h.size_exceeded ? "true" : "false", v.body.size(),
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

  CLI::App* check = cli.add_subcommand("check-config", "Validate a configuration file and exit");
  check->add_option("-c,--config", config_path, "YAML configuration file")->required();
  check->add_option("--listen", overrides.listen, "Ingress listener ADDR:PORT");
  check->add_option("--admin-listen", overrides.admin_listen, "Admin listener ADDR:PORT");
  check->add_option("--data-dir", overrides.data_dir, "Data directory");

  std::string journal_dir = "./data";
  uint64_t from_seq = 0, limit = 0;
  CLI::App* journal = cli.add_subcommand("journal", "Print the journal's records as JSON lines");
  journal->add_option("--data-dir", journal_dir, "Data directory (the journal is in DIR/journal)");
  journal->add_option("--from", from_seq, "First sequence number to print");
  journal->add_option("--limit", limit, "Print at most this many records (0: all)");

  CLI11_PARSE(cli, argc, argv);
  if (journal->parsed()) return DumpJournal(journal_dir, from_seq, limit);
  if (serve->parsed()) return Serve(config_path, overrides);
  if (check->parsed()) return CheckConfig(config_path, overrides);
  return 2;
}
