// ClickHouseAdapter against a real clickhouse-server started by the test (tests/support/
// clickhouse_server.h): batch insert, dedupe of redelivered rows, schema and data errors to
// the DLQ with ClickHouse's message, an unreachable server, and the server killed while a
// dvrouter child process delivers to it.
#include "adapters/clickhouse/clickhouse_adapter.h"
#include "adapters/clickhouse/clickhouse_config.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>

#include "router/decode/decode.h"
#include "tests/support/clickhouse_server.h"
#include "tests/support/delivery_done.h"
#include "tests/support/http_client.h"
#include "tests/support/router_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::Fixture;

using testing::Done;

class Events {
 public:
  void Add(const std::string& fixture, uint64_t seq) {
    auto e = std::make_unique<Event>();
    e->body = Fixture(fixture);
    Decoder decoder(1 << 20);
    EXPECT_TRUE(decoder.Decode(e->body.data(), e->body.size(), e->body.size(), &e->header).ok());
    e->seq = seq;
    events_.push_back(std::move(e));
  }
  std::vector<Delivery> Batch() const {
    std::vector<Delivery> out;
    for (const auto& e : events_) {
      Delivery d;
      d.seq = e->seq;
      d.key = EventKey{e->seq, 99};
      d.header = &e->header;
      d.body = e->body;
      d.received_ms = 1'700'000'000'123;
      out.push_back(d);
    }
    return out;
  }

 private:
  struct Event {
    std::string body;
    EventHeader header;
    uint64_t seq = 0;
  };
  std::vector<std::unique_ptr<Event>> events_;
};

class ClickHouseAdapterTest : public ::testing::Test {
 protected:
  // One server for the test program, stopped at exit (and killed with the program).
  static testing::ClickHouseServer* server() {
    static testing::ClickHouseServer s;
    return &s;
  }
  void SetUp() override {
    std::string why;
    if (!testing::ClickHouseServer::Available(&why)) GTEST_SKIP() << why;
    ASSERT_TRUE(server()->ok()) << server()->error();
    static int counter = 0;
    table_ = "events_" + std::to_string(++counter) + "_" + std::to_string(::getpid());
  }
  AdapterConfig Config() {
    AdapterConfig c;
    c.name = "ch";
    c.type = "clickhouse";
    c.Settings<ClickHouseConfig>().url = server()->Url();
    c.Settings<ClickHouseConfig>().table = table_;
    return c;
  }
  std::vector<DeliveryResult> Deliver(Adapter& a, const Events& ev) {
    Done done;
    const std::vector<Delivery> batch = ev.Batch();
    a.Deliver(batch, &done);
    return done.Wait();
  }
  std::string Q(const std::string& sql) {
    auto r = server()->Query(sql);
    EXPECT_EQ(r.status, 200) << sql << "\n" << r.body;
    return r.body;
  }
  std::string table_;
};

TEST_F(ClickHouseAdapterTest, ABatchBecomesOneRowPerEventWithConvertedAttributes) {
  ClickHouseAdapter adapter(Config(), nullptr);
  ASSERT_TRUE(adapter.Start(1).ok());
  Events ev;
  ev.Add("update-contact-postop-async.json", 11);
  ev.Add("create-msdyn_agentstatus-postop-sync.json", 12);
  ev.Add("customaction-context-devkit-isodates.json", 13);
  for (const auto& r : Deliver(adapter, ev)) {
    EXPECT_EQ(r.outcome, DeliveryOutcome::kDelivered) << r.error;
  }
  adapter.Stop();
  EXPECT_EQ(Q("SELECT count() FROM " + table_), "3");
  EXPECT_EQ(Q("SELECT table_name, row_id, message, stage, seq FROM " + table_ +
              " WHERE seq = 11 FORMAT TabSeparated"),
            "contact\t6d81597f-0f9f-e711-8122-000d3aa2331c\tUpdate\t40\t11");
  EXPECT_EQ(Q("SELECT visitParamExtractString(attributes, 'firstname') FROM " + table_ +
              " WHERE seq = 11"),
            "James");
  // Dates to ISO-8601 UTC inside attributes; the operation time as DateTime('UTC') and ms.
  EXPECT_EQ(Q("SELECT visitParamExtractString(attributes, 'modifiedon') FROM " + table_ +
              " WHERE seq = 11"),
            "2017-09-26T00:04:07.000Z");
  EXPECT_EQ(Q("SELECT toString(received_time), received_time_ms FROM " + table_ +
              " WHERE seq = 11 FORMAT TabSeparated"),
            "2023-11-14 22:13:20\t1700000000123");
  EXPECT_EQ(Q("SELECT event_id FROM " + table_ + " WHERE seq = 12"), (EventKey{12, 99}.ToHex()));
}

