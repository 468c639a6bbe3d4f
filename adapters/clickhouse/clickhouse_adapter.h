// ClickHouseAdapter: the full history of changes in a columnar warehouse, over ClickHouse's
// HTTP interface (adapters/common/http_client.h: keep-alive, timeouts, TLS, gzip).
//
// One row per event in `<database>.<table>` (default `default.dvrouter_events`):
//
//   event_id String, seq UInt64, table_name String, row_id String, message String, stage Int32,
//   operation_time DateTime('UTC'), operation_time_ms UInt64, received_time DateTime('UTC'),
//   received_time_ms UInt64, attributes String (Target's converted attributes as JSON, as in
//   the lake), then the configured flattened columns, each Nullable(<type>)
//
//   ENGINE = ReplacingMergeTree(seq) PARTITION BY toYYYYMM(operation_time)
//   ORDER BY (table_name, event_id)
//
// created if missing (`create_table`, on the first insert, so a server that is down at start
// is an outage like any other). A redelivered event (after a crash, a lost answer, a replay)
// is a second row with the same (table_name, event_id), collapsed by background merges; exact
// reads use FINAL (docs/adapters/clickhouse.md).
//
// Inserts: `INSERT INTO db.table FORMAT JSONEachRow` (the text format 18.16 and current
// versions share), gzip-compressed by default, at most `max_insert_bytes` each: a batch is
// split if larger. The engine sizes batches by rows and linger (defaults for this type: 10 000
// events or 1 s). `connections` sender threads insert in parallel; the rows are encoded on the
// delivery worker's thread.
//
// Errors: connection failures, timeouts and 5xx answers are retryable, except exception codes
// that name a bad insert (syntax 62, unknown table 60 / database 81 / column 16 / field 117,
// type and parse errors 6, 26, 27, 38, 41, 53, 69, 70, 72): those are permanent, with
// ClickHouse's message. Authentication failures are retried (a configuration to fix, not a
// reason to dead-letter every event). A permanent error in an insert of several rows is
// narrowed down by splitting the insert in halves (at most 64 more inserts per batch, whatever
// its number of max_insert_bytes slices), so only the bad events go to the DLQ.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "adapters/adapter.h"
#include "adapters/clickhouse/clickhouse_config.h"
#include "adapters/common/http_client.h"
#include "adapters/common/job_queue.h"
#include "router/config/config.h"

namespace prometheus {
class Registry;
class Counter;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace dvrouter {

class ClickHouseAdapter final : public Adapter {
 public:
  ClickHouseAdapter(AdapterConfig config, prometheus::Registry* registry);
  ~ClickHouseAdapter() override;

  std::string_view name() const override { return config_.name; }
  Status Start(uint64_t redelivery_from_seq) override;
  // An append-only history ordered by the table's key, each row with its seq: a record's events
  // need not wait for each other (see Adapter).
  RecordOrdering record_ordering() const override { return RecordOrdering::kPipelined; }
  void Deliver(std::span<const Delivery> batch, DeliveryDone* done) override;
  void Stop() override;

  // Appends one JSONEachRow line (with its newline) to `out`. InvalidArgument if the body does
  // not parse, and then `out` is as it was.
  static Status EncodeRow(const Delivery& d, const ClickHouseConfig& config, std::string* out);
  static std::string CreateTableSql(const ClickHouseConfig& config);
  // An answer's outcome: retryable or permanent, from the HTTP status and the exception code
  // (X-ClickHouse-Exception-Code, else "Code: N" in the body; -1 if none).
  static bool RetryableAnswer(int http_status, int exception_code);
  static int ExceptionCode(const ClientResponse& response);

 private:
  struct Job {
    // The encoded lines back to back, row k in [RowBegin(k), ends[k]): one buffer, each insert
    // a slice of it (no copy per row, no copy to join them).
    std::string rows;
    std::vector<size_t> ends;
    std::vector<size_t> index;  // row k is batch[index[k]]
    std::vector<DeliveryResult> results;
    DeliveryDone* done = nullptr;
    size_t narrowing_inserts = 0;  // made to narrow down bad rows (kMaxNarrowingInserts)

    size_t RowBegin(size_t k) const { return k == 0 ? 0 : ends[k - 1]; }
  };
  struct Attempt {
    bool ok = false;
    bool retryable = false;
    bool row_specific = false;  // a data error: some rows are bad, the others may be fine
    std::string error;
    int code = -1;  // ClickHouse's exception code, -1 if none
  };

  // Answers every encoded row retryable (the adapter is stopping) and calls done.
  static void FailJob(Job& job);
  // On a sender thread: Run, an exception turned into retryable rows.
  void RunGuarded(Job& job);
  void Run(Job& job);
  // Inserts rows [from, to) of the job; on a permanent error splits in halves.
  void InsertRange(Job& job, size_t from, size_t to);
  Attempt Insert(const Job& job, size_t from, size_t to);
  Attempt Post(const std::string& query, std::string_view body);
  Attempt EnsureTable();

  AdapterConfig config_;
  const ClickHouseConfig& clickhouse_ =
      config_.Settings<ClickHouseConfig>();  // the type's own settings
  HttpClient http_;
  std::string base_url_;

  prometheus::Counter* rows_ = nullptr;
  prometheus::Counter* bytes_ = nullptr;
  prometheus::Histogram* duration_ = nullptr;
  prometheus::Histogram* batch_rows_ = nullptr;
  prometheus::Family<prometheus::Counter>* errors_ = nullptr;
  void CountError(const std::string& cls);

  // `connections` sender threads.
  JobQueue<Job> queue_;
  std::mutex table_mu_;
  bool table_ready_ = false;
};

}  // namespace dvrouter
