// What the SQL adapters (postgres_adapter.h, sqlite_adapter.h) share: the row an event becomes,
// the error classes and their retry decision, and the metrics.
//
// Semantics (both databases): one table per Dataverse table, `<table_prefix><logical name>`
// unless mapped otherwise, with
//
//   id uuid primary key, attributes json(b), version bigint (journal seq), deleted boolean,
//   updated_at timestamptz (the operation's time), [typed columns from `tables.<t>.columns`]
//
// Create and Update merge Target's converted attributes (router/decode/attributes.h, as in the
// lake) into the stored ones: an Update that carries only the changed columns keeps the others.
// Delete sets deleted = true (soft, the default) or removes the row and records a tombstone in
// `dvrouter_tombstones` (hard). Every write is guarded by version: an event whose seq is not
// above the row's (or its tombstone's) version changes nothing, so replays and redeliveries are
// no-ops and the table converges to the CRM's latest state. Events without an entity Target
// (custom actions, Assign/SetState references, bodies Dataverse stripped for size) are counted
// as skipped and completed.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <mutex>
#include <unordered_set>

#include "adapters/adapter.h"
#include "adapters/sql/sql_config.h"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace dvrouter {

enum class SqlOp { kUpsert, kDelete, kSkip };

// One event as a row operation. Built on the delivery worker's thread.
struct SqlRow {
  SqlOp op = SqlOp::kSkip;
  const SqlTable* mapping = nullptr;  // typed columns, if configured for the table
  std::string table;                  // SQL table name (validated identifier)
  std::string id;                     // lowercase GUID
  uint64_t version = 0;               // journal seq
  std::string attributes;             // JSON object of converted attributes (kUpsert)
  std::string updated_at;             // ISO-8601 UTC with milliseconds
  size_t index = 0;                   // position in the Deliver batch
};

// kInvalidArgument (permanent) when the event cannot become a row (no usable table name or id,
// a table not allowed or reserved, a body that does not parse); kSkip rows are not errors.
Status BuildSqlRow(const Delivery& d, const SqlConfig& config, SqlRow* out);

// The distinct SQL tables an adapter that takes any table has written to, at most
// create_tables_limit of them, so events naming ever new tables cannot create tables and grow
// the adapter's caches without bound. Any thread.
class SqlTableLimit {
 public:
  explicit SqlTableLimit(const SqlConfig& config) : config_(config) {}
  // OK when the table was taken before, a list of tables applies (SqlConfig::Allows), or there
  // is room; FailedPrecondition otherwise.
  Status Take(const std::string& table);

 private:
  const SqlConfig& config_;
  std::mutex mu_;
  std::unordered_set<std::string> taken_;
};

class SqlMetrics;

// One Deliver call of a SQL adapter: the rows to write and the results to report.
struct SqlJob {
  std::vector<SqlRow> rows;
  std::vector<DeliveryResult> results;  // one per delivery; rows[k].index points here
  DeliveryDone* done = nullptr;
};

// Builds the job for a batch on the delivery worker's thread: events that cannot become a row
// are permanent at once, skipped ones delivered (both counted), the rest become `rows`.
void BuildSqlJob(std::span<const Delivery> batch, const SqlConfig& config, SqlTableLimit* limit,
                 SqlMetrics* metrics, DeliveryDone* done, SqlJob* job);
// Answers every row of the job retryable with `error` (the adapter is stopping) and calls done.
void FailSqlJob(SqlJob* job, const std::string& error);

// Error classes, as metric labels and in DLQ reasons.
enum class SqlErrorClass {
  kConnection,     // connection lost or refused, server starting or shutting down
  kSerialization,  // 40001
  kDeadlock,       // 40P01
  kShutdown,       // 57P01-57P03 admin/crash shutdown, cannot connect now
  kTimeout,        // 57014 statement timeout, 55P03 lock not available, SQLite busy
  kResources,      // 53xxx, disk full, out of memory
  kConstraint,     // 23xxx
  kData,           // 22xxx: bad value for a type
  kSyntax,         // 42xxx: syntax, undefined table or column, privileges
  kSetup,          // creating a table or column failed (privileges, a concurrent creator):
                   // retried, as the events themselves are fine
  kOther,          // anything else: permanent
};
std::string_view SqlErrorClassName(SqlErrorClass c);
bool SqlErrorRetryable(SqlErrorClass c);
// From a PostgreSQL SQLSTATE ("40001"); an empty state means the connection failed.
SqlErrorClass ClassifySqlState(std::string_view sqlstate);

// The metrics both SQL adapters report, labelled by adapter.
class SqlMetrics {
 public:
  SqlMetrics(prometheus::Registry* registry, const std::string& adapter, size_t connections);
  void Rows(uint64_t written, uint64_t stale, uint64_t skipped);
  void BatchSeconds(double seconds);
  void Error(SqlErrorClass c);
  // Pool state: connections idle, busy, and down (not connected).
  void Pool(int64_t idle, int64_t busy, int64_t down);

 private:
  prometheus::Counter* written_ = nullptr;
  prometheus::Counter* stale_ = nullptr;
  prometheus::Counter* skipped_ = nullptr;
  prometheus::Histogram* duration_ = nullptr;
  prometheus::Gauge* idle_ = nullptr;
  prometheus::Gauge* busy_ = nullptr;
  prometheus::Gauge* down_ = nullptr;
  prometheus::Family<prometheus::Counter>* errors_ = nullptr;
  std::string adapter_;
};

}  // namespace dvrouter
