// Replays: events an operator sends to an adapter again, from DLQ entries (ReplayDlq) or a
// retained journal range (ReplayRange). Owns the replay jobs, feeds them to the delivery workers a
// bounded number of items at a time, and tracks the DLQ entries on their way (marked replayed
// once their event went through, or failed into a new entry). A range replay holds the journal
// from where it still has to read (JournalHolds, for Retention), so an adapter has at most one
// queued at a time, ending at the newest committed event (docs/operations.md, "DLQ, replay and
// retention").
//
// Threads: QueueDlq, QueueRange, Pending and Json from any thread (admin listener, CLI, tests);
// Feed and LowerFloors on the maintenance thread; Sent, Through and Abandon from delivery workers.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "router/common/status.h"
#include "router/decode/attributes.h"
#include "router/delivery/dlq.h"
#include "router/delivery/retention.h"
#include "router/delivery/routing.h"
#include "router/delivery/status_records.h"
#include "router/journal/journal.h"
#include "router/journal/record.h"

namespace dvrouter {

// An event sent again by an operator: owns its record.
struct ReplayItem {
  size_t adapter = 0;
  uint64_t record = 0;  // RecordHash(table, row id): replays keep per-record order too
  uint64_t dlq_id = 0;  // the DLQ entry it came from (0: a range replay)
  std::string frame;
  EventHeader header;
  std::string_view body;
  journal::FrameMeta meta;
  uint32_t attempts = 0;
  int64_t first_attempt_ms = 0;
  int64_t ready_ms = 0;
  std::string last_error;
};

class Replays final : public JournalHolds {
 public:
  // Hands an item to the worker that owns its partition.
  using Post = std::function<void(std::unique_ptr<ReplayItem>)>;

  // `names`: the adapters', by index. Everything passed must outlive this object.
  Replays(std::vector<std::string> names, const std::function<int64_t()>& now_ms,
          const std::atomic<bool>& running, const std::atomic<uint64_t>& committed,
          const RouteTable* routes, StatusRecords* records, Retention* retention,
          size_t max_body_bytes);
  Replays(const Replays&) = delete;
  Replays& operator=(const Replays&) = delete;

  // Start: the journal and DLQ, and where items go (before `running`).
  void Attach(Journal* journal, DeadLetterQueue* dlq, Post post);

  // Queues the DLQ entries (one adapter's, or one id) for their adapters; returns how many.
  // The caller wakes the maintenance thread to Feed them.
  Result<uint64_t> QueueDlq(const std::string& adapter, std::optional<uint64_t> id);
  // Queues the retained journal range [from_seq, to_seq] for one adapter (holding the journal
  // from from_seq on); `to_seq` past the newest committed event is cut to it. Returns the last
  // seq queued. FailedPrecondition while the adapter has a range replay queued already. The
  // caller wakes the maintenance thread.
  // With a time window only the events received within [from_ms, to_ms] are replayed, and the
  // scan ends at the first event received a minute after to_ms (received times follow the seqs
  // within a group commit's skew); from_seq 0 starts at the oldest retained event.
  Result<uint64_t> QueueRange(const std::string& adapter, uint64_t from_seq, uint64_t to_seq,
                              int64_t from_ms = 0, int64_t to_ms = INT64_MAX);
  // Replay work not yet finished (queued or in flight), all adapters.
  uint64_t Pending() const;
  // JSON: {"replays":[...],"in_flight":N}, the jobs not yet fed to the workers in the order they
  // run (the first is running), and the items handed out and not yet through.
  std::string Json() const;

  // Hands the workers what the jobs have next, up to a bound of items outstanding.
  void Feed();
  void LowerFloors(std::vector<uint64_t>* floors, const std::function<void()>& publish) override;

  // An item is through: delivered, or failed into the DLQ.
  void Sent() { outstanding_.fetch_sub(1); }
  // The DLQ entries whose items are through: marked replayed.
  void Through(const std::vector<uint64_t>& dlq_ids);
  // Items a stopping worker did not send (their DLQ entries stay to be replayed again).
  void Abandon(std::span<std::deque<std::unique_ptr<ReplayItem>>* const> lists);

 private:
  struct Job {
    size_t adapter = 0;
    std::vector<uint64_t> dlq_ids;
    size_t next = 0;
    bool range = false;
    uint64_t from = 0;  // a range job's first seq
    uint64_t pos = 0;   // next seq of a range job
    uint64_t to = 0;
    int64_t from_ms = 0;  // a range job's time window (received_ms)
    int64_t to_ms = INT64_MAX;
    ScanHint hint;
  };
  size_t IndexOf(std::string_view name) const;

  const std::vector<std::string> names_;
  const std::function<int64_t()>& now_ms_;
  const std::atomic<bool>& running_;
  const std::atomic<uint64_t>& committed_;
  const RouteTable* const routes_;
  StatusRecords* const records_;
  Retention* const retention_;
  Journal* journal_ = nullptr;
  DeadLetterQueue* dlq_ = nullptr;
  Post post_;

  mutable std::mutex mu_;
  std::deque<Job> jobs_;
  std::set<uint64_t> dlq_in_replay_;               // DLQ ids sent and not yet through
  std::unique_ptr<AttributeExtractor> extractor_;  // maintenance thread
  std::atomic<uint64_t> outstanding_{0};
};

}  // namespace dvrouter