TEST_F(ClickHouseAdapterTest, RedeliveredRowsCollapseToOnePerEvent) {
  ClickHouseAdapter adapter(Config(), nullptr);
  ASSERT_TRUE(adapter.Start(1).ok());
  Events ev;
  ev.Add("update-contact-postop-async.json", 1);
  ev.Add("update-msdyn_agentstatus-postop-async.json", 2);
  for (int round = 0; round < 3; ++round) {
    for (const auto& r : Deliver(adapter, ev)) {
      EXPECT_EQ(r.outcome, DeliveryOutcome::kDelivered) << r.error;
    }
  }
  adapter.Stop();
  EXPECT_EQ(Q("SELECT count() FROM " + table_ + " FINAL"), "2");
  EXPECT_EQ(Q("SELECT uniqExact(event_id) FROM " + table_), "2");
  Q("OPTIMIZE TABLE " + table_ + " FINAL");
  EXPECT_EQ(Q("SELECT count() FROM " + table_), "2");
}

TEST_F(ClickHouseAdapterTest, ASchemaErrorSendsTheBatchToTheDlqWithClickHousesMessage) {
  // A table someone else created without the attributes column; the adapter must not create.
  Q("CREATE TABLE " + table_ +
    " (event_id String, seq UInt64, table_name String) ENGINE = MergeTree ORDER BY event_id");
  AdapterConfig c = Config();
  c.Settings<ClickHouseConfig>().create_table = false;
  prometheus::Registry registry;
  ClickHouseAdapter adapter(c, &registry);
  ASSERT_TRUE(adapter.Start(1).ok());
  Events ev;
  ev.Add("update-contact-postop-async.json", 1);
  ev.Add("update-msdyn_agentstatus-postop-async.json", 2);
  const auto results = Deliver(adapter, ev);
  adapter.Stop();
  ASSERT_EQ(results.size(), 2u);
  for (const auto& r : results) {
    EXPECT_EQ(r.outcome, DeliveryOutcome::kPermanent);
    EXPECT_NE(r.error.find("Code: "), std::string::npos) << r.error;
  }
  EXPECT_EQ(Q("SELECT count() FROM " + table_), "0");
  // One failed insert: schema errors are not split row by row.
  double schema_errors = 0;
  for (const auto& f : registry.Collect()) {
    if (f.name != "dvrouter_clickhouse_errors_total") continue;
    for (const auto& m : f.metric) schema_errors += m.counter.value;
  }
  EXPECT_EQ(schema_errors, 1);
}

TEST_F(ClickHouseAdapterTest, ATableGoneAfterItWasCreatedIsRetriedAndCreatedAgain) {
  // A server that restarts answers "Table ... doesn't exist" (code 60) for a moment before its
  // tables are loaded; a dropped table answers the same. With create_table (the default) the
  // events are retried and the table created again, never dead-lettered.
  ClickHouseAdapter adapter(Config(), nullptr);
  ASSERT_TRUE(adapter.Start(1).ok());
  Events first;
  first.Add("update-contact-postop-async.json", 1);
  ASSERT_EQ(Deliver(adapter, first)[0].outcome, DeliveryOutcome::kDelivered);
  Q("DROP TABLE " + table_);
  Events second;
  second.Add("update-msdyn_agentstatus-postop-async.json", 2);
  const auto gone = Deliver(adapter, second);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].outcome, DeliveryOutcome::kRetryable) << gone[0].error;
  EXPECT_NE(gone[0].error.find("Code: 60"), std::string::npos) << gone[0].error;
  const auto retried = Deliver(adapter, second);
  adapter.Stop();
  EXPECT_EQ(retried[0].outcome, DeliveryOutcome::kDelivered) << retried[0].error;
  EXPECT_EQ(Q("SELECT count() FROM " + table_), "1");
}

