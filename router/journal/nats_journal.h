// NatsJournal: the journal on a NATS JetStream stream (docs/journal-nats.md), replicated on a
// quorum of servers instead of fsynced on one disk. An event is published to
// `<stream>.p.<partition>` with `Nats-Msg-Id: <event id>` (asynchronously, a bounded number in
// flight) and is durable once the PubAck came back: the stream sequence is its seq, a PubAck
// marked duplicate makes it a duplicate (the stream's duplicate window is the dedupe window).
// Committed records reach the CommitListener from an ordered consumer in sequence order; Read is
// served from the records just consumed or by a get of the stream message; the budget is the
// stream's max_bytes (discard new: undelivered data is never dropped), made room for by purging
// what every reader has passed.
//
// Threads: Append from any thread; its callback and the listener run on the NATS client's
// threads (acks) and the journal's feeder thread (commits); Read, Scan, Stats and BytesFrom from
// any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "router/common/status.h"
#include "router/journal/journal.h"

namespace prometheus {
template <typename T>
class Family;
class Counter;
class Histogram;
class Registry;
}  // namespace prometheus

namespace dvrouter {

struct NatsJournalOptions {
  std::vector<std::string> servers;  // nats://host:port
  std::string stream = "DVROUTER";
  int64_t replicas = 3;
  int64_t duplicate_window_ms = 24ll * 3600 * 1000;
  uint64_t max_bytes = 8ull << 30;
  int64_t ack_timeout_ms = 15000;  // no PubAck within it: the event is refused (503)
  int64_t max_pending = 4096;      // publishes in flight at once
  std::string user, password, creds_file, ca_file;
  uint32_t partitions = 64;  // recorded in the stream's description; must match
  Codec compression = Codec::kZstd;
  int compression_level = 1;
  uint64_t read_cache_bytes = 64ull << 20;  // records just consumed, kept for Read
  CommitListener* listener = nullptr;
  prometheus::Registry* registry = nullptr;  // optional: dvrouter_nats_* metrics
};

// The journal's series (docs/operations.md, "Journal on NATS JetStream").
struct NatsJournalMetrics {
  explicit NatsJournalMetrics(prometheus::Registry* registry);
  prometheus::Family<prometheus::Counter>& acks;
  prometheus::Counter& ok;
  prometheus::Counter& duplicate;
  prometheus::Counter& error;
  prometheus::Counter& timeout;
  prometheus::Histogram& publish_seconds;
  prometheus::Family<prometheus::Counter>& retries;
  prometheus::Counter& retry_no_leader;  // no responders: the stream's leader being elected
  prometheus::Counter& retry_no_answer;  // no PubAck within one attempt's wait
  prometheus::Counter& retry_error;      // refused, not for the budget (a leader stepping down)
};

class NatsJournal final : public Journal {
 public:
  // Connects, creates the stream (or checks and updates it) and starts the feeder after the
  // stream's last message. Unavailable when no server answers, InvalidArgument when the stream
  // belongs to a journal of another partition count or another subject layout.
  static Result<std::unique_ptr<NatsJournal>> Open(NatsJournalOptions options);
  ~NatsJournal() override;  // Stop()

  void Append(AppendRequest* request) override;
  Status Scan(uint64_t from_seq, const std::function<bool(const RecordView&)>& fn,
              ScanHint hint = {}) override;
  Status Read(const RecordHandle& handle, std::string* buffer, EventHeader* header,
              RecordView* out) override;
  Result<RetentionResult> DeleteBefore(uint64_t below_seq, int64_t min_age_ms) override;
  JournalStats Stats() const override;
  uint64_t BytesFrom(uint64_t seq) const override;
  void Stop() override;

  struct Impl;

 private:
  explicit NatsJournal(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dvrouter
