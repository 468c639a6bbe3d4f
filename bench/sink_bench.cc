// Events/s through the SQL and warehouse adapters into real servers this binary starts: a local
// PostgreSQL 15 (fsync on, as in production; tests/support/postgres_server.h), a SQLite file and
// a clickhouse-server (tests/support/clickhouse_server.h). Each
// iteration delivers `in_flight` batches of `batch` events of ~10 KB (update-msdyn_agentstatus
// fixture, row ids rolling over 200k records, so most writes merge into existing rows) and
// waits for every result. Arguments: batch size, batches in flight. The same-run baseline is
// BM_PostgresRoundTrip: an empty transaction per round trip (the latency floor); for ClickHouse
// BM_ClickHouseRoundTrip, `SELECT 1` over the same HTTP client.
#include <benchmark/benchmark.h>
#include <libpq-fe.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "adapters/clickhouse/clickhouse_adapter.h"
#include "adapters/clickhouse/clickhouse_config.h"
#include "adapters/common/http_client.h"
#include "adapters/sql/postgres_adapter.h"
#include "adapters/sql/sql_config.h"
#include "adapters/sql/sqlite_adapter.h"
#include "router/decode/decode.h"
#include "tests/support/clickhouse_server.h"
#include "tests/support/postgres_server.h"
#include "tests/support/test_util.h"