TEST_F(ClickHouseAdapterTest, ABadValueSendsOnlyItsEventToTheDlq) {
  AdapterConfig c = Config();
  // "James" is no number: the contact's row fails, the others (no firstname: NULL) go in.
  c.Settings<ClickHouseConfig>().columns = {{"firstname", "first_name", "Int64"},
                                            {"msdyn_availableunitscapacity", "capacity", "Int64"}};
  ClickHouseAdapter adapter(c, nullptr);
  ASSERT_TRUE(adapter.Start(1).ok());
  Events ev;
  ev.Add("update-msdyn_agentstatus-postop-async.json", 1);
  ev.Add("update-contact-postop-async.json", 2);
  ev.Add("create-msdyn_agentstatus-postop-sync.json", 3);
  ev.Add("update-msdyn_agentstatus-postop-async.json", 4);
  const auto results = Deliver(adapter, ev);
  adapter.Stop();
  ASSERT_EQ(results.size(), 4u);
  EXPECT_EQ(results[0].outcome, DeliveryOutcome::kDelivered) << results[0].error;
  EXPECT_EQ(results[1].outcome, DeliveryOutcome::kPermanent);
  EXPECT_NE(results[1].error.find("Code: "), std::string::npos) << results[1].error;
  EXPECT_EQ(results[2].outcome, DeliveryOutcome::kDelivered) << results[2].error;
  EXPECT_EQ(results[3].outcome, DeliveryOutcome::kDelivered) << results[3].error;
  EXPECT_EQ(Q("SELECT count() FROM " + table_), "3");
  EXPECT_EQ(Q("SELECT sum(capacity), countIf(isNull(first_name)) FROM " + table_ +
              " FORMAT TabSeparated"),
            "300\t3");
}

// The sum and count of a histogram the adapter registered.
std::pair<double, uint64_t> HistogramOf(prometheus::Registry& registry, const std::string& name) {
  for (const auto& family : registry.Collect()) {
    if (family.name == name && !family.metric.empty()) {
      return {family.metric[0].histogram.sample_sum, family.metric[0].histogram.sample_count};
    }
  }
  return {0, 0};
}

// `results` holds `events` outcomes: the one at `bad` permanent, every other delivered.
void ExpectOnlyOnePermanent(const std::vector<DeliveryResult>& results, int events, int bad) {
  ASSERT_EQ(results.size(), static_cast<size_t>(events));
  for (int i = 0; i < events; ++i) {
    EXPECT_EQ(results[i].outcome,
              i == bad ? DeliveryOutcome::kPermanent : DeliveryOutcome::kDelivered)
        << i << ": " << results[i].error;
  }
}

