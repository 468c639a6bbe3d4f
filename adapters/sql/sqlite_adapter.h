// SqliteAdapter: the embedded SQL default. The semantics of sql_row.h on a local SQLite file
// (WAL mode, synchronous=FULL so a delivered event survives a power cut), so the quickstart
// needs no database server.
//
// SQLite has one writer: the adapter has one thread with one connection that takes whole
// batches from a queue, writes each in one transaction (BEGIN IMMEDIATE ... COMMIT) and calls
// `done`; the delivery workers only convert rows. Each event is written under its own
// savepoint, so a permanent error (constraint, type) fails that event alone. The merge of a
// partial update happens in C++: the row's stored attributes are read in the same transaction,
// overlaid with the event's, and written back with the typed columns computed by json_extract.
//
// Column types: TEXT for id, attributes (JSON), timestamptz, date (YYYY-MM-DD), uuid and jsonb;
// INTEGER for integer, bigint, boolean (0/1) and version; NUMERIC; REAL for double.
//
// Errors: SQLITE_BUSY/LOCKED (another process holds the file), I/O errors, disk full, out of
// memory and a read-only or unopenable file are retryable; constraint, mismatch and other SQL
// errors are permanent.
#pragma once

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "adapters/adapter.h"
#include "adapters/common/job_queue.h"
#include "adapters/sql/sql_config.h"
#include "adapters/sql/sql_row.h"
#include "router/config/config.h"

struct sqlite3;
struct sqlite3_stmt;

namespace prometheus {
class Registry;
}

namespace dvrouter {

// Overlays the members of JSON object `update` on JSON object `base` (members of `base` keep
// their order, new ones follow): what an Update carrying only the changed columns does to the
// stored attributes. InvalidArgument when either is not a JSON object.
Status MergeJsonObjects(std::string_view base, std::string_view update, std::string* out);

// SQLite primary result code -> error class (sql_row.h).
SqlErrorClass ClassifySqliteCode(int code);

class SqliteAdapter final : public Adapter {
 public:
  SqliteAdapter(AdapterConfig config, prometheus::Registry* registry);
  ~SqliteAdapter() override;

  std::string_view name() const override { return config_.name; }
  // A batch's rows are applied one after the other in one transaction, in batch order.
  RecordOrdering record_ordering() const override { return RecordOrdering::kOneBatchInFlight; }
  // Opens (creating) the database file and its directory; an error here stops the router from
  // starting (a local file that cannot be opened is a configuration problem).
  Status Start(uint64_t redelivery_from_seq) override;
  void Deliver(std::span<const Delivery> batch, DeliveryDone* done) override;
  void Stop() override;

 private:
  using Job = SqlJob;

  void Run(Job& job);
  // Returns the SQLite result code (SQLITE_OK on success); `error` holds the message.
  int Exec(const std::string& sql, std::string* error);
  int Prepare(const std::string& sql, sqlite3_stmt** stmt, std::string* error);
  int EnsureTable(const SqlRow& row, std::string* error);
  int Apply(const SqlRow& row, bool* written, std::string* error);

  AdapterConfig config_;
  const SqlConfig& sql_ = config_.Settings<SqlConfig>();  // the type's own settings
  SqlMetrics metrics_;
  SqlTableLimit table_limit_{sql_};  // tables written, when any table is allowed

  // One writer thread.
  JobQueue<Job> queue_;
  std::mutex start_mu_;  // one Start at a time: the file is opened once

  // Writer thread only (and Start, before the thread runs).
  sqlite3* db_ = nullptr;
  std::map<std::string, sqlite3_stmt*> statements_;  // by SQL text
  std::set<std::string> tables_;                     // known to exist with their columns
};

}  // namespace dvrouter