namespace dvrouter::bench {
namespace {

std::string Load(const std::string& name) {
  std::ifstream in(std::string(DVROUTER_FIXTURES_DIR) + "/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Stopped and removed at exit.
testing::PostgresServer* Server() {
  static testing::PostgresServer server(/*fsync=*/true);
  return &server;
}

// Pre-built events: bodies with distinct row ids, decoded once.
struct Corpus {
  static constexpr int kRecords = 200'000;
  std::vector<std::string> bodies;
  std::vector<EventHeader> headers;
  explicit Corpus(int n) {
    const std::string base = Load("update-msdyn_agentstatus-postop-async.json");
    bodies.reserve(n);
    headers.resize(n);
    Decoder decoder(1 << 20);
    for (int i = 0; i < n; ++i) {
      char row[40];
      std::snprintf(row, sizeof(row), "3d1feef9-604d-ef11-bfe3-%012d", i);
      bodies.push_back(testing::ReplaceAll(base, "3d1feef9-604d-ef11-bfe3-6045bd03d9d8", row));
      (void)decoder.Decode(bodies.back().data(), bodies.back().size(), bodies.back().size(),
                           &headers[i]);
    }
  }
};

Corpus& Events() {
  static Corpus corpus(Corpus::kRecords);
  return corpus;
}

class Waiter final : public DeliveryDone {
 public:
  void OnDelivered(std::span<const DeliveryResult> results) override {
    size_t failed = 0;
    for (const DeliveryResult& r : results) failed += r.outcome != DeliveryOutcome::kDelivered;
    std::lock_guard<std::mutex> lock(mu_);
    failed_ += failed;
    if (failed != 0 && error_.empty()) error_ = results[0].error;
    ++done_;
    cv_.notify_all();
  }
  void Wait(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_ >= n; });
  }
  size_t failed() const { return failed_; }
  const std::string& error() const { return error_; }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  size_t done_ = 0, failed_ = 0;
  std::string error_;
};

void Run(benchmark::State& state, Adapter& adapter) {
  const auto batch = static_cast<size_t>(state.range(0));
  const auto in_flight = static_cast<size_t>(state.range(1));
  Corpus& corpus = Events();
  static std::atomic<uint64_t> seq{1};  // increasing across runs: every event is newer
  size_t next = 0;
  std::vector<std::vector<Delivery>> batches(in_flight);
  for (auto _ : state) {
    Waiter waiter;
    for (auto& b : batches) {
      b.clear();
      for (size_t i = 0; i < batch; ++i) {
        const size_t k = next++ % corpus.bodies.size();
        Delivery d;
        d.seq = seq++;
        d.key = EventKey{d.seq, 1};
        d.header = &corpus.headers[k];
        d.body = corpus.bodies[k];
        d.received_ms = 1'700'000'000'000;
        b.push_back(d);
      }
    }
    for (auto& b : batches) adapter.Deliver(b, &waiter);
    waiter.Wait(batches.size());
    if (waiter.failed() != 0) {
      state.SkipWithError(("delivery failed: " + waiter.error()).c_str());
      break;
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * batch * in_flight));
}

AdapterConfig PostgresConfig(size_t pool) {
  AdapterConfig c;
  c.name = "bench";
  c.type = "postgres";
  c.Settings<SqlConfig>().port = Server()->port();
  c.Settings<SqlConfig>().sslmode = "disable";
  c.Settings<SqlConfig>().pool_size = pool;
  return c;
}

void BM_PostgresMultiRow(benchmark::State& state) {
  if (!Server()->ok()) return state.SkipWithError(Server()->error().c_str());
  PostgresAdapter adapter(PostgresConfig(static_cast<size_t>(state.range(1))), nullptr,
                          PostgresAdapter::Strategy::kMultiRow);
  (void)adapter.Start(1);
  Run(state, adapter);
  adapter.Stop();
}

void BM_PostgresPerEvent(benchmark::State& state) {
  if (!Server()->ok()) return state.SkipWithError(Server()->error().c_str());
  PostgresAdapter adapter(PostgresConfig(static_cast<size_t>(state.range(1))), nullptr,
                          PostgresAdapter::Strategy::kPerEvent);
  (void)adapter.Start(1);
  Run(state, adapter);
  adapter.Stop();
}

// Baseline: one empty pipelined transaction (BEGIN; COMMIT) per batch on one connection.
void BM_PostgresRoundTrip(benchmark::State& state) {
  if (!Server()->ok()) return state.SkipWithError(Server()->error().c_str());
  PGconn* pg = PQconnectdb(Server()->ConnInfo().c_str());
  if (PQstatus(pg) != CONNECTION_OK) {
    state.SkipWithError(PQerrorMessage(pg));
    PQfinish(pg);
    return;
  }
  for (auto _ : state) {
    PGresult* r = PQexec(pg, "BEGIN; COMMIT");
    PQclear(r);
  }
  PQfinish(pg);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

void BM_Sqlite(benchmark::State& state) {
  static testing::TempDir tmp;  // removed at exit
  testing::TempDir* dir = &tmp;
  AdapterConfig c;
  c.name = "bench";
  c.type = "sqlite";
  c.Settings<SqlConfig>().path = dir->path() + "/bench.db";
  SqliteAdapter adapter(c, nullptr);
  if (Status st = adapter.Start(1); !st.ok()) {
    return state.SkipWithError(std::string(st.message()).c_str());
  }
  Run(state, adapter);
  adapter.Stop();
}

// Stopped and removed at exit.
testing::ClickHouseServer* ClickHouse() {
  static testing::ClickHouseServer server;
  return &server;
}

// Arguments: batch, in flight (= connections), gzip.
void BM_ClickHouse(benchmark::State& state) {
  if (!ClickHouse()->ok()) return state.SkipWithError(ClickHouse()->error().c_str());
  AdapterConfig c;
  c.name = "bench";
  c.type = "clickhouse";
  c.Settings<ClickHouseConfig>().url = ClickHouse()->Url();
  c.Settings<ClickHouseConfig>().connections = static_cast<uint64_t>(state.range(1));
  c.Settings<ClickHouseConfig>().gzip = state.range(2) != 0;
  ClickHouseAdapter adapter(c, nullptr);
  (void)adapter.Start(1);
  Run(state, adapter);
  adapter.Stop();
}

// Baseline: `SELECT 1` over the same client and a kept-alive connection.
void BM_ClickHouseRoundTrip(benchmark::State& state) {
  if (!ClickHouse()->ok()) return state.SkipWithError(ClickHouse()->error().c_str());
  HttpClient client;
  for (auto _ : state) {
    auto r = client.Send({"POST", ClickHouse()->Url() + "/?query=SELECT%201", {}, ""});
    if (!r.ok() || r->status != 200) state.SkipWithError("SELECT 1 failed");
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}

BENCHMARK(BM_PostgresRoundTrip)->UseRealTime();
BENCHMARK(BM_ClickHouseRoundTrip)->UseRealTime();
BENCHMARK(BM_ClickHouse)->ArgsProduct({{1000, 10000}, {1, 2}, {0, 1}})->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_PostgresMultiRow)
    ->ArgsProduct({{1, 100, 500, 1000}, {1, 4}})
    ->UseRealTime()
    ->MinTime(2.0);
BENCHMARK(BM_PostgresPerEvent)->ArgsProduct({{1, 100, 1000}, {1, 4}})->UseRealTime()->MinTime(2.0);
BENCHMARK(BM_Sqlite)->ArgsProduct({{1, 100, 500, 1000}, {1}})->UseRealTime()->MinTime(2.0);

}  // namespace
}  // namespace dvrouter::bench