// A batch larger than max_insert_bytes goes in as several inserts, each a slice of the rows; a
// bad row in a later slice is narrowed down within it, and only its event goes to the DLQ.
TEST_F(ClickHouseAdapterTest, ABatchLargerThanAnInsertIsSplitAndABadRowInALaterSliceIsFound) {
  AdapterConfig c = Config();
  ClickHouseConfig& ch = c.Settings<ClickHouseConfig>();
  ch.columns = {{"firstname", "first_name", "Int64"}};
  Events ev;
  constexpr int kEvents = 30;
  constexpr int kBad = 23;  // the contact's "James" is no Int64
  for (int i = 0; i < kEvents; ++i) {
    ev.Add(i == kBad ? "update-contact-postop-async.json"
                     : "update-msdyn_agentstatus-postop-async.json",
           static_cast<uint64_t>(i + 1));
  }
  // Inserts of three rows (rows are about 1 KB: the converted Target, not the whole body).
  std::string one;
  ASSERT_TRUE(ClickHouseAdapter::EncodeRow(ev.Batch()[0], ch, &one).ok());
  ch.max_insert_bytes = 3 * one.size() + 16;
  prometheus::Registry registry;
  ClickHouseAdapter adapter(c, &registry);
  ASSERT_TRUE(adapter.Start(1).ok());
  const auto results = Deliver(adapter, ev);
  adapter.Stop();
  ExpectOnlyOnePermanent(results, kEvents, kBad);
  EXPECT_EQ(Q("SELECT count(), uniqExact(seq), min(seq), max(seq) FROM " + table_ +
              " FORMAT TabSeparated"),
            "29\t29\t1\t30");
  EXPECT_EQ(Q("SELECT count() FROM " + table_ + " WHERE seq = " + std::to_string(kBad + 1)), "0");
  // Ten slices of three rows, the one with the bad row narrowed down in halves: every good row
  // went in once, in more inserts than the ten slices (one insert of the whole batch, narrowed
  // down, would take five).
  const auto [rows, inserts] = HistogramOf(registry, "dvrouter_clickhouse_insert_rows");
  EXPECT_EQ(rows, kEvents - 1);
  EXPECT_GE(inserts, 10u);
}

// The narrowing budget counts only the inserts made to narrow bad rows down: a batch of more
// slices than the budget still has a bad row in its last slice found, not its slice dead-lettered.
TEST_F(ClickHouseAdapterTest, ABadRowInTheLastOfManySlicesIsStillNarrowedDown) {
  AdapterConfig c = Config();
  ClickHouseConfig& ch = c.Settings<ClickHouseConfig>();
  ch.columns = {{"firstname", "first_name", "Int64"}};
  Events ev;
  constexpr int kEvents = 140;  // 70 slices of two rows: more than the 64 narrowing inserts
  for (int i = 0; i < kEvents; ++i) {
    ev.Add(i == kEvents - 1 ? "update-contact-postop-async.json"  // "James" is no Int64
                            : "update-msdyn_agentstatus-postop-async.json",
           static_cast<uint64_t>(i + 1));
  }
  // Slices of exactly two rows: every pair fits, no three rows do.
  const std::vector<Delivery> batch = ev.Batch();
  std::vector<size_t> sizes;
  for (const Delivery& d : batch) {
    std::string row;
    ASSERT_TRUE(ClickHouseAdapter::EncodeRow(d, ch, &row).ok());
    sizes.push_back(row.size());
  }
  size_t pair = 0, triple = SIZE_MAX;
  for (size_t k = 0; k + 1 < sizes.size(); k += 2) pair = std::max(pair, sizes[k] + sizes[k + 1]);
  for (size_t k = 0; k + 2 < sizes.size(); ++k) {
    triple = std::min(triple, sizes[k] + sizes[k + 1] + sizes[k + 2]);
  }
  ASSERT_LT(pair, triple);
  ch.max_insert_bytes = pair;
  ClickHouseAdapter adapter(c, nullptr);
  ASSERT_TRUE(adapter.Start(1).ok());
  const auto results = Deliver(adapter, ev);
  adapter.Stop();
  ExpectOnlyOnePermanent(results, kEvents, kEvents - 1);
  EXPECT_EQ(Q("SELECT count(), uniqExact(seq), max(seq) FROM " + table_ + " FORMAT TabSeparated"),
            "139\t139\t139");
}

// EncodeRow appends (Deliver encodes a batch into one buffer), and a body that does not parse
// appends nothing.
TEST(ClickHouseRows, EncodeRowAppendsAndABodyThatDoesNotParseAppendsNothing) {
  Events ev;
  ev.Add("update-contact-postop-async.json", 5);
  const std::vector<Delivery> batch = ev.Batch();
  ClickHouseConfig config;
  std::string alone, out = "earlier row\n";
  ASSERT_TRUE(ClickHouseAdapter::EncodeRow(batch[0], config, &alone).ok());
  ASSERT_TRUE(ClickHouseAdapter::EncodeRow(batch[0], config, &out).ok());
  EXPECT_EQ(out, "earlier row\n" + alone);
  Delivery bad = batch[0];
  const std::string garbage = "{\"InputParameters\": [";
  bad.body = garbage;
  const std::string before = out;
  EXPECT_FALSE(ClickHouseAdapter::EncodeRow(bad, config, &out).ok());
  EXPECT_EQ(out, before);
}

