// deploy/ must not drift from the code: every metric its dashboards, alerts and docs name exists.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <filesystem>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "adapters/clickhouse/clickhouse_adapter.h"
#include "adapters/dataverse/dataverse_adapter.h"
#include "adapters/dataverse/dataverse_config.h"
#include "adapters/erp/erp_adapter.h"
#include "adapters/erp/erp_config.h"
#include "adapters/lake/lake_adapter.h"
#include "adapters/registry.h"
#include "adapters/sql/sqlite_adapter.h"
#include "router/app/reconcile_runner.h"
#include "router/cluster/cluster_admin.h"
#include "router/config/config.h"
#include "router/delivery/engine.h"
#include "router/journal/nats_journal.h"
#include "router/metrics/metrics.h"
#include "tests/support/nats_server.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

TEST(Deploy, EveryMetricNamedInDeployExists) {
  // The router's series plus those the delivery engine and the adapters register.
  RouterMetrics metrics;
  AdapterConfig lake_config;
  lake_config.name = "lake";
  lake_config.type = "lake";
  LakeAdapter lake(lake_config, &metrics.registry());
  // The other adapters' series (registered by their constructors; nothing is started).
  AdapterConfig sql_config;
  sql_config.name = "sql";
  sql_config.type = "sqlite";
  SqliteAdapter sql(sql_config, &metrics.registry());
  AdapterConfig ch_config;
  ch_config.name = "ch";
  ch_config.type = "clickhouse";
  ClickHouseAdapter ch(ch_config, &metrics.registry());
  AdapterConfig erp_config;
  erp_config.name = "erp";
  erp_config.type = "erp";
  erp_config.Settings<ErpConfig>().base_url = "http://127.0.0.1:1";
  ErpAdapter erp(erp_config, &metrics.registry());
  AdapterConfig dv_config;
  dv_config.name = "crm";
  dv_config.type = "dataverse";
  dv_config.Settings<DataverseConfig>().url = "http://127.0.0.1:1";
  DataverseAdapter dv(dv_config, &metrics.registry());
  ReconcileMetrics reconcile(&metrics.registry());
  NatsJournalMetrics nats(&metrics.registry());
  ClusterMetrics cluster(&metrics.registry(), "router-0");
  EngineOptions options;
  options.registry = &metrics.registry();
  DeliveryEngine engine(options, {EngineAdapter{lake_config, &lake}});
  const std::string exported = metrics.Serialize();
  std::set<std::string> families;
  for (size_t at = exported.find("# TYPE "); at != std::string::npos;
       at = exported.find("# TYPE ", at + 1)) {
    const size_t start = at + 7;
    families.insert(exported.substr(start, exported.find(' ', start) - start));
  }
  ASSERT_GT(families.size(), 10u);
  // Build targets and default table names in the docs share the prefix; they are not series.
  const std::set<std::string> targets = {
      "dvrouter_tests",        "dvrouter_bench_hotpath", "dvrouter_bench_sinks",
      "dvrouter_core",         "dvrouter_adapters",      "dvrouter_server",
      "dvrouter_test_support", "dvrouter_events",        "dvrouter_tombstones"};
  size_t checked = 0;
  std::vector<std::filesystem::path> files;
  for (const char* dir : {"/deploy", "/docs"}) {
    for (const auto& entry :
         std::filesystem::recursive_directory_iterator(std::string(DVROUTER_SOURCE_DIR) + dir)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
  }
  files.push_back(std::string(DVROUTER_SOURCE_DIR) + "/README.md");
  for (const auto& path : files) {
    struct {
      const std::filesystem::path& path() const { return p; }
      const std::filesystem::path& p;
    } entry{path};
    const std::string text = testing::ReadFileOrDie(entry.path().string());
    // Plain scan (std::regex trips GCC 12 warnings under sanitizers).
    for (size_t at = text.find("dvrouter_"); at != std::string::npos;
         at = text.find("dvrouter_", at + 1)) {
      if (at > 0 &&
          (std::isalnum(static_cast<unsigned char>(text[at - 1])) || text[at - 1] == '_' ||
           text[at - 1] == '-' || text[at - 1] == '/' || text[at - 1] == '.')) {
        continue;
      }
      size_t end = at;
      while (end < text.size() &&
             (std::islower(static_cast<unsigned char>(text[end])) || text[end] == '_')) {
        ++end;
      }
      const std::string name = text.substr(at, end - at);
      if (targets.count(name) || name == "dvrouter_") continue;  // a target, or the bare prefix
      bool known = false;
      for (const auto& family : families) {
        // Histograms export family_bucket, family_sum and family_count.
        if (name == family || name == family + "_bucket" || name == family + "_sum" ||
            name == family + "_count") {
          known = true;
        }
      }
      EXPECT_TRUE(known) << entry.path() << " names " << name << ", which dvrouter does not export";
      ++checked;
    }
  }
  EXPECT_GT(checked, 20u);
}

// docs/config-reference.md is what `dvrouter check-config --reference` prints today.
TEST(Docs, ConfigReferenceIsCurrent) {
  const std::string doc =
      testing::ReadFileOrDie(std::string(DVROUTER_SOURCE_DIR) + "/docs/config-reference.md");
  EXPECT_TRUE(doc == ConfigReference())
      << "docs/config-reference.md is stale: regenerate it with\n"
      << "  build/release/dvrouter check-config --reference > docs/config-reference.md";
}

// The keys of the generated reference: the first cell of each table row.
std::vector<std::string> ReferenceKeys() {
  std::vector<std::string> keys;
  const std::string ref = ConfigReference();
  for (size_t at = ref.find("\n| `"); at != std::string::npos; at = ref.find("\n| `", at + 1)) {
    const size_t start = at + 4;
    keys.push_back(ref.substr(start, ref.find('`', start) - start));
  }
  return keys;
}

// The reference is built from examples: they must reach every key a parser reads, i.e. every key
// literal passed to a Section accessor in the parsers appears in it.
TEST(Docs, ConfigReferenceListsEveryKeyTheParsersRead) {
  std::set<std::string> listed;  // every component of every key path
  for (const std::string& key : ReferenceKeys()) {
    size_t start = 0;
    for (size_t end; (end = key.find_first_of(".[]", start)) != std::string::npos;
         start = end + 1) {
      listed.insert(key.substr(start, end - start));
    }
    listed.insert(key.substr(start));
  }
  ASSERT_GT(listed.size(), 100u);
  std::vector<std::string> sources = {"/router/config/config.cc",
                                      "/adapters/common/http_config.cc"};
  for (const char* type :
       {"lake/lake", "sql/sql", "clickhouse/clickhouse", "erp/erp", "dataverse/dataverse"}) {
    sources.push_back(std::string("/adapters/") + type + "_config.cc");
  }
  size_t seen = 0;
  for (const std::string& file : sources) {
    const std::string src = testing::ReadFileOrDie(std::string(DVROUTER_SOURCE_DIR) + file);
    for (const char* accessor :
         {"String(\"", "DurationMs(\"", "Count(\"", "Child(\"", "Strings(\"", "Raw(\"", "Bytes(\"",
          "Bool(\"", "Endpoint(\"", "Double(\"", "Choice(\"", "ReadableFile(\""}) {
      const std::string needle = std::string(".") + accessor;
      for (size_t at = src.find(needle); at != std::string::npos; at = src.find(needle, at + 1)) {
        const size_t start = at + needle.size();
        const std::string key = src.substr(start, src.find('"', start) - start);
        ++seen;
        if (listed.count(key) == 0) {
          ADD_FAILURE() << file << " reads the key '" << key
                        << "', which no example in ConfigReference reaches";
        }
      }
    }
  }
  EXPECT_GT(seen, 100u);
}

// docs/configuration.md explains every key of the reference (as `key`, `a.key`, `key[]`,
// `key.<x>`..., or as a section heading).
TEST(Docs, ConfigurationNamesEveryKeyOfTheReference) {
  const std::string doc =
      testing::ReadFileOrDie(std::string(DVROUTER_SOURCE_DIR) + "/docs/configuration.md");
  std::set<std::string> keys;
  for (const std::string& path : ReferenceKeys()) {
    const size_t dot = path.find_last_of(".]");
    keys.insert(dot == std::string::npos ? path : path.substr(dot + 1));
  }
  ASSERT_GT(keys.size(), 100u);
  auto is_key_char = [](char c) { return std::islower(static_cast<unsigned char>(c)) || c == '_'; };
  for (const std::string& key : keys) {
    bool found = doc.find("## " + key + "\n") != std::string::npos;
    for (size_t at = doc.find(key); !found && at != std::string::npos; at = doc.find(key, at + 1)) {
      const char before = at == 0 ? ' ' : doc[at - 1];
      const size_t end = at + key.size();
      const char after = end < doc.size() ? doc[end] : ' ';
      // A whole name inside backticks: `key`, `a.key`, `key[]`, `key.x`, `key: ...`.
      found = !is_key_char(before) && !is_key_char(after) &&
              doc.rfind('`', at) != std::string::npos && doc.find('`', end) != std::string::npos &&
              doc.rfind('\n', at) < doc.rfind('`', at);
    }
    EXPECT_TRUE(found) << "docs/configuration.md does not name the key '" << key << "'";
  }
}

// The shipped configurations start: the container's and the Kubernetes ConfigMap's bind the admin
// listener beyond loopback, so they take its token from the environment (the Secret).
TEST(Deploy, ShippedConfigurationsParseAndGuardTheAdminListener) {
  const std::string root = DVROUTER_SOURCE_DIR;
  const std::string manifest = testing::ReadFileOrDie(root + "/deploy/kubernetes/dvrouter.yaml");
  // The ConfigMap's file: the lines indented by four after "dvrouter.yaml: |".
  std::string k8s;
  const size_t start = manifest.find("dvrouter.yaml: |\n");
  ASSERT_NE(start, std::string::npos);
  for (size_t at = manifest.find('\n', start) + 1; at < manifest.size();) {
    const size_t end = manifest.find('\n', at);
    const std::string line = manifest.substr(at, end - at);
    if (!line.starts_with("    ")) break;
    k8s += line.substr(4) + "\n";
    at = end + 1;
  }
  const std::string container = testing::ReadFileOrDie(root + "/deploy/container/dvrouter.yaml");
  for (const std::string* yaml : {&std::as_const(k8s), &container}) {
    ::setenv("DVROUTER_WEBHOOK_KEY", "deploy-key", 1);
    ::setenv("DVROUTER_ADMIN_TOKEN", "deploy-admin-token", 1);
    Result<Config> c = ParseConfig(*yaml);
    ASSERT_TRUE(c.ok()) << c.status().ToString() << "\n" << *yaml;
    EXPECT_EQ(c->admin.listen.host, "0.0.0.0");
    EXPECT_EQ(c->admin.auth.token, "deploy-admin-token");
    ::unsetenv("DVROUTER_ADMIN_TOKEN");
    c = ParseConfig(*yaml);
    ASSERT_FALSE(c.ok());
    EXPECT_TRUE(c.status().message().starts_with("admin.auth.token: ")) << c.status().ToString();
    ::unsetenv("DVROUTER_WEBHOOK_KEY");
  }
  EXPECT_NE(manifest.find("DVROUTER_ADMIN_TOKEN:"), std::string::npos) << "the Secret's token";
  EXPECT_NE(manifest.find("kind: NetworkPolicy"), std::string::npos);
  EXPECT_NE(manifest.find("- {port: admin}"), std::string::npos);
  EXPECT_EQ(testing::ReadFileOrDie(root + "/deploy/container/Dockerfile").find("--admin-listen"),
            std::string::npos)
      << "the container's admin listener comes from its configuration, with the token";
}

// The example of the replicated journal parses as its comments say.
TEST(Deploy, TheNatsJournalExampleParses) {
  testing::ScopedEnv key("DVROUTER_WEBHOOK_KEY", "deploy-key");
  testing::ScopedEnv password("DVROUTER_NATS_PASSWORD", "deploy-nats-password");
  Result<Config> c =
      LoadConfigFile(std::string(DVROUTER_SOURCE_DIR) + "/deploy/examples/nats-journal.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->journal.nats);
  EXPECT_EQ(c->journal.nats_config.servers.size(), 3u);
  EXPECT_EQ(c->journal.nats_config.replicas, 3u);
  EXPECT_EQ(c->journal.nats_config.password, "deploy-nats-password");
}

// The example of a cluster node parses: the cluster section on the replicated journal.
TEST(Deploy, TheClusterExampleParses) {
  testing::ScopedEnv key("DVROUTER_WEBHOOK_KEY", "deploy-key");
  testing::ScopedEnv password("DVROUTER_NATS_PASSWORD", "deploy-nats-password");
  Result<Config> c =
      LoadConfigFile(std::string(DVROUTER_SOURCE_DIR) + "/deploy/examples/cluster.yaml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->journal.nats);
  EXPECT_TRUE(c->cluster.enabled);
  EXPECT_EQ(c->cluster.node, "router-0");
  EXPECT_EQ(c->cluster.lease_ttl_ms, 5000u);
}

// Several router nodes (docs/journal-nats.md): a Deployment of 2+ pods with a disruption budget
// that keeps one, and a configuration with the cluster section on the replicated journal.
TEST(Deploy, TheClusterManifestRunsTwoNodesWithAClusterConfiguration) {
  const std::string path =
      std::string(DVROUTER_SOURCE_DIR) + "/deploy/kubernetes/dvrouter-cluster.yaml";
  const std::vector<YAML::Node> docs = YAML::LoadAllFromFile(path);
  std::string config;
  bool deployment = false, budget = false;
  for (const YAML::Node& d : docs) {
    const std::string kind = d["kind"].as<std::string>();
    if (kind == "Deployment") {
      deployment = true;
      EXPECT_GE(d["spec"]["replicas"].as<int>(), 2);
    }
    if (kind == "PodDisruptionBudget") {
      budget = true;
      EXPECT_EQ(d["spec"]["maxUnavailable"].as<int>(), 1);
    }
    if (kind == "ConfigMap") config = d["data"]["dvrouter.yaml"].as<std::string>();
  }
  EXPECT_TRUE(deployment && budget);
  testing::ScopedEnv key("DVROUTER_WEBHOOK_KEY", "deploy-key");
  testing::ScopedEnv token("DVROUTER_ADMIN_TOKEN", "deploy-admin-token");
  testing::ScopedEnv nats("DVROUTER_NATS_PASSWORD", "deploy-nats-password");
  testing::ScopedEnv pg("DVROUTER_PG_PASSWORD", "deploy-pg-password");
  Result<Config> c = ParseConfig(config);
  ASSERT_TRUE(c.ok()) << c.status().ToString() << "\n" << config;
  EXPECT_TRUE(c->journal.nats);
  EXPECT_TRUE(c->cluster.enabled);
  EXPECT_FALSE(c->cluster.node.empty()) << "the host name, i.e. the pod's";
  EXPECT_EQ(c->admin.auth.token, "deploy-admin-token");
  for (const AdapterConfig& a : c->adapters) {
    EXPECT_NE(a.type, "lake") << "local files need a shared volume";
    EXPECT_NE(a.type, "sqlite") << "local files need a shared volume";
  }
}

// The NATS cluster for the replicated journal: three servers, a disruption budget that keeps a
// quorum, and a configuration nats-server itself accepts.
TEST(Deploy, TheNatsClusterManifestHoldsAQuorumAndAValidConfiguration) {
  const std::vector<YAML::Node> docs =
      YAML::LoadAllFromFile(std::string(DVROUTER_SOURCE_DIR) + "/deploy/kubernetes/nats.yaml");
  ASSERT_EQ(docs.size(), 4u);
  std::string conf;
  for (const YAML::Node& d : docs) {
    const std::string kind = d["kind"].as<std::string>();
    if (kind == "StatefulSet") {
      EXPECT_EQ(d["spec"]["replicas"].as<int>(), 3);
    }
    if (kind == "PodDisruptionBudget") {
      EXPECT_EQ(d["spec"]["maxUnavailable"].as<int>(), 1);
    }
    if (kind == "ConfigMap") conf = d["data"]["nats.conf"].as<std::string>();
  }
  ASSERT_NE(conf.find("jetstream"), std::string::npos);
  for (const char* route : {"nats-0.nats:6222", "nats-1.nats:6222", "nats-2.nats:6222"}) {
    EXPECT_NE(conf.find(route), std::string::npos) << route;
  }
  std::string why;
  if (!testing::NatsServer::Available(&why)) GTEST_SKIP() << why;
  testing::TempDir tmp;
  testing::WriteFileOrDie(tmp.path() + "/nats.conf",
                          testing::ReplaceAll(conf, "/data", tmp.path() + "/store"));
  testing::ScopedEnv pod("POD_NAME", "nats-0");
  testing::ChildProcess check("/usr/sbin/nats-server", {"-c", tmp.path() + "/nats.conf", "-t"},
                              tmp.path() + "/check.log");
  const int status = check.Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << testing::ReadFileOrDie(tmp.path() + "/check.log");
}

}  // namespace
}  // namespace dvrouter
