// Tests of the delivery sections of the configuration: delivery, loop_guard, adapters, routes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "adapters/lake/lake_config.h"
#include "adapters/registry.h"
#include "router/config/config.h"

namespace dvrouter {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A document that needs no webhook secret, followed by `rest` (top-level sections).
std::string NoAuth(std::string_view rest = "") {
  return "ingress:\n  auth:\n    mode: none\n" + std::string(rest);
}

std::string Msg(const Status& st) { return std::string(st.message()); }

Config ParseOk(std::string_view yaml) {
  Result<Config> c = ParseConfig(yaml);
  EXPECT_TRUE(c.ok()) << c.status().ToString() << "\n" << yaml;
  return c.ok() ? *c : Config{};
}

// Parses and expects an InvalidArgument whose message starts with `key_path + ": "`; returns the
// message for further checks.
std::string ExpectKeyError(std::string_view yaml, const std::string& key_path) {
  Result<Config> c = ParseConfig(yaml);
  EXPECT_FALSE(c.ok()) << "accepted:\n" << yaml;
  if (c.ok()) return "";
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << yaml;
  EXPECT_THAT(Msg(c.status()), StartsWith(key_path + ": ")) << yaml;
  return Msg(c.status());
}

// One adapter `x` of type lake with `lines` (indented by four) added.
std::string AdapterX(std::string_view lines) {
  return NoAuth("adapters:\n  x:\n    type: lake\n" + std::string(lines));
}

TEST(DeliveryConfigDefaults, NoAdaptersKeyGivesOneLakeAndARouteOfEverything) {
  Config c = ParseOk(NoAuth());
  ASSERT_EQ(c.adapters.size(), 1u);
  const AdapterConfig& lake = c.adapters[0];
  EXPECT_EQ(lake.name, "lake");
  EXPECT_EQ(lake.type, "lake");
  EXPECT_EQ(lake.Settings<LakeConfig>().dir, "./data/lake");
  EXPECT_EQ(lake.max_batch_events, AdapterConfig{}.max_batch_events);
  EXPECT_EQ(lake.initial_backoff_ms, AdapterConfig{}.initial_backoff_ms);
  EXPECT_EQ(c.FindAdapter("lake"), &c.adapters[0]);
  EXPECT_EQ(c.FindAdapter("nope"), nullptr);
  ASSERT_EQ(c.routes.size(), 1u);
  EXPECT_THAT(c.routes[0].adapters, ElementsAre("lake"));
  EXPECT_TRUE(c.routes[0].tables.empty());
  EXPECT_TRUE(c.routes[0].messages.empty());
  EXPECT_TRUE(c.routes[0].stages.empty());
  EXPECT_TRUE(c.routes[0].changed_columns.empty());

  const DeliveryConfig d;
  EXPECT_EQ(c.delivery.workers, d.workers);
  EXPECT_EQ(c.delivery.queue_capacity, d.queue_capacity);
  EXPECT_EQ(c.delivery.window_events, d.window_events);
  EXPECT_EQ(c.delivery.cursor_flush_ms, d.cursor_flush_ms);
  EXPECT_EQ(c.delivery.retention_ms, d.retention_ms);
  EXPECT_EQ(c.delivery.status_entries, d.status_entries);
  EXPECT_EQ(c.delivery.record_cache_bytes, 512u << 20);
  EXPECT_TRUE(c.loop_guard.user_ids.empty());
  EXPECT_TRUE(c.loop_guard.ignore_columns.empty());
}

TEST(DeliveryConfigDefaults, DefaultLakeLivesUnderTheDataDir) {
  Config c = ParseOk(NoAuth("journal:\n  data_dir: /srv/dvrouter\n"));
  ASSERT_EQ(c.adapters.size(), 1u);
  EXPECT_EQ(c.adapters[0].Settings<LakeConfig>().dir, "/srv/dvrouter/lake");
  // Also when the adapter is declared without a dir.
  Config declared =
      ParseOk(NoAuth("journal:\n  data_dir: /srv/dvrouter\nadapters:\n  mine:\n    type: lake\n"));
  ASSERT_EQ(declared.adapters.size(), 1u);
  EXPECT_EQ(declared.adapters[0].Settings<LakeConfig>().dir, "/srv/dvrouter/lake");
}

TEST(DeliveryConfigDefaults, SetDataDirMovesOnlyDefaultedLakeDirectories) {
  Config c = ParseOk(
      NoAuth("adapters:\n  a:\n    type: lake\n  b:\n    type: lake\n    dir: /srv/elsewhere\n"
             "routes:\n  - adapters: [a, b]\n    tables: [account]\n"));
  SetDataDir(&c, "/var/lib/dvrouter");
  EXPECT_EQ(c.journal.data_dir, "/var/lib/dvrouter");
  EXPECT_EQ(c.adapters[0].Settings<LakeConfig>().dir, "/var/lib/dvrouter/lake");
  EXPECT_EQ(c.adapters[1].Settings<LakeConfig>().dir, "/srv/elsewhere");
  // check-config shows the delivery settings, every adapter and every route.
  const std::string described = DescribeConfig(c);
  EXPECT_NE(described.find("adapters.a.dir: /var/lib/dvrouter/lake"), std::string::npos)
      << described;
  EXPECT_NE(described.find("adapters.b.type: lake"), std::string::npos);
  EXPECT_NE(described.find("delivery.window_events: 1024"), std::string::npos);
  EXPECT_NE(described.find("delivery.record_cache_bytes: 536870912"), std::string::npos);
  EXPECT_NE(described.find("tables account, messages *, stages *, changed_columns * -> a,b"),
            std::string::npos)
      << described;
}

TEST(DeliveryConfigDefaults, EmptyAdaptersMappingMeansNone) {
  Config c = ParseOk(NoAuth("adapters: {}\n"));
  EXPECT_TRUE(c.adapters.empty());
  EXPECT_TRUE(c.routes.empty());
}

TEST(DeliveryConfigDefaults, ExplicitRoutesReplaceTheDefaultRoute) {
  Config c = ParseOk(NoAuth("routes:\n  - tables: Contact\n    adapters: lake\n"));
  ASSERT_EQ(c.adapters.size(), 1u);
  EXPECT_EQ(c.adapters[0].name, "lake");
  ASSERT_EQ(c.routes.size(), 1u);
  EXPECT_EQ(c.routes[0].name, "route-0");
  EXPECT_THAT(c.routes[0].tables, ElementsAre("contact"));
  EXPECT_THAT(c.routes[0].adapters, ElementsAre("lake"));
}

TEST(DeliveryConfigValid, FullExample) {
  Config c = ParseOk(NoAuth(R"(journal:
  data_dir: /var/lib/dvrouter
delivery:
  workers: 4
  queue_capacity: 1024
  window_events: 256
  cursor_flush_interval: 1s
  retention: 48h
  status_entries: 0
  record_cache_bytes: 0
loop_guard:
  user_ids: [75C2DD85-E89E-E711-8122-000D3AA2331C, 00000000-0000-0000-0000-000000000001]
  ignore_columns: [ModifiedOn, dv_syncstate]
adapters:
  lake:
    type: lake
    dir: /data/lake
    roll_bytes: 8MiB
    roll_interval: 5s
    max_in_flight: 4
    batch:
      max_events: 100
      linger: 50ms
    retry:
      initial_backoff: 500ms
      max_backoff: 2m
      multiplier: 1.5
      max_attempts: 10
      max_age: 12h
      max_retry_after: 30s
    breaker:
      failures: 3
      open_for: 10s
  audit_lake-2:
    type: lake
    dir: /data/audit
routes:
  - name: contacts
    tables: [Contact, account]
    messages: [Update, Create]
    stages: [20, 40]
    changed_columns: [FirstName]
    adapters: [lake, audit_lake-2]
  - adapters: audit_lake-2
)"));
  EXPECT_EQ(c.delivery.workers, 4u);
  EXPECT_EQ(c.delivery.queue_capacity, 1024u);
  EXPECT_EQ(c.delivery.window_events, 256u);
  EXPECT_EQ(c.delivery.cursor_flush_ms, 1000u);
  EXPECT_EQ(c.delivery.retention_ms, 48ull * 3'600'000);
  EXPECT_EQ(c.delivery.status_entries, 0u);
  EXPECT_EQ(c.delivery.record_cache_bytes, 0u);
  EXPECT_THAT(c.loop_guard.user_ids, ElementsAre("75c2dd85-e89e-e711-8122-000d3aa2331c",
                                                 "00000000-0000-0000-0000-000000000001"));
  EXPECT_THAT(c.loop_guard.ignore_columns, ElementsAre("modifiedon", "dv_syncstate"));

  ASSERT_EQ(c.adapters.size(), 2u);
  EXPECT_EQ(c.adapters[0].name, "lake") << "adapters keep the file's order";
  EXPECT_EQ(c.adapters[1].name, "audit_lake-2");
  const AdapterConfig* lake = c.FindAdapter("lake");
  ASSERT_NE(lake, nullptr);
  EXPECT_EQ(lake->type, "lake");
  EXPECT_EQ(lake->Settings<LakeConfig>().dir, "/data/lake");
  EXPECT_EQ(lake->Settings<LakeConfig>().roll_bytes, 8ull << 20);
  EXPECT_EQ(lake->Settings<LakeConfig>().roll_ms, 5000u);
  EXPECT_EQ(lake->max_in_flight, 4u);
  EXPECT_EQ(lake->max_batch_events, 100u);
  EXPECT_EQ(lake->linger_ms, 50u);
  EXPECT_EQ(lake->initial_backoff_ms, 500u);
  EXPECT_EQ(lake->max_backoff_ms, 120'000u);
  EXPECT_DOUBLE_EQ(lake->backoff_multiplier, 1.5);
  EXPECT_EQ(lake->max_attempts, 10u);
  EXPECT_EQ(lake->max_age_ms, 12ull * 3'600'000);
  EXPECT_EQ(lake->max_retry_after_ms, 30'000u);
  EXPECT_EQ(lake->breaker_failures, 3u);
  EXPECT_EQ(lake->breaker_open_ms, 10'000u);

  const AdapterConfig* audit = c.FindAdapter("audit_lake-2");
  ASSERT_NE(audit, nullptr);
  const AdapterConfig defaults;
  EXPECT_EQ(audit->Settings<LakeConfig>().dir, "/data/audit");
  EXPECT_EQ(audit->Settings<LakeConfig>().roll_bytes, LakeConfig().roll_bytes);
  EXPECT_EQ(audit->max_batch_events, defaults.max_batch_events);
  EXPECT_EQ(audit->max_backoff_ms, defaults.max_backoff_ms);
  EXPECT_DOUBLE_EQ(audit->backoff_multiplier, defaults.backoff_multiplier);

  ASSERT_EQ(c.routes.size(), 2u);
  const RouteConfig& r0 = c.routes[0];
  EXPECT_EQ(r0.name, "contacts");
  EXPECT_THAT(r0.tables, ElementsAre("contact", "account"));
  EXPECT_THAT(r0.messages, ElementsAre("update", "create"));
  EXPECT_THAT(r0.stages, ElementsAre(20, 40));
  EXPECT_THAT(r0.changed_columns, ElementsAre("firstname"));
  EXPECT_THAT(r0.adapters, ElementsAre("lake", "audit_lake-2"));
  const RouteConfig& r1 = c.routes[1];
  EXPECT_EQ(r1.name, "route-1");
  EXPECT_TRUE(r1.tables.empty());
  EXPECT_THAT(r1.adapters, ElementsAre("audit_lake-2"));
}

TEST(DeliveryConfigValid, ScalarLoopGuardValuesAreListsOfOne) {
  Config c = ParseOk(NoAuth("loop_guard:\n  user_ids: ABC\n  ignore_columns: ModifiedOn\n"));
  EXPECT_THAT(c.loop_guard.user_ids, ElementsAre("abc"));
  EXPECT_THAT(c.loop_guard.ignore_columns, ElementsAre("modifiedon"));
}

TEST(DeliveryConfigErrors, DeliverySectionKeys) {
  ExpectKeyError(NoAuth("delivery: 5\n"), "delivery");
  ExpectKeyError(NoAuth("delivery:\n  worker: 2\n"), "delivery.worker");
  ExpectKeyError(NoAuth("delivery:\n  workers: 0\n"), "delivery.workers");
  ExpectKeyError(NoAuth("delivery:\n  workers: 65\n"), "delivery.workers");
  ExpectKeyError(NoAuth("delivery:\n  queue_capacity: 8\n"), "delivery.queue_capacity");
  ExpectKeyError(NoAuth("delivery:\n  cursor_flush_interval: 1\n"),
                 "delivery.cursor_flush_interval");
  ExpectKeyError(NoAuth("delivery:\n  retention: forever\n"), "delivery.retention");
  ExpectKeyError(NoAuth("delivery:\n  record_cache_bytes: lots\n"), "delivery.record_cache_bytes");
  ExpectKeyError(NoAuth("delivery:\n  record_cache_bytes: -1\n"), "delivery.record_cache_bytes");
  ExpectKeyError(NoAuth("delivery:\n  record_cache_bytes: 65GiB\n"), "delivery.record_cache_bytes");
}

TEST(DeliveryConfigErrors, LoopGuardKeys) {
  ExpectKeyError(NoAuth("loop_guard:\n  users: [a]\n"), "loop_guard.users");
  ExpectKeyError(NoAuth("loop_guard:\n  user_ids: {a: b}\n"), "loop_guard.user_ids");
  ExpectKeyError(NoAuth("loop_guard:\n  ignore_columns: [a, [b]]\n"),
                 "loop_guard.ignore_columns[1]");
}

TEST(DeliveryConfigErrors, UnknownAdapterType) {
  std::string msg = ExpectKeyError(NoAuth("adapters:\n  x:\n    type: kafka\n"), "adapters.x.type");
  EXPECT_THAT(msg, HasSubstr("kafka"));
  ExpectKeyError(NoAuth("adapters:\n  x:\n    dir: /d\n"), "adapters.x.type");
  ExpectKeyError(NoAuth("adapters:\n  x:\n"), "adapters.x.type");
}

TEST(DeliveryConfigErrors, UnknownKeyInsideAnAdapter) {
  ExpectKeyError(AdapterX("    colour: red\n"), "adapters.x.colour");
  ExpectKeyError(AdapterX("    retry:\n      jitter: full\n"), "adapters.x.retry.jitter");
  ExpectKeyError(AdapterX("    batch:\n      max: 5\n"), "adapters.x.batch.max");
  ExpectKeyError(AdapterX("    breaker:\n      open: 1s\n"), "adapters.x.breaker.open");
}

TEST(DeliveryConfigErrors, AdapterMustBeAMapping) {
  ExpectKeyError(NoAuth("adapters:\n  x: lake\n"), "adapters.x");
  ExpectKeyError(NoAuth("adapters: [lake]\n"), "adapters");
  ExpectKeyError(AdapterX("    retry: 5\n"), "adapters.x.retry");
}

TEST(DeliveryConfigErrors, BadAdapterNames) {
  std::string msg = ExpectKeyError(NoAuth("adapters:\n  Lake:\n    type: lake\n"), "adapters.Lake");
  EXPECT_THAT(msg, HasSubstr("a-z"));
  ExpectKeyError(NoAuth("adapters:\n  \"my lake\":\n    type: lake\n"), "adapters.my lake");
  ExpectKeyError(NoAuth("adapters:\n  lake.1:\n    type: lake\n"), "adapters.lake.1");
  ExpectKeyError(NoAuth("adapters:\n  " + std::string(65, 'a') + ":\n    type: lake\n"),
                 "adapters." + std::string(65, 'a'));
  ParseOk(NoAuth("adapters:\n  " + std::string(64, 'a') + ":\n    type: lake\n"));
}

TEST(DeliveryConfigErrors, DuplicateAdapterName) {
  std::string msg = ExpectKeyError(
      NoAuth("adapters:\n  x:\n    type: lake\n  x:\n    type: lake\n    dir: /other\n"),
      "adapters.x");
  EXPECT_THAT(msg, HasSubstr("duplicate"));
}

TEST(DeliveryConfigErrors, RetrySettings) {
  std::string msg =
      ExpectKeyError(AdapterX("    retry:\n      initial_backoff: 10s\n      max_backoff: 5s\n"),
                     "adapters.x.retry.max_backoff");
  EXPECT_THAT(msg, HasSubstr("initial_backoff"));
  // Against the default max_backoff (60s) as well.
  ExpectKeyError(AdapterX("    retry:\n      initial_backoff: 2m\n"),
                 "adapters.x.retry.max_backoff");
  for (const char* bad : {"0.5", "0.99", "10.5", "abc", "nan", "1.5x", "[2]"}) {
    ExpectKeyError(AdapterX("    retry:\n      multiplier: " + std::string(bad) + "\n"),
                   "adapters.x.retry.multiplier");
  }
  Config edge = ParseOk(AdapterX("    retry:\n      multiplier: 10\n"));
  ASSERT_EQ(edge.adapters.size(), 1u);
  EXPECT_DOUBLE_EQ(edge.adapters[0].backoff_multiplier, 10.0);
  ExpectKeyError(AdapterX("    retry:\n      max_retry_after: 10ms\n"),
                 "adapters.x.retry.max_retry_after");
}

TEST(DeliveryConfigErrors, BatchMaxEventsZero) {
  ExpectKeyError(AdapterX("    batch:\n      max_events: 0\n"), "adapters.x.batch.max_events");
  ExpectKeyError(AdapterX("    batch:\n      max_events: 100001\n"), "adapters.x.batch.max_events");
  ExpectKeyError(AdapterX("    max_in_flight: 0\n"), "adapters.x.max_in_flight");
  ExpectKeyError(AdapterX("    breaker:\n      failures: 0\n"), "adapters.x.breaker.failures");
  ExpectKeyError(AdapterX("    roll_bytes: 10\n"), "adapters.x.roll_bytes");
  ExpectKeyError(AdapterX("    dir: \"\"\n"), "adapters.x.dir");
}

TEST(DeliveryConfigErrors, RouteNamingAMissingAdapter) {
  std::string msg = ExpectKeyError(
      AdapterX("routes:\n  - adapters: x\n  - tables: contact\n    adapters: [x, nope]\n"),
      "routes[1].adapters");
  EXPECT_THAT(msg, HasSubstr("'nope'"));
  // Without an adapters section only the default "lake" exists.
  ExpectKeyError(NoAuth("routes:\n  - adapters: hook\n"), "routes[0].adapters");
  // With `adapters: {}` not even that.
  ExpectKeyError(NoAuth("adapters: {}\nroutes:\n  - adapters: lake\n"), "routes[0].adapters");
}

TEST(DeliveryConfigErrors, RouteWithoutAdapters) {
  std::string msg =
      ExpectKeyError(AdapterX("routes:\n  - tables: contact\n"), "routes[0].adapters");
  EXPECT_THAT(msg, HasSubstr("missing"));
  ExpectKeyError(AdapterX("routes:\n  - tables: contact\n    adapters: []\n"),
                 "routes[0].adapters");
}

TEST(DeliveryConfigErrors, BadStageValues) {
  for (const char* bad : {"30", "0", "forty", "[10, 50]", "-10"}) {
    std::string msg =
        ExpectKeyError(AdapterX("routes:\n  - stages: " + std::string(bad) + "\n    adapters: x\n"),
                       "routes[0].stages");
    EXPECT_THAT(msg, HasSubstr("10, 20 or 40")) << bad;
  }
}

TEST(DeliveryConfigErrors, RoutesMustBeAListOfMappings) {
  ExpectKeyError(AdapterX("routes:\n  first:\n    adapters: x\n"), "routes");
  ExpectKeyError(AdapterX("routes: everything\n"), "routes");
  ExpectKeyError(AdapterX("routes:\n  - x\n"), "routes[0]");
  ExpectKeyError(AdapterX("routes:\n  - adapters: x\n    tabels: contact\n"), "routes[0].tabels");
  ExpectKeyError(AdapterX("routes:\n  - adapters: x\n    tables: {a: b}\n"), "routes[0].tables");
}

}  // namespace
}  // namespace dvrouter