TEST_F(ClickHouseAdapterTest, AnUnreachableServerIsRetryable) {
  AdapterConfig c = Config();
  c.Settings<ClickHouseConfig>().url =
      "http://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  ClickHouseAdapter adapter(c, nullptr);
  ASSERT_TRUE(adapter.Start(1).ok());
  Events ev;
  ev.Add("update-contact-postop-async.json", 1);
  const auto results = Deliver(adapter, ev);
  adapter.Stop();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].outcome, DeliveryOutcome::kRetryable);
  EXPECT_NE(results[0].error.find("connect"), std::string::npos) << results[0].error;
}

TEST(ClickHouseErrors, AnswersAreRetryableUnlessTheyNameABadInsert) {
  EXPECT_FALSE(ClickHouseAdapter::RetryableAnswer(500, 27));   // cannot parse input (18.16)
  EXPECT_FALSE(ClickHouseAdapter::RetryableAnswer(500, 117));  // unknown field
  EXPECT_FALSE(ClickHouseAdapter::RetryableAnswer(400, 62));   // syntax error
  EXPECT_FALSE(ClickHouseAdapter::RetryableAnswer(404, 60));   // unknown table
  EXPECT_TRUE(ClickHouseAdapter::RetryableAnswer(500, 241));   // memory limit
  EXPECT_TRUE(ClickHouseAdapter::RetryableAnswer(500, 252));   // too many parts
  EXPECT_TRUE(ClickHouseAdapter::RetryableAnswer(503, -1));
  EXPECT_TRUE(ClickHouseAdapter::RetryableAnswer(403, 516));  // authentication
  EXPECT_FALSE(ClickHouseAdapter::RetryableAnswer(400, -1));
  ClientResponse r;
  r.status = 500;
  r.body = "Code: 27, e.displayText() = DB::Exception: Cannot parse input";
  EXPECT_EQ(ClickHouseAdapter::ExceptionCode(r), 27);
  r.headers = {{"x-clickhouse-exception-code", "62"}};
  EXPECT_EQ(ClickHouseAdapter::ExceptionCode(r), 62);
  r.headers.clear();
  r.body = "Service Unavailable";
  EXPECT_EQ(ClickHouseAdapter::ExceptionCode(r), -1);
}

TEST(ClickHouseSql, TheTableCollapsesRedeliveriesByEventId) {
  ClickHouseConfig c;
  c.columns = {{"revenue", "revenue", "Float64"}, {"modifiedon", "modified", "DateTime"}};
  const std::string sql = ClickHouseAdapter::CreateTableSql(c);
  EXPECT_NE(sql.find("ENGINE = ReplacingMergeTree(seq)"), std::string::npos) << sql;
  EXPECT_NE(sql.find("ORDER BY (table_name, event_id)"), std::string::npos) << sql;
  EXPECT_NE(sql.find("revenue Nullable(Float64)"), std::string::npos) << sql;
  EXPECT_NE(sql.find("modified Nullable(DateTime('UTC'))"), std::string::npos) << sql;
}

// Event n: an update of its own record carrying capacity n.
std::string Event(int n) {
  static const std::string base = Fixture("update-msdyn_agentstatus-postop-async.json");
  char op[40], row[40];
  std::snprintf(op, sizeof(op), "%08x-3333-4000-8000-%012d", n, n);
  std::snprintf(row, sizeof(row), "3d1feef9-604d-ef11-bfe3-%012d", n);
  return testing::ReplaceAll(testing::ReplaceAll(base, "1a14c3ec-9c50-ef11-bfe3-00224802dbb1", op),
                             "3d1feef9-604d-ef11-bfe3-6045bd03d9d8", row);
}

