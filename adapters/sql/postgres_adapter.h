// PostgresAdapter: Dataverse rows into PostgreSQL through libpq, with the semantics of
// sql_row.h (merge of partial updates, version guard, soft or hard delete, typed columns).
//
// Pool: `pool_size` connections, each owned by one thread that takes whole batches from a
// shared queue, so up to pool_size batches are written at once and the delivery workers never
// block on the database. A connection that fails is dropped and reopened with exponential
// backoff (250 ms doubling to 10 s); meanwhile its batches fail as retryable at once, so the
// engine's retry policy and breaker see the outage. Connections use the configured sslmode /
// sslrootcert, connect_timeout, application_name, target_session_attrs=read-write and
// statement_timeout (sent as a startup option).
//
// A batch is one transaction written in one round trip: libpq pipeline mode carries BEGIN, one
// multi-row `INSERT ... SELECT FROM (VALUES ...) ON CONFLICT (id) DO UPDATE ... WHERE
// t.version < excluded.version` per table (and one statement per table for deletes), COMMIT
// and a sync. bench/sink_bench.cc measured this against one statement per event in the same
// pipeline (Strategy::kPerEvent): multi-row was 2.2-2.3x faster at batches of 100-1000 and the
// same at 1 (bench/README.md), so it is the strategy; the other remains for the benchmark. A
// permanent error (constraint, type, syntax) in a batch of several events is narrowed down by
// writing each event in its own transaction, so only the bad events go to the DLQ, with the
// server's message.
//
// Errors: SQLSTATE classes per sql_row.h; connection loss, serialization failure, deadlock,
// admin shutdown, statement timeout and resource errors are retryable, the rest permanent.
#pragma once

#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "adapters/adapter.h"
#include "adapters/common/job_queue.h"
#include "adapters/sql/sql_config.h"
#include "adapters/sql/sql_row.h"
#include "router/config/config.h"

namespace prometheus {
class Registry;
}

namespace dvrouter {

class PostgresAdapter final : public Adapter {
 public:
  enum class Strategy { kMultiRow, kPerEvent };

  PostgresAdapter(AdapterConfig config, prometheus::Registry* registry,
                  Strategy strategy = Strategy::kMultiRow);
  ~PostgresAdapter() override;

  std::string_view name() const override { return config_.name; }
  // A record's events in one batch are written in rounds, in order (Deliver).
  RecordOrdering record_ordering() const override { return RecordOrdering::kOneBatchInFlight; }
  // Starts the pool threads; they connect on their first batch (a database that is down at
  // start is an outage like any other, not a start failure).
  Status Start(uint64_t redelivery_from_seq) override;
  void Deliver(std::span<const Delivery> batch, DeliveryDone* done) override;
  void Stop() override;

  // SQL text, exposed for tests. `rows` rows of one table and one op.
  static std::string CreateTableSql(const std::string& table, const SqlTable* mapping);
  static std::string UpsertSql(const std::string& table, const SqlTable* mapping, size_t rows,
                               bool hard_delete);
  static std::string DeleteSql(const std::string& table, size_t rows, bool hard_delete);

  struct Conn;

 private:
  using Job = SqlJob;

  // On a pool thread: Run, with the pool gauges around it.
  void RunCounted(Conn& conn, Job& job);
  void Run(Conn& conn, Job& job);
  // One transaction for `rows`; false with class and message on error.
  bool WriteTransaction(Conn& conn, const std::vector<const SqlRow*>& rows, uint64_t* written,
                        SqlErrorClass* cls, std::string* error);
  bool EnsureTables(Conn& conn, const std::vector<const SqlRow*>& rows, SqlErrorClass* cls,
                    std::string* error);
  void UpdatePool();

  AdapterConfig config_;
  const SqlConfig& sql_ = config_.Settings<SqlConfig>();  // the type's own settings
  Strategy strategy_;
  SqlMetrics metrics_;
  SqlTableLimit table_limit_{sql_};  // tables written, when any table is allowed

  // pool_size threads, each with its connection.
  JobQueue<Job, Conn> queue_;

  std::mutex pool_mu_;  // the pool gauges' counts
  int64_t busy_ = 0, down_ = 0;

  std::mutex ddl_mu_;              // one CREATE at a time (concurrent CREATE IF NOT EXISTS
  std::set<std::string> created_;  // can collide in the catalog); tables known to exist
};

}  // namespace dvrouter
