// dvrouter's command-line entry point.
#include <CLI/CLI.hpp>

#include <csignal>
#include <cstdio>
#include <iostream>

#include "router/app/app.h"
#include "router/config/config.h"

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

  CLI11_PARSE(cli, argc, argv);
  if (serve->parsed()) return Serve(config_path, overrides);
  if (check->parsed()) return CheckConfig(config_path, overrides);
  return 2;
}