TEST(ClickHouseCrashTest, ServerKilledMidLoadAndRestartedLosesNothingAndKeepsOneRowPerEvent) {
  std::string why;
  if (!testing::ClickHouseServer::Available(&why)) GTEST_SKIP() << why;
  testing::ClickHouseServer ch;
  ASSERT_TRUE(ch.ok()) << ch.error();
  testing::TempDir tmp;
  const std::string log = tmp.path() + "/router.log";
  testing::WriteFileOrDie(log, "");
  ::setenv("DVROUTER_CH_TEST_KEY", "ch-key", 1);
  testing::WriteFileOrDie(tmp.path() + "/router.yaml",
                          "ingress:\n"
                          "  auth:\n"
                          "    mode: webhook_key\n"
                          "    secret: ${DVROUTER_CH_TEST_KEY}\n"
                          "journal:\n"
                          "  partitions: 16\n"
                          "adapters:\n"
                          "  ch:\n"
                          "    type: clickhouse\n"
                          "    url: " +
                              ch.Url() +
                              "\n"
                              "    batch:\n"
                              "      max_events: 100\n"
                              "      linger: 20ms\n"
                              "    retry:\n"
                              "      initial_backoff: 20ms\n"
                              "      max_backoff: 300ms\n"
                              "    breaker:\n"
                              "      open_for: 200ms\n"
                              "routes:\n"
                              "  - adapters: [ch]\n");
  testing::RouterProcess router(tmp, log);
  ASSERT_TRUE(router.WaitReady(1)) << testing::ReadFileOrDie(log);

  constexpr int kClients = 2, kEach = 600, kTotal = kClients * kEach;
  std::atomic<int> acks{0}, refused{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      testing::HttpClient client(router.port);
      for (int i = 0; i < kEach; ++i) {
        const auto r = client.Post("/webhooks/dataverse?code=ch-key", Event(c * kEach + i));
        ++(r.status == 200 ? acks : refused);
      }
    });
  }
  auto count = [&](const std::string& expr) {
    auto r = ch.Query("SELECT " + expr + " FROM dvrouter_events");
    return r.status == 200 ? std::atoi(r.body.c_str()) : -1;
  };
  const bool arriving =
      testing::WaitFor([&] { return count("count()") > 0; }, std::chrono::seconds(60));
  const int acked_at_kill = acks.load();
  ch.Kill();
  const bool acked_while_down =
      testing::WaitFor([&] { return acks.load() >= std::min(kTotal, acked_at_kill + 200); },
                       std::chrono::seconds(60));
  const bool restarted = ch.Start();
  for (auto& t : clients) t.join();
  ASSERT_TRUE(arriving) << testing::ReadFileOrDie(log);
  ASSERT_LE(acked_at_kill + 200, kTotal) << "the load ended before the kill";
  EXPECT_TRUE(acked_while_down);
  ASSERT_TRUE(restarted) << ch.error();
  EXPECT_EQ(refused.load(), 0);
  EXPECT_EQ(acks.load(), kTotal);
  EXPECT_TRUE(testing::WaitFor([&] { return count("uniqExact(event_id)") == kTotal; },
                               std::chrono::seconds(120)))
      << count("uniqExact(event_id)") << " of " << kTotal << "\n"
      << testing::ReadFileOrDie(log);
  EXPECT_EQ(ch.Query("SELECT count() FROM dvrouter_events FINAL").body, std::to_string(kTotal));
  // The outage was seen and retried, not missed.
  EXPECT_GT(
      testing::MetricSum(router.admin_port, "dvrouter_clickhouse_errors_total{adapter=\"ch\","), 0);
  EXPECT_GT(
      testing::MetricSum(router.admin_port, "dvrouter_delivery_retries_total{adapter=\"ch\"}"), 0);
  router.child().Kill(SIGTERM);
  EXPECT_EQ(router.child().Wait(), 0);
}

}  // namespace
}  // namespace dvrouter
