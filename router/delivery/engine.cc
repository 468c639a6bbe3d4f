#include "router/delivery/engine.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "router/common/json.h"
#include "router/common/thread_name.h"
#include "router/decode/attributes.h"
#include "router/decode/decode.h"
#include "router/delivery/cursor_store.h"
#include "router/delivery/dlq.h"
#include "router/delivery/partition_queue.h"
#include "router/delivery/retry.h"
#include "router/delivery/routing.h"
#include "router/delivery/status_table.h"
#include "router/journal/record.h"
#include "router/partition/partition.h"

namespace dvrouter {

namespace {

using SteadyClock = std::chrono::steady_clock;

// An idle worker looks at its partitions this often even without a wake-up: idle partitions'
// cursors follow the journal's end (for lag and retention) within this time.
constexpr int64_t kIdleWaitMs = 100;

// *v = min(*v, x), atomically.
void LowerTo(std::atomic<uint64_t>* v, uint64_t x) {
  uint64_t cur = v->load(std::memory_order_relaxed);
  while (x < cur && !v->compare_exchange_weak(cur, x, std::memory_order_acq_rel)) {
  }
}

int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Wakes a sleeping thread; Notify is cheap when nobody sleeps (one atomic exchange).
class Waker {
 public:
  void Notify() {
    if (!signaled_.exchange(true, std::memory_order_acq_rel)) {
      std::lock_guard<std::mutex> lock(mu_);
      cv_.notify_one();
    }
  }
  void WaitFor(int64_t ms) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(ms),
                 [&] { return signaled_.load(std::memory_order_acquire); });
    signaled_.store(false, std::memory_order_release);
  }

 private:
  std::atomic<bool> signaled_{false};
  std::mutex mu_;
  std::condition_variable cv_;
};

// A circuit breaker shared by one adapter's workers.
class SharedBreaker {
 public:
  explicit SharedBreaker(BreakerOptions o) : breaker_(o) {}
  // False: not now (then *retry_at says when). *probe: only one event may go.
  bool Allow(int64_t now, bool* probe, int64_t* retry_at) {
    std::lock_guard<std::mutex> lock(mu_);
    const bool half_open_before = breaker_.state() != BreakerState::kClosed;
    if (!breaker_.Allow(now)) {
      *retry_at = breaker_.state() == BreakerState::kOpen ? breaker_.probe_at_ms() : now + 1000;
      return false;
    }
    *probe = half_open_before;
    return true;
  }
  void OnSuccess() {
    std::lock_guard<std::mutex> lock(mu_);
    breaker_.OnSuccess();
  }
  void OnFailure(int64_t now) {
    std::lock_guard<std::mutex> lock(mu_);
    breaker_.OnFailure(now);
  }
  BreakerState state() const {
    std::lock_guard<std::mutex> lock(mu_);
    return breaker_.state();
  }

 private:
  mutable std::mutex mu_;
  CircuitBreaker breaker_;
};

enum class EntryState : uint8_t { kWaiting, kInFlight, kDone };

class RecordCache;

// A record read from the journal to be routed, kept for the lanes it was offered to until each
// of their adapters' batches is built: the adapters then neither read it again nor parse its
// Target again (the memo extracts it once for all). Charged against its worker's share of
// delivery.record_cache_bytes while lane entries hold it; a batch's hold is not charged (the
// batch would hold a journal read of the record otherwise). Worker thread only.
struct CachedRecord {
  std::string buffer;  // the whole frame (a DLQ entry keeps it)
  EventHeader header;
  std::string_view body;
  ChangeMemo changes;
  RecordCache* cache = nullptr;
  uint64_t charge = 0;       // bytes charged, 0 once no entry holds it
  uint32_t entry_holds = 0;  // lane entries holding it
  uint32_t refs = 0;         // entry holds, batch holds and the reader's own
};

// A worker's cached records: their budget, and a bounded free list so that a steady stream of
// events reuses records (and their buffers) instead of allocating. Worker thread only, except
// bytes().
class RecordCache {
 public:
  explicit RecordCache(uint64_t budget = 0) : budget_(budget) {}
  RecordCache(const RecordCache&) = delete;
  RecordCache& operator=(const RecordCache&) = delete;
  ~RecordCache() {
    for (CachedRecord* r : free_) delete r;
  }
  void set_budget(uint64_t budget) { budget_ = budget; }

  // A record to read into, charged `charge` bytes and referenced once (by the caller), or null
  // when the charge would pass the budget.
  CachedRecord* Acquire(uint64_t charge) {
    if (bytes_.load(std::memory_order_relaxed) + charge > budget_) return nullptr;
    CachedRecord* r;
    if (!free_.empty()) {
      r = free_.back();
      free_.pop_back();
      free_bytes_ -= Footprint(*r);
      charge = std::max(charge, Footprint(*r));  // a reused record keeps its largest buffers
    } else {
      r = new CachedRecord;
      r->cache = this;
    }
    r->charge = charge;
    r->refs = 1;
    bytes_.fetch_add(charge, std::memory_order_relaxed);
    return r;
  }
  // After the read: a record is charged what it really holds once that is known (a compressed
  // record's buffer holds its body decompressed), twice for the Target its memo may extract.
  void Recharge(CachedRecord* r) {
    const uint64_t real = 2ull * r->buffer.size();
    if (real <= r->charge) return;
    bytes_.fetch_add(real - r->charge, std::memory_order_relaxed);
    r->charge = real;
  }
  void AddEntryHold(CachedRecord* r) {
    ++r->entry_holds;
    ++r->refs;
  }
  // An entry lets go (dropped, or turned into a batch's hold when `to_batch`).
  void ReleaseEntryHold(CachedRecord* r, bool to_batch) {
    if (--r->entry_holds == 0) Uncharge(r);
    if (!to_batch) Unref(r);
  }
  void Unref(CachedRecord* r) {
    if (--r->refs != 0) return;
    Uncharge(r);
    r->changes.Reset();
    r->body = {};
    // Spare records count against the budget too: a burst of releases (a large batch
    // answered) is followed by as many reads, but charged and spare records together stay
    // within it.
    const uint64_t footprint = Footprint(*r);
    if (bytes_.load(std::memory_order_relaxed) + free_bytes_ + footprint <= budget_) {
      free_bytes_ += footprint;
      free_.push_back(r);
    } else {
      delete r;
    }
  }
  uint64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }

 private:
  static uint64_t Footprint(const CachedRecord& r) {
    return sizeof(CachedRecord) + r.buffer.capacity() + r.changes.StorageBytes();
  }
  void Uncharge(CachedRecord* r) {
    bytes_.fetch_sub(r->charge, std::memory_order_relaxed);
    r->charge = 0;
  }
  uint64_t budget_;
  std::atomic<uint64_t> bytes_{0};
  std::vector<CachedRecord*> free_;
  uint64_t free_bytes_ = 0;  // Footprint of the records in free_
};

// A lane entry's hold on a cached record.
class EntryHold {
 public:
  EntryHold() = default;
  explicit EntryHold(CachedRecord* r) : r_(r) { r_->cache->AddEntryHold(r_); }
  EntryHold(EntryHold&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
  EntryHold& operator=(EntryHold&& o) noexcept {
    if (this != &o) {
      Release();
      r_ = std::exchange(o.r_, nullptr);
    }
    return *this;
  }
  ~EntryHold() { Release(); }

  explicit operator bool() const { return r_ != nullptr; }
  // Hands the record to a batch: the entry no longer holds it; the caller owns one reference
  // (RecordCache::Unref when done).
  CachedRecord* TakeForBatch() {
    CachedRecord* r = std::exchange(r_, nullptr);
    r->cache->ReleaseEntryHold(r, /*to_batch=*/true);
    return r;
  }

 private:
  void Release() {
    if (r_ != nullptr) r_->cache->ReleaseEntryHold(std::exchange(r_, nullptr), false);
  }
  CachedRecord* r_ = nullptr;
};

// A lane with this many events waiting for a batch does not hold cached records.
constexpr size_t kCacheMaxWaiting = 256;
// An adapter with batches in flight and none answered for this long, or for 4 times as long as
// its batches usually take, counts as stalled for the record cache (a healthy lake or ClickHouse
// answers within about a second of its roll or linger; a paced write-back takes longer).
constexpr int64_t kCacheHungMs = 5000;

// One event in a lane: small; its body only while the record is cached (CachedRecord).
struct Entry {
  uint64_t seq = 0;
  RecordHandle handle;
  uint64_t record = 0;  // RecordHash(table, row id): the ordering key
  EventKey key;
  int64_t received_ms = 0;
  int64_t ready_ms = 0;  // may be dispatched from then on
  int64_t first_attempt_ms = 0;
  uint32_t attempts = 0;
  EntryState state = EntryState::kWaiting;
  std::string last_error;
  EntryHold cached;  // the record, until its first batch is built (not always: CachedRecord)
};

// One adapter's view of one partition.
struct Lane {
  std::deque<Entry> window;
  uint64_t read_pos = 0;  // every event of the partition up to here is in the window or skipped
  ScanHint hint;          // just past the record at read_pos, for journal scans
  uint64_t cursor = 0;    // every event up to here is finished
  std::set<uint64_t> waiting;                        // seqs of the entries in kWaiting, in order
  std::unordered_map<uint64_t, uint32_t> in_flight;  // records with an event in flight
  std::atomic<uint64_t>* published = nullptr;
};

struct Part {
  uint32_t partition = 0;
  PartitionQueue* queue = nullptr;
  uint64_t last = 0;        // every record of the partition up to here was offered to the lanes
  std::vector<Lane> lanes;  // by adapter index
};

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

struct DeliveryMetrics {
  prometheus::Counter* outcome[5] = {};  // delivered, processing, retryable, permanent, gave_up
  prometheus::Histogram* duration = nullptr;
  prometheus::Histogram* batch = nullptr;
  prometheus::Counter* retries = nullptr;
  prometheus::Gauge* breaker = nullptr;
  prometheus::Gauge* dlq = nullptr;
  prometheus::Gauge* lag_events = nullptr;
  prometheus::Gauge* lag_seconds = nullptr;
  prometheus::Gauge* bytes_held = nullptr;
};

const char* kOutcomeNames[] = {"delivered", "processing", "retryable", "permanent", "gave_up"};

}  // namespace

struct DeliveryEngine::Impl {
  struct Worker;

  struct Batch final : DeliveryDone {
    Worker* worker = nullptr;
    size_t adapter = 0;
    bool probe = false;
    SteadyClock::time_point started;
    int64_t dispatched_ms = 0;  // on the engine's clock
    struct Ref {
      size_t part = 0;  // index into worker->parts
      uint64_t seq = 0;
      int replay = -1;  // index into replays when an operator replay
    };
    std::vector<Ref> refs;
    std::vector<Delivery> deliveries;
    std::vector<std::string> buffers;  // records read from the journal for this batch
    std::vector<EventHeader> headers;
    std::vector<CachedRecord*> held;  // or cached ones (one reference each), by delivery index
    // The journal record of delivery i (not a replay).
    const std::string& Record(size_t i) const { return held[i] ? held[i]->buffer : buffers[i]; }
    std::vector<std::unique_ptr<ReplayItem>> replays;
    std::vector<DeliveryResult> results;

    ~Batch() override { ReleaseHeld(); }
    void ReleaseHeld() {
      for (CachedRecord* r : held) {
        if (r != nullptr) r->cache->Unref(r);
      }
      held.clear();
    }

    void OnDelivered(std::span<const DeliveryResult> r) override {
      results.assign(r.begin(), r.end());
      worker->PostCompletion(this);
    }
  };

  struct Channel {
    size_t adapter = 0;
    int in_flight = 0;
    int64_t linger_since = -1;
    bool dirty = true;                 // something changed since the last Dispatch: look again
    int64_t due_ms = 0;                // or look again at this time (linger, backoff, breaker)
    bool stalled = false;              // see MarkStalled; cleared when the breaker lets a batch go
    int64_t unanswered_since_ms = -1;  // batches in flight, none answered since (-1: none out)
    int64_t answer_avg_ms = 0;         // how long its batches take (moving average)
    std::unique_ptr<RetryPolicy> policy;
    std::deque<std::unique_ptr<ReplayItem>> replays;  // in seq order
    std::multiset<uint64_t> replays_in_flight;        // their records
    std::atomic<int64_t> oldest_ms{0};  // received time of the oldest unfinished event, 0: none
  };

  struct Worker {
    // First: outlives the entries and batches that hold its records.
    RecordCache record_cache;
    Impl* engine = nullptr;
    int index = 0;
    std::vector<Part> parts;
    std::vector<size_t> part_of;  // partition -> index in parts (or SIZE_MAX)
    std::vector<std::unique_ptr<Channel>> channels;
    Waker waker;
    std::mutex inbox_mu;
    std::vector<Batch*> completions;
    std::vector<std::unique_ptr<ReplayItem>> replay_inbox;
    std::vector<std::unique_ptr<Batch>> free_batches;
    std::unique_ptr<AttributeExtractor> extractor;
    std::string read_buf;
    EventHeader read_header;
    std::unordered_set<uint64_t> blocked;
    std::atomic<bool> stop_dispatch{false};
    std::atomic<bool> exit{false};
    std::atomic<int> in_flight_total{0};
    std::thread thread;

    void PostCompletion(Batch* b) {
      {
        std::lock_guard<std::mutex> lock(inbox_mu);
        completions.push_back(b);
      }
      waker.Notify();
    }
    void PostReplay(std::unique_ptr<ReplayItem> item) {
      {
        std::lock_guard<std::mutex> lock(inbox_mu);
        replay_inbox.push_back(std::move(item));
      }
      waker.Notify();
    }
  };

  struct ReplayJob {
    size_t adapter = 0;
    std::vector<uint64_t> dlq_ids;
    size_t next = 0;
    bool range = false;
    uint64_t pos = 0;  // next seq of a range job
    uint64_t to = 0;
    ScanHint hint;
  };

  Impl(EngineOptions o, std::vector<EngineAdapter> a)
      : opt(std::move(o)),
        adapters(std::move(a)),
        status(opt.delivery.status_entries, adapters.size()) {
    if (!opt.now_ms) opt.now_ms = SystemNowMs;
    for (uint32_t p = 0; p < opt.partitions; ++p) {
      queues.push_back(std::make_unique<PartitionQueue>(opt.delivery.queue_capacity));
    }
    std::vector<std::string> names;
    for (const EngineAdapter& ea : adapters) names.push_back(ea.config.name);
    routes = std::make_unique<RouteTable>(opt.routes, opt.loop_guard, names);
    replay_extractor = std::make_unique<AttributeExtractor>(opt.max_body_bytes);
    cursors.reset(new std::atomic<uint64_t>[adapters.size() * opt.partitions]);
    for (size_t i = 0; i < adapters.size() * opt.partitions; ++i) cursors[i] = 0;
    for (const EngineAdapter& ea : adapters) {
      BreakerOptions bo;
      bo.failure_threshold = static_cast<uint32_t>(ea.config.breaker_failures);
      bo.open_ms = static_cast<int64_t>(ea.config.breaker_open_ms);
      breakers.push_back(std::make_unique<SharedBreaker>(bo));
    }
    feeds.reset(new StatusFeed[adapters.size()]);
    adapter_holds.reset(new std::atomic<uint64_t>[adapters.size()]);
    for (size_t a = 0; a < adapters.size(); ++a) adapter_holds[a] = UINT64_MAX;
    processing_kept.resize(adapters.size());
    for (size_t w = 0; w < adapters.size(); ++w) {
      const AdapterConfig& ac = adapters[w].config;
      if (ac.type != "dataverse") continue;
      for (size_t a = 0; a < adapters.size(); ++a) {
        if (adapters[a].config.name == ac.dataverse.source) feeds[a].writeback_mask |= 1ull << w;
      }
    }
    RegisterMetrics();
  }

  // Keeps a channel's replays in sequence order, so one record's replays go out in order.
  static void InsertReplay(Channel& c, std::unique_ptr<ReplayItem> item) {
    auto at = std::upper_bound(
        c.replays.begin(), c.replays.end(), item->meta.seq,
        [](uint64_t seq, const std::unique_ptr<ReplayItem>& x) { return seq < x->meta.seq; });
    c.replays.insert(at, std::move(item));
  }

  static size_t IndexOf(const Lane& lane, uint64_t seq) {
    auto it = std::lower_bound(lane.window.begin(), lane.window.end(), seq,
                               [](const Entry& x, uint64_t s) { return x.seq < s; });
    return static_cast<size_t>(it - lane.window.begin());
  }

  // A status record on its way into the journal (write-back adapters deliver these). Owns the
  // request until the journal's callback; a failed append is kept and tried again.
  struct StatusAppend final : AppendCallback {
    Impl* engine = nullptr;
    size_t source = 0;
    EventHeader header;
    std::string body;
    AppendRequest request;
    void OnAppendDone(const AppendResult& result) override { engine->StatusAppended(this, result); }
  };
  struct StatusFeed {
    uint64_t writeback_mask = 0;       // the write-back adapters reporting this adapter
    std::atomic<uint64_t> issued{0};   // status records handed to the journal...
    std::atomic<uint64_t> settled{0};  // ...and durable (or found to be duplicates)
  };

  // Hands each adapter its ConfirmationSink (DeliveryEngine::Confirm for that adapter).
  struct Confirmer final : ConfirmationSink {
    Impl* engine = nullptr;
    size_t adapter = 0;
    Status Confirm(const EventKey& key, const DeliveryResult& result) override {
      return engine->ConfirmEvent(adapter, key, result);
    }
  };
  Status ConfirmEvent(size_t a, const EventKey& key, const DeliveryResult& result);
  std::vector<std::unique_ptr<Confirmer>> confirmers;
  std::mutex confirm_mu;  // one confirmation at a time: a repeated callback sees the first's effect
  // Confirmations that came before the sink's 202 was applied (a callback racing the answer to
  // the call itself): applied when that answer arrives. Bounded; oldest dropped first.
  std::mutex early_mu;
  std::unordered_map<std::string, DeliveryResult> early;
  std::deque<std::string> early_order;
  std::atomic<size_t> early_count{0};
  static std::string EarlyKey(size_t a, const EventKey& key) {
    return std::to_string(a) + ":" + key.ToHex();
  }
  std::optional<DeliveryResult> TakeEarly(size_t a, const EventKey& key) {
    if (early_count.load(std::memory_order_acquire) == 0) return std::nullopt;
    std::lock_guard<std::mutex> lock(early_mu);
    auto it = early.find(EarlyKey(a, key));
    if (it == early.end()) return std::nullopt;
    DeliveryResult r = std::move(it->second);
    early.erase(it);
    early_count.store(early.size(), std::memory_order_release);
    return r;
  }
  prometheus::Family<prometheus::Counter>* confirmations = nullptr;

  void EmitStatus(size_t a, const EventKey& key, uint64_t seq, uint32_t partition,
                  const EventHeader& h, EventState state, uint32_t attempts, uint64_t generation,
                  const std::string& error, const std::string& answer);
  void StatusAppended(StatusAppend* s, const AppendResult& result);
  void RetryStatusAppends();
  bool StatusSettled(size_t a, uint64_t issued, int64_t wait_ms);
  uint64_t StatusMask(const EventHeader& h) const;

  void RegisterMetrics();
  Status Start(Journal* j);
  void Stop();
  void WorkerLoop(Worker* w);
  bool Drain(Worker* w, Part& part, uint64_t committed);
  // Lane a of a partition may hold a cached record: it keeps up (fewer than kCacheMaxWaiting
  // events waiting for a batch) and its adapter is not stalled.
  bool CanHoldCached(Worker* w, const Lane& lane, size_t a) const {
    return lane.waiting.size() < kCacheMaxWaiting && !w->channels[a]->stalled;
  }
  // The channel's adapter stopped taking batches (open breaker) or answering them (see
  // kCacheHungMs): its lanes drop the cached records they hold and take no more until it does.
  void MarkStalled(Worker* w, Channel& c) {
    if (c.stalled) return;
    c.stalled = true;
    for (Part& part : w->parts) {
      for (Entry& e : part.lanes[c.adapter].window) e.cached = EntryHold();
    }
  }
  bool CatchUp(Worker* w);
  void Offer(Worker* w, Part& part, const RecordView& view, bool live,
             CachedRecord* cached = nullptr);
  bool Dispatch(Worker* w, Channel& c, int64_t now, int64_t* wake_at);
  void Complete(Worker* w, Batch* b);
  void Finish(Worker* w, Part& part, Lane& lane, size_t adapter);
  // One batch in flight per record, several of its events in a batch (the SQL adapters).
  bool SharesBatches(size_t adapter) const {
    const Adapter& a = *adapters[adapter].adapter;
    return a.one_in_flight_per_record() && a.record_events_share_batch();
  }
  void PublishOldest(Worker* w);
  void MaintenanceLoop();
  void FlushCursors();
  void RunRetention();
  uint64_t ReclaimableBelow() const;
  void UpdateHeldFloor();
  void KeepProcessing(size_t a, uint64_t seq, std::string_view frame);
  std::optional<std::string> TakeProcessing(size_t a, uint64_t seq);
  uint64_t AdapterFloor(size_t a) const;
  uint64_t BytesHeld(size_t a) const;
  uint64_t MinCursor(size_t adapter) const;
  void LogBudgetHolders();
  void FeedReplays();
  bool WriteDlq(Worker* w, std::vector<DlqEntry>* entries);

  std::atomic<uint64_t>& CursorRef(size_t adapter, uint32_t partition) {
    return cursors[adapter * opt.partitions + partition];
  }

  EngineOptions opt;
  std::vector<EngineAdapter> adapters;
  StatusTable status;
  Journal* journal = nullptr;
  std::vector<std::unique_ptr<PartitionQueue>> queues;
  std::unique_ptr<RouteTable> routes;
  std::unique_ptr<std::atomic<uint64_t>[]> cursors;
  std::vector<std::unique_ptr<SharedBreaker>> breakers;
  std::vector<std::unique_ptr<Worker>> workers;
  // Workers that got records in the current group commit (journal writer thread only).
  std::vector<uint8_t> wake_pending;
  std::unique_ptr<CursorStore> cursor_store;
  std::unique_ptr<DeadLetterQueue> dlq;
  // Status records: one feed per adapter; the cursors last saved (kept for an adapter whose
  // status records are not all durable yet).
  std::unique_ptr<StatusFeed[]> feeds;
  std::mutex status_mu;
  std::condition_variable status_cv;
  std::vector<StatusAppend*> status_retry;
  std::atomic<uint64_t> status_clock{0};
  std::map<std::string, std::vector<uint64_t>> saved_cursors;
  // What the journal must keep besides the live cursors: the saved cursors of write-back
  // sources and the start of range replays (maintenance thread and ReplayRange, under jobs_mu).
  std::atomic<uint64_t> held_floor{0};
  std::unique_ptr<std::atomic<uint64_t>[]> adapter_holds;  // each adapter's part of held_floor
  // Records of events a sink answered processing, kept for their confirmation.
  struct KeptRecord {
    StoredBody frame;  // the plain frame, compressed
    uint32_t raw_length = 0;
    int64_t since_ms = 0;
  };
  static constexpr uint64_t kProcessingBytes = 64ull << 20;
  std::mutex processing_mu;
  std::vector<std::map<uint64_t, KeptRecord>> processing_kept;  // by adapter, by seq
  uint64_t kept_bytes = 0;
  uint64_t logged_refusals = 0;  // maintenance thread
  int64_t last_budget_log_ms = 0;
  prometheus::Counter* status_records = nullptr;
  prometheus::Counter* status_append_errors = nullptr;
  std::atomic<uint64_t> committed{0};
  std::atomic<bool> started{false};
  std::atomic<uint64_t> passes{0};

  // Replay jobs: fed by the maintenance thread, a bounded number of items at a time.
  mutable std::mutex jobs_mu;
  std::deque<ReplayJob> jobs;
  std::set<uint64_t> dlq_in_replay;                      // DLQ ids sent and not yet through
  std::unique_ptr<AttributeExtractor> replay_extractor;  // maintenance thread
  std::atomic<uint64_t> replays_outstanding{0};

  std::thread maintenance;
  std::mutex maint_mu;
  std::condition_variable maint_cv;
  bool maint_stop = false;

  // Metrics (null when no registry).
  std::vector<DeliveryMetrics> metrics;
  prometheus::Gauge* queue_sum = nullptr;
  prometheus::Gauge* queue_max = nullptr;
  prometheus::Gauge* cache_bytes = nullptr;
  prometheus::Counter* skipped[4] = {};  // by RouteVerdict

  prometheus::Counter* catch_up_reads = nullptr;
  prometheus::Counter* batch_records[2] = {};  // from the record cache, from the journal
  prometheus::Counter* retention_bytes = nullptr;
  prometheus::Counter* cursor_flush_errors = nullptr;
};

void DeliveryEngine::Impl::RegisterMetrics() {
  metrics.resize(adapters.size());
  if (opt.registry == nullptr) return;
  auto& r = *opt.registry;
  using namespace prometheus;
  auto& outcomes = BuildCounter()
                       .Name("dvrouter_deliveries_total")
                       .Help("Delivery results per adapter and outcome (one per event and attempt)")
                       .Register(r);
  auto& duration = BuildHistogram()
                       .Name("dvrouter_delivery_duration_seconds")
                       .Help("Time from handing a batch to an adapter to its result")
                       .Register(r);
  auto& batch = BuildHistogram()
                    .Name("dvrouter_delivery_batch_events")
                    .Help("Events per batch handed to an adapter")
                    .Register(r);
  auto& retries = BuildCounter()
                      .Name("dvrouter_delivery_retries_total")
                      .Help("Events scheduled for another attempt")
                      .Register(r);
  auto& breaker = BuildGauge()
                      .Name("dvrouter_delivery_breaker_state")
                      .Help("Circuit breaker per adapter: 0 closed, 1 open, 2 half-open")
                      .Register(r);
  auto& dlq_g = BuildGauge()
                    .Name("dvrouter_dlq_entries")
                    .Help("Dead-letter entries not yet replayed, per adapter")
                    .Register(r);
  auto& lag_e = BuildGauge()
                    .Name("dvrouter_delivery_lag_events")
                    .Help("Journal sequences past the adapter's oldest unfinished event")
                    .Register(r);
  auto& lag_s = BuildGauge()
                    .Name("dvrouter_delivery_lag_seconds")
                    .Help("Age of the adapter's oldest unfinished event it is tracking")
                    .Register(r);
  auto& held = BuildGauge()
                   .Name("dvrouter_journal_bytes_held")
                   .Help(
                       "Journal bytes the adapter keeps from being deleted: the segments from its "
                       "oldest unfinished event on (undelivered data never yields to the budget)")
                   .Register(r);
  for (size_t a = 0; a < adapters.size(); ++a) {
    const std::string& name = adapters[a].config.name;
    for (int k = 0; k < 5; ++k) {
      metrics[a].outcome[k] = &outcomes.Add({{"adapter", name}, {"outcome", kOutcomeNames[k]}});
    }
    metrics[a].duration = &duration.Add(
        {{"adapter", name}}, Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                         0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
    metrics[a].batch = &batch.Add(
        {{"adapter", name}},
        Histogram::BucketBoundaries{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000});
    metrics[a].retries = &retries.Add({{"adapter", name}});
    metrics[a].breaker = &breaker.Add({{"adapter", name}});
    metrics[a].dlq = &dlq_g.Add({{"adapter", name}});
    metrics[a].lag_events = &lag_e.Add({{"adapter", name}});
    metrics[a].lag_seconds = &lag_s.Add({{"adapter", name}});
    metrics[a].bytes_held = &held.Add({{"adapter", name}});
  }
  auto& depth = BuildGauge()
                    .Name("dvrouter_delivery_queue_depth")
                    .Help("Handles waiting in the partition queues: sum and max over partitions")
                    .Register(r);
  queue_sum = &depth.Add({{"stat", "sum"}});
  queue_max = &depth.Add({{"stat", "max"}});
  cache_bytes = &BuildGauge()
                     .Name("dvrouter_delivery_record_cache_bytes")
                     .Help(
                         "Bytes charged to the record cache: records read for routing that lane "
                         "entries keep for their batches (delivery.record_cache_bytes)")
                     .Register(r)
                     .Add({});
  auto& skip = BuildCounter()
                   .Name("dvrouter_events_skipped_total")
                   .Help("Events no adapter receives: no route matched, or the loop guard")
                   .Register(r);
  skipped[static_cast<int>(RouteVerdict::kUnrouted)] = &skip.Add({{"reason", "unrouted"}});
  skipped[static_cast<int>(RouteVerdict::kLoopUser)] = &skip.Add({{"reason", "loop_user"}});
  skipped[static_cast<int>(RouteVerdict::kIgnoredColumns)] =
      &skip.Add({{"reason", "ignored_columns"}});
  catch_up_reads = &BuildCounter()
                        .Name("dvrouter_delivery_catch_up_scans_total")
                        .Help("Journal scans by lanes that fell behind their in-memory window")
                        .Register(r)
                        .Add({});
  auto& sources = BuildCounter()
                      .Name("dvrouter_delivery_batch_records_total")
                      .Help(
                          "Records put into adapter batches (first attempts and retries), by "
                          "where they came from: the record cache or a journal read")
                      .Register(r);
  batch_records[0] = &sources.Add({{"source", "cache"}});
  batch_records[1] = &sources.Add({{"source", "journal"}});
  retention_bytes = &BuildCounter()
                         .Name("dvrouter_journal_retention_deleted_bytes_total")
                         .Help("Journal bytes deleted once every adapter had delivered them")
                         .Register(r)
                         .Add({});
  confirmations = &BuildCounter()
                       .Name("dvrouter_delivery_confirmations_total")
                       .Help(
                           "Later outcomes of events a sink accepted as processing (202), by "
                           "callback or poll: completed, failed")
                       .Register(r);
  for (const EngineAdapter& ea : adapters) {  // exported at 0 from the start
    confirmations->Add({{"adapter", ea.config.name}, {"outcome", "completed"}});
    confirmations->Add({{"adapter", ea.config.name}, {"outcome", "failed"}});
  }
  auto& sr = BuildCounter()
                 .Name("dvrouter_status_records_total")
                 .Help(
                     "Status records journaled for write-back adapters, and failed appends "
                     "(tried again)")
                 .Register(r);
  status_records = &sr.Add({{"result", "appended"}});
  status_append_errors = &sr.Add({{"result", "error"}});
  cursor_flush_errors = &BuildCounter()
                             .Name("dvrouter_delivery_cursor_flush_errors_total")
                             .Help("Failed attempts to persist the delivery cursors")
                             .Register(r)
                             .Add({});
}

Status DeliveryEngine::Impl::Start(Journal* j) {
  journal = j;
  if (Status st = MakeDirectories(opt.state_dir); !st.ok()) return st;
  cursor_store = std::make_unique<CursorStore>(opt.state_dir + "/cursors");
  auto loaded = cursor_store->Load(opt.partitions);
  if (!loaded.ok()) return loaded.status();
  auto q = DeadLetterQueue::Open(opt.state_dir + "/dlq.log");
  if (!q.ok()) return q.status();
  dlq = std::move(q).value();
  if (dlq->damaged_lines() > 0) {
    std::fprintf(stderr, "dvrouter: %s/dlq.log: %llu damaged lines skipped\n",
                 opt.state_dir.c_str(), static_cast<unsigned long long>(dlq->damaged_lines()));
  }

  const uint64_t last = j->Stats().next_seq - 1;
  committed.store(std::max(committed.load(), last), std::memory_order_release);
  // An adapter new to this journal starts at its end: earlier events are history (replay
  // delivers them on request), not a backlog to flood a new sink with.
  bool new_adapter = false;
  for (size_t a = 0; a < adapters.size(); ++a) {
    auto it = loaded->find(adapters[a].config.name);
    for (uint32_t p = 0; p < opt.partitions; ++p) {
      uint64_t c = it == loaded->end() ? last : it->second[p];
      if (c > last) c = last;  // a cursor past the journal (journal replaced): start at its end
      CursorRef(a, p).store(c);
    }
    new_adapter |= it == loaded->end();
  }
  for (const EngineAdapter& ea : adapters) {
    auto it = loaded->find(ea.config.name);
    if (it != loaded->end()) saved_cursors[ea.config.name] = it->second;
  }
  if (new_adapter) FlushCursors();
  UpdateHeldFloor();

  for (size_t a = 0; a < adapters.size(); ++a) {
    auto c = std::make_unique<Confirmer>();
    c->engine = this;
    c->adapter = a;
    adapters[a].adapter->SetConfirmationSink(c.get());
    confirmers.push_back(std::move(c));
  }
  for (size_t a = 0; a < adapters.size(); ++a) {
    uint64_t min_cursor = UINT64_MAX;
    for (uint32_t p = 0; p < opt.partitions; ++p) {
      min_cursor = std::min(min_cursor, CursorRef(a, p).load());
    }
    if (Status st = adapters[a].adapter->Start(min_cursor + 1); !st.ok()) {
      return Status(st.code(),
                    "adapters." + adapters[a].config.name + ": " + std::string(st.message()));
    }
  }

  const int n = static_cast<int>(std::min<uint64_t>(opt.delivery.workers, opt.partitions));
  for (int i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>();
    w->engine = this;
    w->index = i;
    w->record_cache.set_budget(opt.delivery.record_cache_bytes / static_cast<uint64_t>(n));
    w->part_of.assign(opt.partitions, SIZE_MAX);
    w->extractor = std::make_unique<AttributeExtractor>(opt.max_body_bytes);
    for (size_t a = 0; a < adapters.size(); ++a) {
      auto c = std::make_unique<Channel>();
      c->adapter = a;
      RetryOptions ro;
      const AdapterConfig& ac = adapters[a].config;
      ro.initial_backoff_ms = static_cast<int64_t>(ac.initial_backoff_ms);
      ro.max_backoff_ms = static_cast<int64_t>(ac.max_backoff_ms);
      ro.multiplier = ac.backoff_multiplier;
      ro.max_attempts = static_cast<uint32_t>(ac.max_attempts);
      ro.max_age_ms = static_cast<int64_t>(ac.max_age_ms);
      ro.max_retry_after_ms = static_cast<int64_t>(ac.max_retry_after_ms);
      c->policy = std::make_unique<RetryPolicy>(ro, static_cast<uint64_t>(i) * 7919 + a + 1);
      w->channels.push_back(std::move(c));
    }
    workers.push_back(std::move(w));
  }
  for (uint32_t p = 0; p < opt.partitions; ++p) {
    Worker* w = workers[p % workers.size()].get();
    Part part;
    part.partition = p;
    part.queue = queues[p].get();
    part.last = last;
    part.lanes = std::vector<Lane>(adapters.size());
    for (size_t a = 0; a < adapters.size(); ++a) {
      Lane& lane = part.lanes[a];
      lane.cursor = lane.read_pos = CursorRef(a, p).load();
      lane.published = &CursorRef(a, p);
    }
    w->part_of[p] = w->parts.size();
    w->parts.push_back(std::move(part));
  }
  started.store(true, std::memory_order_release);
  for (auto& w : workers) {
    Worker* raw = w.get();
    w->thread = std::thread([this, raw] { WorkerLoop(raw); });
  }
  maintenance = std::thread([this] { MaintenanceLoop(); });
  return Status::Ok();
}

void DeliveryEngine::Impl::Stop() {
  if (!started.exchange(false)) return;
  for (auto& w : workers) {
    w->stop_dispatch.store(true);
    w->waker.Notify();
  }
  // Let batches in flight finish (bounded), then stop the adapters: that completes the rest.
  const auto deadline = SteadyClock::now() + std::chrono::seconds(5);
  for (auto& w : workers) {
    while (w->in_flight_total.load() > 0 && SteadyClock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  // No more replay feeding, then the adapters complete what is outstanding, then the workers
  // apply those completions and exit.
  {
    std::lock_guard<std::mutex> lock(maint_mu);
    maint_stop = true;
  }
  maint_cv.notify_all();
  if (maintenance.joinable()) maintenance.join();
  for (EngineAdapter& a : adapters) a.adapter->Stop();
  for (auto& w : workers) {
    w->exit.store(true);
    w->waker.Notify();
    if (w->thread.joinable()) w->thread.join();
  }
  RetryStatusAppends();
  FlushCursors();
  std::lock_guard<std::mutex> lock(status_mu);
  for (StatusAppend* s : status_retry) delete s;  // recorded again after the restart
  status_retry.clear();
}

void DeliveryEngine::Impl::WorkerLoop(Worker* w) {
  SetThreadName("dv-worker-" + std::to_string(w->index));
  std::vector<Batch*> done;
  std::vector<std::unique_ptr<ReplayItem>> replays;
  for (;;) {
    const bool exiting = w->exit.load(std::memory_order_acquire);
    const uint64_t snapshot = committed.load(std::memory_order_acquire);
    bool progress = false;
    {
      std::lock_guard<std::mutex> lock(w->inbox_mu);
      done.swap(w->completions);
      replays.swap(w->replay_inbox);
    }
    for (Batch* b : done) Complete(w, b);
    progress |= !done.empty();
    done.clear();
    for (auto& item : replays) {
      Channel& c = *w->channels[item->adapter];  // before the move below
      c.dirty = true;
      InsertReplay(c, std::move(item));
    }
    progress |= !replays.empty();
    replays.clear();
    if (exiting) {
      // Adapters are stopped: every batch has completed. Drop replay items not yet sent (their
      // DLQ entries were marked replayed; they are counted so the operator sees them).
      std::lock_guard<std::mutex> lock(jobs_mu);
      for (auto& c : w->channels) {
        for (auto& item : c->replays) dlq_in_replay.erase(item->dlq_id);
        replays_outstanding.fetch_sub(c->replays.size());
        c->replays.clear();
      }
      return;
    }
    for (Part& part : w->parts) progress |= Drain(w, part, snapshot);
    progress |= CatchUp(w);
    const int64_t now = opt.now_ms();
    int64_t wake_at = now + kIdleWaitMs;
    if (!w->stop_dispatch.load(std::memory_order_acquire)) {
      for (auto& c : w->channels) {
        // Gathering walks the waiting events: only when something changed or a timer is due.
        if (c->dirty || now >= c->due_ms) {
          c->dirty = false;
          c->due_ms = now + kIdleWaitMs;
          progress |= Dispatch(w, *c, now, &c->due_ms);
        }
        wake_at = std::min(wake_at, c->due_ms);
      }
    }
    PublishOldest(w);
    passes.fetch_add(1, std::memory_order_relaxed);
    if (!progress) w->waker.WaitFor(std::clamp<int64_t>(wake_at - opt.now_ms(), 1, kIdleWaitMs));
  }
}

bool DeliveryEngine::Impl::Drain(Worker* w, Part& part, uint64_t snapshot) {
  RecordHandle batch[256];
  bool progress = false;
  for (int round = 0; round < 8; ++round) {
    const size_t n = part.queue->PopBatch(batch, 256);
    const uint64_t dropped = part.queue->DroppedUpTo();
    if (dropped != 0) {
      // Handles were lost to a full queue: every lane catches up from the journal up to the
      // newest sequence known to be committed for this partition.
      uint64_t top = dropped;
      for (size_t i = 0; i < n; ++i) top = std::max(top, batch[i].seq);
      part.last = std::max(part.last, top);
      part.queue->ClearDropped(dropped);
      return true;
    }
    for (size_t i = 0; i < n; ++i) {
      const RecordHandle& h = batch[i];
      if (h.seq <= part.last) continue;
      bool wanted = false;
      bool cacheable = false;  // some lane that takes it could hold it cached
      for (size_t a = 0; a < part.lanes.size(); ++a) {
        const Lane& lane = part.lanes[a];
        if (lane.read_pos == part.last && lane.window.size() < opt.delivery.window_events) {
          wanted = true;
          cacheable |= CanHoldCached(w, lane, a);
        }
      }
      if (wanted) {
        RecordView view;
        // Charged for the frame and once more for the Target its memo may extract.
        CachedRecord* cached = cacheable ? w->record_cache.Acquire(2ull * h.length) : nullptr;
        Status st;
        if (cached != nullptr) {
          // Room for simdjson's padding after the frame: the memo parses the body in place.
          cached->buffer.reserve(h.length + Decoder::kPadding);
          st = journal->Read(h, &cached->buffer, &cached->header, &view);
          cached->body = view.body;
          if (st.ok()) {
            w->record_cache.Recharge(cached);
            const char* end = cached->buffer.data() + cached->buffer.capacity();
            cached->changes.SetReadable(view.body.data(),
                                        static_cast<size_t>(end - view.body.data()));
          }
        } else {
          st = journal->Read(h, &w->read_buf, &w->read_header, &view);
        }
        if (st.ok()) Offer(w, part, view, /*live=*/true, cached);
        // The lanes that took it hold it now; otherwise back to the free list.
        if (cached != nullptr) w->record_cache.Unref(cached);
        if (!st.ok()) {
          // Leave it to the journal scan of the catch-up path (which reports persistent errors).
          part.last = h.seq;
          continue;
        }
      }
      part.last = h.seq;
    }
    progress |= n > 0;
    if (n < 256) break;
  }
  // Idle partition: nothing of it lies between part.last and what was committed before the
  // drain began, so attached lanes can move their cursors up to that point.
  if (part.queue->SizeApprox() == 0 && part.queue->DroppedUpTo() == 0 && snapshot > part.last) {
    const uint64_t old = part.last;
    part.last = snapshot;
    for (size_t a = 0; a < part.lanes.size(); ++a) {
      Lane& lane = part.lanes[a];
      if (lane.read_pos != old) continue;
      lane.read_pos = snapshot;
      lane.hint = ScanHint{};
      if (lane.window.empty()) Finish(w, part, lane, a);
    }
  }
  return progress;
}

// Routes the record and appends it to every lane that is at the record's position.
void DeliveryEngine::Impl::Offer(Worker* w, Part& part, const RecordView& view, bool live,
                                 CachedRecord* cached) {
  uint64_t mask = 0;
  uint64_t pending = 0;  // adapters that took the event: its status is pending there
  bool routed = false;
  const int64_t now = opt.now_ms();
  for (size_t a = 0; a < part.lanes.size(); ++a) {
    Lane& lane = part.lanes[a];
    if (lane.read_pos >= view.handle.seq) continue;  // already has it
    // A live record is taken only by lanes that have everything before it; a scanned one only
    // by lanes behind it (the scan visits every record past the lowest read position).
    if (live && lane.read_pos != part.last) continue;
    if (lane.window.size() >= opt.delivery.window_events) continue;  // falls behind
    if (!routed) {
      routed = true;
      if (view.header->status_record) {
        mask = StatusMask(*view.header);  // only to the write-back adapters of its source
      } else {
        RouteVerdict v = routes->Match(*view.header, view.body, w->extractor.get(), &mask);
        if (v != RouteVerdict::kRouted && skipped[static_cast<int>(v)]) {
          skipped[static_cast<int>(v)]->Increment();
        }
      }
    }
    lane.read_pos = view.handle.seq;
    lane.hint = ScanHint{view.handle.segment, view.handle.offset + view.handle.length};
    if ((mask >> a & 1) == 0) {
      if (lane.window.empty()) Finish(w, part, lane, a);
      continue;
    }
    Entry e;
    e.seq = view.handle.seq;
    e.handle = view.handle;
    e.record = RecordHash(view.header->primary_entity_name, view.header->primary_entity_id);
    e.key = view.key;
    e.received_ms = view.received_ms;
    e.ready_ms = now;
    // Only a lane that keeps up holds the cached record: one with a backlog would keep it (and
    // the cache budget) long before its batch comes, so it reads the journal when it gets there.
    if (cached != nullptr && CanHoldCached(w, lane, a)) e.cached = EntryHold(cached);
    lane.window.push_back(std::move(e));
    lane.waiting.insert(view.handle.seq);
    w->channels[a]->dirty = true;
    pending |= uint64_t{1} << a;
  }
  status.UpdateEach(
      view.key, view.handle.seq, pending,
      [&](AdapterStatus& s) {
        s.state = EventState::kPending;
        s.updated_ms = now;
      },
      &view.handle);
}

bool DeliveryEngine::Impl::CatchUp(Worker* w) {
  uint64_t from = UINT64_MAX;
  ScanHint hint;
  uint64_t until = 0;
  size_t hungry = 0;
  for (Part& part : w->parts) {
    for (Lane& lane : part.lanes) {
      if (lane.read_pos >= part.last || lane.window.size() >= opt.delivery.window_events) continue;
      ++hungry;
      until = std::max(until, part.last);
      if (lane.read_pos + 1 < from) {
        from = lane.read_pos + 1;
        hint = lane.hint;
      }
    }
  }
  if (hungry == 0) return false;
  if (catch_up_reads) catch_up_reads->Increment();
  size_t visited = 0;
  uint64_t last_visited = from - 1;
  bool budget_spent = false;
  Status st = journal->Scan(
      from,
      [&](const RecordView& view) {
        if (view.handle.seq > until) return false;
        if (++visited > 65536) {
          budget_spent = true;
          return false;
        }
        last_visited = view.handle.seq;
        const size_t pi = w->part_of[view.handle.partition];
        if (pi == SIZE_MAX) return true;
        Part& part = w->parts[pi];
        if (view.handle.seq > part.last) return true;
        Offer(w, part, view, /*live=*/false);
        // Stop once no lane of this worker still wants records.
        size_t still = 0;
        for (Part& p : w->parts) {
          for (Lane& lane : p.lanes) {
            still += lane.read_pos < p.last && lane.window.size() < opt.delivery.window_events;
          }
        }
        return still > 0;
      },
      hint);
  if (!st.ok()) {
    std::fprintf(stderr, "dvrouter: delivery worker %d: journal scan from %llu failed: %s\n",
                 w->index, static_cast<unsigned long long>(from), st.ToString().c_str());
    return false;
  }
  // A lane that still has room saw every record the scan passed: the records of its partition
  // end before the next one of other partitions, so it moves up to where the scan got (the
  // whole way to part.last when the scan was not cut short).
  for (Part& part : w->parts) {
    for (size_t a = 0; a < part.lanes.size(); ++a) {
      Lane& lane = part.lanes[a];
      if (lane.read_pos >= part.last || lane.window.size() >= opt.delivery.window_events) continue;
      const uint64_t reached = budget_spent ? std::min(part.last, last_visited) : part.last;
      if (lane.read_pos < reached) {
        lane.read_pos = reached;
        lane.hint = ScanHint{};
        if (lane.window.empty()) Finish(w, part, lane, a);
      }
    }
  }
  return true;
}

bool DeliveryEngine::Impl::Dispatch(Worker* w, Channel& c, int64_t now, int64_t* wake_at) {
  // Batches out and none answered for a while: stalled for the record cache.
  const bool hung = c.unanswered_since_ms >= 0 &&
                    now - c.unanswered_since_ms > std::max(kCacheHungMs, 4 * c.answer_avg_ms);
  if (hung) MarkStalled(w, c);
  const AdapterConfig& cfg = adapters[c.adapter].config;
  const size_t max_batch = cfg.max_batch_events;
  bool progress = false;
  // Lingering for a fuller batch: no need to walk the waiting events again until enough of them
  // exist to fill one, or the linger ends.
  if (c.linger_since >= 0 && now < c.linger_since + static_cast<int64_t>(cfg.linger_ms)) {
    size_t waiting = 0;
    for (const Part& part : w->parts) waiting += part.lanes[c.adapter].waiting.size();
    if (waiting + c.replays.size() < max_batch) {
      *wake_at = std::min(*wake_at, c.linger_since + static_cast<int64_t>(cfg.linger_ms));
      return false;
    }
  }
  while (c.in_flight < static_cast<int>(cfg.max_in_flight)) {
    // Gather: per lane, the first unfinished event of each record, if it is ready.
    struct Pick {
      size_t part;
      Entry* entry;
    };
    std::vector<Pick> picks;
    std::vector<size_t> replay_picks;
    const bool serialize = adapters[c.adapter].adapter->one_in_flight_per_record();
    const bool share = SharesBatches(c.adapter);
    for (size_t pi = 0; pi < w->parts.size() && picks.size() < max_batch; ++pi) {
      Lane& lane = w->parts[pi].lanes[c.adapter];
      if (lane.waiting.empty()) continue;
      // Only waiting entries need looking at: in-flight records are in lane.in_flight, and
      // earlier waiting entries of a record are met first in this walk (seq order).
      if (!w->blocked.empty()) w->blocked.clear();  // clear() is O(buckets)
      for (uint64_t seq : lane.waiting) {
        Entry& e = lane.window[IndexOf(lane, seq)];
        if (serialize) {
          // The first unfinished event of a record, when none is in flight (an operator replay
          // of the record in flight counts too); `blocked` holds the records already met. When
          // a record's events share a batch, its ready events up to the first one not ready.
          if (lane.in_flight.count(e.record) || c.replays_in_flight.count(e.record)) continue;
          if (share ? w->blocked.count(e.record) != 0 : !w->blocked.insert(e.record).second) {
            continue;
          }
        } else if (w->blocked.count(e.record)) {
          // Hand-over order: nothing of a record passes an earlier event still waiting.
          continue;
        }
        if (e.ready_ms <= now) {
          // A pipelining adapter takes every ready event of a record, in seq order.
          picks.push_back(Pick{pi, &e});
          if (picks.size() >= max_batch) break;
        } else {
          if (!serialize || share) w->blocked.insert(e.record);
          *wake_at = std::min(*wake_at, e.ready_ms);
        }
      }
    }
    if (!c.replays.empty() && picks.size() < max_batch) {
      // A replay waits for every unfinished event of its record: in-flight live events and
      // replays, events picked above, and earlier replays of the record.
      if (!w->blocked.empty()) w->blocked.clear();  // clear() is O(buckets)
      if (serialize) {
        for (Part& part : w->parts) {
          for (const auto& [record, n] : part.lanes[c.adapter].in_flight) {
            w->blocked.insert(record);
          }
        }
        for (uint64_t r : c.replays_in_flight) w->blocked.insert(r);
      }
      for (const Pick& p : picks) w->blocked.insert(p.entry->record);
      for (size_t i = 0; i < c.replays.size() && picks.size() + replay_picks.size() < max_batch;
           ++i) {
        const ReplayItem& item = *c.replays[i];
        if (!w->blocked.count(item.record)) {
          if (item.ready_ms <= now) {
            replay_picks.push_back(i);
          } else {
            *wake_at = std::min(*wake_at, item.ready_ms);
          }
        }
        w->blocked.insert(item.record);
      }
    }
    const size_t total = picks.size() + replay_picks.size();
    if (total == 0) {
      c.linger_since = -1;
      return progress;
    }
    if (total < max_batch && cfg.linger_ms > 0 && !w->stop_dispatch.load()) {
      if (c.linger_since < 0) c.linger_since = now;
      const int64_t due = c.linger_since + static_cast<int64_t>(cfg.linger_ms);
      if (now < due) {
        *wake_at = std::min(*wake_at, due);
        return progress;
      }
    }
    bool probe = false;
    int64_t retry_at = 0;
    if (!breakers[c.adapter]->Allow(now, &probe, &retry_at)) {
      *wake_at = std::min(*wake_at, retry_at);
      MarkStalled(w, c);  // it does not keep records cached for when it comes back
      return progress;
    }
    if (!hung) c.stalled = false;
    if (probe) {
      // Shrink with erase: resize() here trips GCC 12's -Warray-bounds under -fsanitize=thread.
      if (!picks.empty()) {
        picks.erase(picks.begin() + 1, picks.end());
        replay_picks.clear();
      } else {
        replay_picks.erase(replay_picks.begin() + 1, replay_picks.end());
      }
    }
    c.linger_since = -1;

    std::unique_ptr<Batch> owned;
    if (!w->free_batches.empty()) {
      owned = std::move(w->free_batches.back());
      w->free_batches.pop_back();
    } else {
      owned = std::make_unique<Batch>();
    }
    Batch* b = owned.release();
    b->worker = w;
    b->adapter = c.adapter;
    b->probe = probe;
    b->refs.clear();
    b->deliveries.clear();
    b->replays.clear();
    const size_t n = picks.size() + replay_picks.size();
    if (b->buffers.size() < n) b->buffers.resize(n);
    if (b->headers.size() < n) b->headers.resize(n);
    b->ReleaseHeld();
    b->held.resize(n, nullptr);
    // Records one of whose picks could not be read: their later picks stay behind too, or a
    // record's later event would reach the adapter before its earlier one.
    std::vector<uint64_t> unread;
    for (const Pick& p : picks) {
      Entry& e = *p.entry;
      if (!unread.empty() && std::find(unread.begin(), unread.end(), e.record) != unread.end()) {
        continue;  // still waiting and ready; blocked behind the unread one at the next gather
      }
      const size_t k = b->deliveries.size();
      Delivery d;
      if (e.cached) {
        // Read for routing and kept: the batch holds it from here on (a retry reads again).
        CachedRecord* rec = e.cached.TakeForBatch();
        d.header = &rec->header;
        d.body = rec->body;
        d.changes = &rec->changes;
        b->held[k] = rec;
        if (batch_records[0]) batch_records[0]->Increment();
      } else {
        RecordView view;
        Status st = journal->Read(e.handle, &b->buffers[k], &b->headers[k], &view);
        if (!st.ok()) {
          // The record cannot be read now (I/O error): try again later, like a sink failure.
          e.last_error = "journal read: " + st.ToString();
          e.ready_ms = now + 1000;
          unread.push_back(e.record);
          *wake_at = std::min(*wake_at, e.ready_ms);
          c.dirty = true;  // other ready events were not looked at: gather again next pass
          continue;
        }
        d.header = &b->headers[k];
        d.body = view.body;
        if (batch_records[1]) batch_records[1]->Increment();
      }
      d.seq = e.seq;
      d.key = e.key;
      d.attempt = e.attempts + 1;
      d.received_ms = e.received_ms;
      b->deliveries.push_back(d);
      b->refs.push_back(Batch::Ref{p.part, e.seq, -1});
      e.state = EntryState::kInFlight;
      Lane& lane = w->parts[p.part].lanes[c.adapter];
      lane.waiting.erase(e.seq);
      ++lane.in_flight[e.record];
      if (e.attempts == 0) {
        e.first_attempt_ms = now;
        EmitStatus(c.adapter, e.key, e.seq, e.handle.partition, *d.header, EventState::kSubmitted,
                   1, 0, "", "");
      }
      status.Update(e.key, e.seq, c.adapter, [&](AdapterStatus& s) {
        s.state = EventState::kSubmitted;
        s.attempts = e.attempts + 1;
        s.updated_ms = now;
      });
    }
    // Replays, taken out of the channel's list (highest index first keeps the others valid).
    std::sort(replay_picks.rbegin(), replay_picks.rend());
    for (size_t i : replay_picks) {
      b->replays.push_back(std::move(c.replays[i]));
      c.replays.erase(c.replays.begin() + static_cast<std::ptrdiff_t>(i));
    }
    for (size_t r = 0; r < b->replays.size(); ++r) {
      ReplayItem& item = *b->replays[r];
      c.replays_in_flight.insert(item.record);
      Delivery d;
      d.seq = item.meta.seq;
      d.key = item.meta.key;
      d.header = &item.header;
      d.body = item.body;
      d.attempt = item.attempts + 1;
      d.received_ms = item.meta.received_ms;
      d.replay = true;
      if (item.attempts == 0) {
        item.first_attempt_ms = now;
        EmitStatus(c.adapter, item.meta.key, item.meta.seq, item.meta.partition, item.header,
                   EventState::kSubmitted, 1, static_cast<uint64_t>(now), "", "");
      }
      b->deliveries.push_back(d);
      b->refs.push_back(Batch::Ref{0, item.meta.seq, static_cast<int>(r)});
    }
    if (b->deliveries.empty()) {
      b->ReleaseHeld();
      w->free_batches.emplace_back(b);
      if (probe) breakers[c.adapter]->OnFailure(now);
      return progress;
    }
    if (metrics[c.adapter].batch) {
      metrics[c.adapter].batch->Observe(static_cast<double>(b->deliveries.size()));
    }
    ++c.in_flight;
    if (c.unanswered_since_ms < 0) c.unanswered_since_ms = now;
    b->dispatched_ms = now;
    w->in_flight_total.fetch_add(1);
    b->started = SteadyClock::now();
    progress = true;
    adapters[c.adapter].adapter->Deliver(b->deliveries, b);
  }
  return progress;
}

bool DeliveryEngine::Impl::WriteDlq(Worker* w, std::vector<DlqEntry>* entries) {
  if (entries->empty()) return true;
  Status st = dlq->Append(entries);
  if (!st.ok()) {
    std::fprintf(stderr, "dvrouter: delivery worker %d: DLQ write failed, will retry: %s\n",
                 w->index, st.ToString().c_str());
    return false;
  }
  return true;
}

void DeliveryEngine::Impl::Complete(Worker* w, Batch* b) {
  Channel& c = *w->channels[b->adapter];
  c.dirty = true;
  const size_t a = b->adapter;
  DeliveryMetrics& m = metrics[a];
  const int64_t now = opt.now_ms();
  if (m.duration) {
    m.duration->Observe(std::chrono::duration<double>(SteadyClock::now() - b->started).count());
  }
  bool any_retry = false;
  std::vector<DlqEntry> dead;
  struct DeadRef {
    size_t part;
    uint64_t seq;
    int replay;
  };
  std::vector<DeadRef> dead_refs;
  std::vector<size_t> touched;
  std::vector<uint64_t> replayed_ids;
  // Shared batches (record_events_share_batch): records with an event answered retryable in
  // this batch. A later event of such a record answered retryable too was held back unwritten
  // by the adapter (its contract): it goes back to waiting as it was, without counting an
  // attempt, so it is neither backed off nor given up on for its predecessor's failures.
  const bool share = SharesBatches(a);
  std::vector<uint64_t> retried_records;
  for (size_t i = 0; i < b->refs.size(); ++i) {
    const Batch::Ref& ref = b->refs[i];
    DeliveryResult result;
    if (i < b->results.size()) {
      result = b->results[i];
    } else {
      result.outcome = DeliveryOutcome::kRetryable;
      result.error = "adapter returned no result for this event";
    }
    Entry* e = nullptr;
    ReplayItem* item = nullptr;
    if (ref.replay >= 0) {
      item = b->replays[static_cast<size_t>(ref.replay)].get();
      auto it = c.replays_in_flight.find(item->record);
      if (it != c.replays_in_flight.end()) c.replays_in_flight.erase(it);
    } else {
      Lane& lane = w->parts[ref.part].lanes[a];
      auto it = std::lower_bound(lane.window.begin(), lane.window.end(), ref.seq,
                                 [](const Entry& x, uint64_t s) { return x.seq < s; });
      if (it == lane.window.end() || it->seq != ref.seq) continue;  // cannot happen
      e = &*it;
      touched.push_back(ref.part);
      auto f = lane.in_flight.find(e->record);
      if (f != lane.in_flight.end() && --f->second == 0) lane.in_flight.erase(f);
    }
    if (share && e != nullptr && result.outcome == DeliveryOutcome::kRetryable) {
      if (std::find(retried_records.begin(), retried_records.end(), e->record) !=
          retried_records.end()) {
        e->state = EntryState::kWaiting;
        e->ready_ms = now;  // goes with its predecessor, which the walk meets first
        w->parts[ref.part].lanes[a].waiting.insert(e->seq);
        continue;
      }
      retried_records.push_back(e->record);
    }
    uint32_t& attempts = e ? e->attempts : item->attempts;
    const int64_t first = e ? e->first_attempt_ms : item->first_attempt_ms;
    std::string& last_error = e ? e->last_error : item->last_error;
    const EventKey key = e ? e->key : item->meta.key;
    const uint64_t seq = ref.seq;
    ++attempts;
    auto set_status = [&](EventState s, const std::string& err, const std::string& answer) {
      status.Update(key, seq, a, [&](AdapterStatus& st) {
        st.state = s;
        st.attempts = attempts;
        st.updated_ms = now;
        if (!err.empty()) st.last_error = err;
        if (!answer.empty()) st.answer = answer;
      });
    };
    const EventHeader& header = *b->deliveries[i].header;
    const uint32_t partition = e ? e->handle.partition : item->meta.partition;
    // A replay's status records differ from the original run's (their dedupe keys).
    const uint64_t generation = item ? static_cast<uint64_t>(item->first_attempt_ms) : 0;
    std::string reason;
    if (result.outcome == DeliveryOutcome::kProcessing) {
      if (std::optional<DeliveryResult> confirmed = TakeEarly(a, key)) {
        // Confirmed already (its callback came first): processing, then that outcome at once.
        set_status(EventState::kProcessing, "", result.answer);
        EmitStatus(a, key, seq, partition, header, EventState::kProcessing, attempts, generation,
                   "", result.answer);
        result = std::move(*confirmed);
        if (confirmations) {
          confirmations
              ->Add({{"adapter", adapters[a].config.name},
                     {"outcome",
                      result.outcome == DeliveryOutcome::kDelivered ? "completed" : "failed"}})
              .Increment();
        }
        if (result.outcome == DeliveryOutcome::kPermanent) last_error = result.error;
      }
    }
    switch (result.outcome) {
      case DeliveryOutcome::kDelivered:
      case DeliveryOutcome::kProcessing: {
        const bool processing = result.outcome == DeliveryOutcome::kProcessing;
        m.outcome[processing ? 1 : 0] ? m.outcome[processing ? 1 : 0]->Increment() : void();
        // The record first: a confirmation (which needs the status processing) then always
        // comes after it in the status order.
        EmitStatus(a, key, seq, partition, header,
                   processing ? EventState::kProcessing : EventState::kCompleted, attempts,
                   generation, "", result.answer);
        set_status(processing ? EventState::kProcessing : EventState::kCompleted, "",
                   result.answer);
        if (processing) KeepProcessing(a, seq, e ? b->Record(i) : item->frame);
        if (e) e->state = EntryState::kDone;
        if (item) {
          if (item->dlq_id != 0) replayed_ids.push_back(item->dlq_id);
          replays_outstanding.fetch_sub(1);
        }
        continue;
      }
      case DeliveryOutcome::kRetryable: {
        any_retry = true;
        if (m.outcome[2]) m.outcome[2]->Increment();
        last_error = result.error;
        std::optional<int64_t> ra;
        if (result.retry_after_ms >= 0) ra = result.retry_after_ms;
        RetryPolicy::Next next = c.policy->AfterFailure(attempts, first, now, ra);
        if (!next.give_up) {
          if (m.retries) m.retries->Increment();
          set_status(EventState::kPending, result.error, "");
          if (attempts == 1) {  // the row shows the first failure, not every retry
            EmitStatus(a, key, seq, partition, header, EventState::kPending, attempts, generation,
                       result.error, "");
          }
          if (e) {
            e->state = EntryState::kWaiting;
            e->ready_ms = next.at_ms;
            w->parts[ref.part].lanes[a].waiting.insert(e->seq);
          } else {
            item->ready_ms = next.at_ms;
            InsertReplay(c, std::move(b->replays[static_cast<size_t>(ref.replay)]));
          }
          continue;
        }
        if (m.outcome[4]) m.outcome[4]->Increment();
        reason = "gave_up: " + next.reason;
        break;
      }
      case DeliveryOutcome::kPermanent:
        if (m.outcome[3]) m.outcome[3]->Increment();
        last_error = result.error;
        reason = "permanent";
        break;
    }
    // To the DLQ, with the whole record.
    DlqEntry d;
    d.adapter = adapters[a].config.name;
    d.seq = seq;
    d.event_id = key.ToHex();
    d.table = header.primary_entity_name;
    d.row_id = header.primary_entity_id;
    d.message = header.message_name;
    d.reason = reason;
    d.attempts = attempts;
    d.last_error = last_error;
    d.failed_at_ms = now;
    d.record = e ? b->Record(i) : item->frame;
    dead.push_back(std::move(d));
    dead_refs.push_back(DeadRef{ref.part, seq, ref.replay});
    set_status(EventState::kFailed, last_error, "");
    EmitStatus(a, key, seq, partition, header, EventState::kFailed, attempts, generation,
               last_error, "");
  }
  if (!dead.empty()) {
    const bool written = WriteDlq(w, &dead);
    for (const DeadRef& ref : dead_refs) {
      if (ref.replay >= 0) {
        if (written) {
          const uint64_t id = b->replays[static_cast<size_t>(ref.replay)]->dlq_id;
          if (id != 0) replayed_ids.push_back(id);
          replays_outstanding.fetch_sub(1);
        } else {
          auto& owned = b->replays[static_cast<size_t>(ref.replay)];
          owned->ready_ms = now + 1000;
          InsertReplay(c, std::move(owned));
        }
        continue;
      }
      Lane& lane = w->parts[ref.part].lanes[a];
      auto it = std::lower_bound(lane.window.begin(), lane.window.end(), ref.seq,
                                 [](const Entry& x, uint64_t s) { return x.seq < s; });
      if (written) {
        it->state = EntryState::kDone;
      } else {
        // Never lose it: keep it and try the DLQ again later.
        it->state = EntryState::kWaiting;
        it->ready_ms = now + 1000;
        lane.waiting.insert(it->seq);
      }
    }
  }
  // A DLQ entry counts as replayed once its event went through, or failed into a new entry; a
  // crash before that leaves it to be replayed again.
  if (!replayed_ids.empty()) {
    if (Status st = dlq->MarkReplayed(replayed_ids); !st.ok()) {
      std::fprintf(stderr, "dvrouter: marking DLQ entries replayed failed: %s\n",
                   st.ToString().c_str());
    }
    std::lock_guard<std::mutex> lock(jobs_mu);
    for (uint64_t id : replayed_ids) dlq_in_replay.erase(id);
  }
  if (any_retry) {
    breakers[a]->OnFailure(now);
  } else {
    breakers[a]->OnSuccess();
  }
  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  for (size_t pi : touched) Finish(w, w->parts[pi], w->parts[pi].lanes[a], a);
  --c.in_flight;
  c.unanswered_since_ms = c.in_flight > 0 ? now : -1;
  const int64_t took = std::max<int64_t>(0, now - b->dispatched_ms);
  c.answer_avg_ms = c.answer_avg_ms == 0 ? took : (7 * c.answer_avg_ms + took) / 8;
  w->in_flight_total.fetch_sub(1);
  b->replays.clear();
  b->results.clear();
  b->ReleaseHeld();
  w->free_batches.emplace_back(b);
}

// Drops finished entries from the front of the window and publishes the cursor.
void DeliveryEngine::Impl::Finish(Worker*, Part&, Lane& lane, size_t) {
  while (!lane.window.empty() && lane.window.front().state == EntryState::kDone) {
    lane.window.pop_front();
  }
  const uint64_t c = lane.window.empty() ? lane.read_pos : lane.window.front().seq - 1;
  if (c > lane.cursor) {
    lane.cursor = c;
    lane.published->store(c, std::memory_order_release);
  }
}

void DeliveryEngine::Impl::PublishOldest(Worker* w) {
  for (auto& c : w->channels) {
    int64_t oldest = 0;
    for (Part& part : w->parts) {
      const Lane& lane = part.lanes[c->adapter];
      if (!lane.window.empty() && (oldest == 0 || lane.window.front().received_ms < oldest)) {
        oldest = lane.window.front().received_ms;
      }
    }
    c->oldest_ms.store(oldest, std::memory_order_relaxed);
  }
}

void DeliveryEngine::Impl::FlushCursors() {
  std::map<std::string, std::vector<uint64_t>> snapshot;
  for (size_t a = 0; a < adapters.size(); ++a) {
    auto& v = snapshot[adapters[a].config.name];
    v.resize(opt.partitions);
    for (uint32_t p = 0; p < opt.partitions; ++p) v[p] = CursorRef(a, p).load();
    if (feeds[a].writeback_mask == 0) continue;
    // An event's status records are journaled before its cursor moves past it: persist this
    // adapter's cursors only once they are durable, else keep the last saved ones (the events
    // are delivered again after a crash, and their statuses recorded again).
    const uint64_t issued = feeds[a].issued.load(std::memory_order_seq_cst);
    if (!StatusSettled(a, issued, 2000)) {
      auto old = saved_cursors.find(adapters[a].config.name);
      if (old != saved_cursors.end()) {
        v = old->second;
      } else {
        snapshot.erase(adapters[a].config.name);
      }
    }
  }
  if (Status st = cursor_store->Save(snapshot); st.ok()) {
    for (auto& [name, v] : snapshot) saved_cursors[name] = v;
  } else {
    if (cursor_flush_errors) cursor_flush_errors->Increment();
    std::fprintf(stderr, "dvrouter: persisting delivery cursors failed: %s\n",
                 st.ToString().c_str());
  }
}

uint64_t DeliveryEngine::Impl::MinCursor(size_t a) const {
  uint64_t c = UINT64_MAX;
  for (uint32_t p = 0; p < opt.partitions; ++p) {
    c = std::min(c, cursors[a * opt.partitions + p].load(std::memory_order_acquire));
  }
  return c;
}

// Records below the returned sequence are finished by every adapter, and no restart or replay
// reads them again (README, "Journal budget and retention"). Called by the journal's writer when
// an append needs room, and by the maintenance thread: atomic loads only.
uint64_t DeliveryEngine::Impl::ReclaimableBelow() const {
  if (!started.load(std::memory_order_acquire)) return 0;
  uint64_t below = std::min(committed.load(std::memory_order_acquire) + 1,
                            held_floor.load(std::memory_order_acquire));
  for (size_t a = 0; a < adapters.size(); ++a) below = std::min(below, MinCursor(a) + 1);
  return below;
}

// A write-back source's saved cursor is held back until its status records are durable: a
// restart resumes there and reads its events again, so they stay. Other adapters' events behind
// their live cursors are finished; a restart that finds them deleted starts at the oldest
// retained record. A range replay keeps what it has yet to read.
void DeliveryEngine::Impl::UpdateHeldFloor() {
  std::vector<uint64_t> floors(adapters.size(), UINT64_MAX);
  for (size_t a = 0; a < adapters.size(); ++a) {
    if (feeds[a].writeback_mask == 0) continue;
    auto it = saved_cursors.find(adapters[a].config.name);
    if (it == saved_cursors.end()) continue;
    for (uint64_t c : it->second) floors[a] = std::min(floors[a], c + 1);
  }
  // Under the lock to the end: a replay added meanwhile lowers the floor itself, and must not be
  // overwritten by this older view.
  std::lock_guard<std::mutex> lock(jobs_mu);
  for (const ReplayJob& j : jobs) {
    if (j.range) floors[j.adapter] = std::min(floors[j.adapter], j.pos);
  }
  uint64_t floor = UINT64_MAX;
  for (size_t a = 0; a < adapters.size(); ++a) {
    adapter_holds[a].store(floors[a], std::memory_order_relaxed);
    floor = std::min(floor, floors[a]);
  }
  held_floor.store(floor, std::memory_order_release);
}

// An event an adapter answered processing (202) is finished for ordering, cursors and the
// journal, which may delete it under pressure; its confirmation needs the record again (the DLQ
// frame, the status header). A compressed copy is kept for that, within kProcessingBytes and
// delivery.retention, oldest dropped first (its confirmation then reads the journal, which may
// no longer have it). Worker threads keep; admin and poll threads take.
void DeliveryEngine::Impl::KeepProcessing(size_t a, uint64_t seq, std::string_view frame) {
  KeptRecord k;
  journal::CompressBody(frame, 1, &k.frame);
  k.raw_length = static_cast<uint32_t>(frame.size());
  if (k.frame.codec == Codec::kNone) k.frame.bytes.assign(frame);
  k.since_ms = opt.now_ms();
  const int64_t expired = k.since_ms - static_cast<int64_t>(opt.delivery.retention_ms);
  std::lock_guard<std::mutex> lock(processing_mu);
  auto& kept = processing_kept[a];
  auto [it, fresh] = kept.try_emplace(seq);
  if (!fresh) kept_bytes -= it->second.frame.bytes.size();
  kept_bytes += k.frame.bytes.size();
  it->second = std::move(k);
  // Oldest first, across adapters: past the bound or the retention.
  for (;;) {
    size_t oldest = SIZE_MAX;
    for (size_t x = 0; x < processing_kept.size(); ++x) {
      if (processing_kept[x].empty()) continue;
      if (oldest == SIZE_MAX ||
          processing_kept[x].begin()->first < processing_kept[oldest].begin()->first) {
        oldest = x;
      }
    }
    if (oldest == SIZE_MAX) break;
    auto first = processing_kept[oldest].begin();
    if (kept_bytes <= kProcessingBytes && first->second.since_ms >= expired) break;
    kept_bytes -= first->second.frame.bytes.size();
    processing_kept[oldest].erase(first);
  }
}

// The plain frame kept for (a, seq), or nullopt; forgotten either way.
std::optional<std::string> DeliveryEngine::Impl::TakeProcessing(size_t a, uint64_t seq) {
  KeptRecord k;
  {
    std::lock_guard<std::mutex> lock(processing_mu);
    auto it = processing_kept[a].find(seq);
    if (it == processing_kept[a].end()) return std::nullopt;
    kept_bytes -= it->second.frame.bytes.size();
    k = std::move(it->second);
    processing_kept[a].erase(it);
  }
  if (k.frame.codec == Codec::kNone) return std::move(k.frame.bytes);
  journal::FrameMeta meta;
  meta.codec = Codec::kZstd;
  meta.raw_length = k.raw_length;
  std::string frame;
  if (!journal::RawBody(meta, k.frame.bytes, &frame).ok()) return std::nullopt;
  return frame;
}

// The oldest sequence adapter `a` still needs: its live cursor, and what UpdateHeldFloor found.
uint64_t DeliveryEngine::Impl::AdapterFloor(size_t a) const {
  return std::min(MinCursor(a) + 1, adapter_holds[a].load(std::memory_order_relaxed));
}

uint64_t DeliveryEngine::Impl::BytesHeld(size_t a) const {
  const uint64_t floor = AdapterFloor(a);
  return floor > committed.load(std::memory_order_acquire) ? 0 : journal->BytesFrom(floor);
}

void DeliveryEngine::Impl::RunRetention() {
  auto r =
      journal->DeleteBefore(ReclaimableBelow(), static_cast<int64_t>(opt.delivery.retention_ms));
  if (!r.ok()) {
    std::fprintf(stderr, "dvrouter: journal retention failed: %s\n", r.status().ToString().c_str());
  } else if (r->bytes_deleted > 0 && retention_bytes) {
    retention_bytes->Increment(static_cast<double>(r->bytes_deleted));
  }
  LogBudgetHolders();
}

// When the journal refuses appends because undelivered events fill its budget, says which
// adapters hold how much (at most every 10 s).
void DeliveryEngine::Impl::LogBudgetHolders() {
  const JournalStats js = journal->Stats();
  if (js.budget_refusals == logged_refusals) return;
  const int64_t now = opt.now_ms();
  if (now - last_budget_log_ms < 10'000) return;
  last_budget_log_ms = now;
  std::string holders;
  const uint64_t last = committed.load(std::memory_order_acquire);
  for (size_t a = 0; a < adapters.size(); ++a) {
    const uint64_t floor = AdapterFloor(a);
    if (floor > last) continue;
    holders += " " + adapters[a].config.name + " holds " + std::to_string(BytesHeld(a)) +
               " bytes from seq " + std::to_string(floor) + ";";
  }
  std::fprintf(stderr,
               "dvrouter: journal disk budget (%llu bytes) is full of undelivered events: %llu "
               "appends refused (503) since the last report;%s\n",
               static_cast<unsigned long long>(js.budget_bytes),
               static_cast<unsigned long long>(js.budget_refusals - logged_refusals),
               holders.c_str());
  logged_refusals = js.budget_refusals;
}

void DeliveryEngine::Impl::FeedReplays() {
  constexpr uint64_t kMaxOutstanding = 4096;
  std::unique_lock<std::mutex> lock(jobs_mu);
  while (!jobs.empty() && replays_outstanding.load() < kMaxOutstanding) {
    ReplayJob& job = jobs.front();
    auto send = [&](std::string frame, uint64_t dlq_id) {
      auto item = std::make_unique<ReplayItem>();
      item->adapter = job.adapter;
      item->dlq_id = dlq_id;
      item->frame = std::move(frame);
      uint32_t len = 0;
      if (!journal::DecodeFrame(item->frame.data(), item->frame.size(), &item->meta, &item->header,
                                &item->body, &len)
               .ok()) {
        return false;
      }
      item->ready_ms = opt.now_ms();
      item->record = RecordHash(item->header.primary_entity_name, item->header.primary_entity_id);
      Worker* w = workers[item->meta.partition % workers.size()].get();
      replays_outstanding.fetch_add(1);
      w->PostReplay(std::move(item));
      return true;
    };
    if (!job.range) {
      while (job.next < job.dlq_ids.size() && replays_outstanding.load() < kMaxOutstanding) {
        const uint64_t id = job.dlq_ids[job.next++];
        if (!dlq_in_replay.insert(id).second) continue;  // already on its way
        auto entry = dlq->Get(id);
        if (!entry.ok() || !send(std::move(entry->record), id)) {
          dlq_in_replay.erase(id);
          std::fprintf(
              stderr, "dvrouter: DLQ entry %llu cannot be replayed: %s\n",
              static_cast<unsigned long long>(id),
              entry.ok() ? "its record does not decode" : entry.status().ToString().c_str());
          continue;
        }
      }
      if (job.next >= job.dlq_ids.size()) jobs.pop_front();
      continue;
    }
    // A journal range: read a bounded piece.
    bool finished = true;
    std::string frame;
    Status st = journal->Scan(
        job.pos,
        [&](const RecordView& v) {
          if (v.handle.seq > job.to) return false;
          if (replays_outstanding.load() >= kMaxOutstanding) {
            finished = false;
            return false;
          }
          job.pos = v.handle.seq + 1;
          job.hint = ScanHint{v.handle.segment, v.handle.offset + v.handle.length};
          // Only what the routes (and the loop guard) send to this adapter.
          uint64_t mask = 0;
          if (v.header->status_record) {
            mask = StatusMask(*v.header);  // status records: to write-back adapters only
          } else {
            routes->Match(*v.header, v.body, replay_extractor.get(), &mask);
          }
          if ((mask >> job.adapter & 1) == 0) return true;
          // Re-encode the frame from the view (the scan's buffer is reused).
          frame.clear();
          journal::FrameMeta meta{v.handle.seq, v.received_ms, v.key, v.handle.partition};
          journal::EncodeFramePrefix(meta, *v.header, v.body, &frame);
          frame.append(v.body);
          send(std::move(frame), 0);
          return true;
        },
        job.hint);
    if (!st.ok()) {
      std::fprintf(stderr, "dvrouter: replay of %s stopped at seq %llu: %s\n",
                   adapters[job.adapter].config.name.c_str(),
                   static_cast<unsigned long long>(job.pos), st.ToString().c_str());
    }
    if (finished || !st.ok()) jobs.pop_front();
    if (!finished) break;
  }
}

Status DeliveryEngine::Impl::ConfirmEvent(size_t a, const EventKey& key,
                                          const DeliveryResult& result) {
  if (!started.load(std::memory_order_acquire)) return Unavailable("delivery is not running");
  std::lock_guard<std::mutex> lock(confirm_mu);
  std::optional<EventStatus> st = status.Find(key);
  if (!st) {
    return NotFound("event " + key.ToHex() +
                    " is not in the status table (forgotten after a restart, or older than "
                    "delivery.status_entries)");
  }
  const AdapterStatus& as = st->adapters[a];
  const bool failed = result.outcome != DeliveryOutcome::kDelivered;
  if (as.state == EventState::kCompleted || as.state == EventState::kFailed) {
    return Status::Ok();  // confirmed already: a repeated callback changes nothing
  }
  if (as.state == EventState::kPending || as.state == EventState::kSubmitted) {
    // The call is in flight (or waits for a retry): the sink confirmed before its answer to the
    // call came back. Kept until that answer says processing.
    std::lock_guard<std::mutex> early_lock(early_mu);
    const std::string k = EarlyKey(a, key);
    if (early.insert_or_assign(k, result).second) early_order.push_back(k);
    while (early_order.size() > 10'000) {
      early.erase(early_order.front());
      early_order.pop_front();
    }
    early_count.store(early.size(), std::memory_order_release);
    return Status::Ok();
  }
  if (as.state != EventState::kProcessing) {
    return FailedPrecondition("event " + key.ToHex() + " is " +
                              std::string(EventStateName(as.state)) + " at adapter " +
                              adapters[a].config.name + ", not processing");
  }
  // The record: its header for the status record and the write-back, its frame for the DLQ.
  std::string frame;
  EventHeader header;
  uint32_t partition = 0;
  bool found = false;
  auto take = [&](const RecordView& v) {
    if (v.handle.seq != st->seq || !(v.key == key)) return;
    found = true;
    header = *v.header;
    partition = v.handle.partition;
    journal::FrameMeta meta{v.handle.seq, v.received_ms, v.key, v.handle.partition};
    journal::EncodeFramePrefix(meta, header, v.body, &frame);
    frame.append(v.body);
  };
  if (std::optional<std::string> kept = TakeProcessing(a, st->seq)) {  // kept since its 202
    journal::FrameMeta meta;
    EventHeader h;
    std::string_view body;
    uint32_t len = 0;
    if (journal::DecodeFrame(kept->data(), kept->size(), &meta, &h, &body, &len).ok() &&
        meta.key == key) {
      found = true;
      header = std::move(h);
      partition = meta.partition;
      frame = std::move(*kept);
    }
  }
  if (!found && st->handle.length != 0) {  // one read where the record is (any thread)
    std::string buffer;
    EventHeader h;
    RecordView v;
    Status read = journal->Read(st->handle, &buffer, &h, &v);
    if (!read.ok()) return read;
    take(v);
  } else if (!found) {  // a replayed event: scan from its sequence
    Status scan = journal->Scan(st->seq, [&](const RecordView& v) {
      take(v);
      return false;
    });
    if (!scan.ok()) return scan;
  }
  if (!found) return NotFound("event " + key.ToHex() + " is no longer in the journal");
  const int64_t now = opt.now_ms();
  if (failed) {
    DlqEntry d;
    d.adapter = adapters[a].config.name;
    d.seq = st->seq;
    d.event_id = key.ToHex();
    d.table = header.primary_entity_name;
    d.row_id = header.primary_entity_id;
    d.message = header.message_name;
    d.reason = "permanent";
    d.attempts = as.attempts;
    d.last_error = result.error;
    d.failed_at_ms = now;
    d.record = std::move(frame);
    std::vector<DlqEntry> dead;
    dead.push_back(std::move(d));
    if (Status w = dlq->Append(&dead); !w.ok()) {
      KeepProcessing(a, st->seq, dead.front().record);  // the sink may confirm again
      return w;
    }
  }
  status.Update(key, st->seq, a, [&](AdapterStatus& s) {
    s.state = failed ? EventState::kFailed : EventState::kCompleted;
    s.updated_ms = now;
    if (!result.error.empty()) s.last_error = result.error;
    if (!result.answer.empty()) s.answer = result.answer;
  });
  // Its own identity (generation: the confirmation's time): a replayed job's confirmation must
  // not be taken for the original run's record and dropped as a duplicate.
  EmitStatus(a, key, st->seq, partition, header,
             failed ? EventState::kFailed : EventState::kCompleted, as.attempts,
             static_cast<uint64_t>(now), result.error, result.answer);
  if (confirmations) {
    confirmations
        ->Add({{"adapter", adapters[a].config.name}, {"outcome", failed ? "failed" : "completed"}})
        .Increment();
  }
  return Status::Ok();
}

uint64_t DeliveryEngine::Impl::StatusMask(const EventHeader& h) const {
  for (size_t a = 0; a < adapters.size(); ++a) {
    if (adapters[a].config.name == h.owning_extension_id) return feeds[a].writeback_mask;
  }
  return 0;  // its source adapter is no longer configured
}

void DeliveryEngine::Impl::EmitStatus(size_t a, const EventKey& key, uint64_t seq,
                                      uint32_t partition, const EventHeader& h, EventState state,
                                      uint32_t attempts, uint64_t generation,
                                      const std::string& error, const std::string& answer) {
  if (feeds[a].writeback_mask == 0 || h.status_record) return;
  const int64_t now = opt.now_ms();
  auto s = std::make_unique<StatusAppend>();
  s->engine = this;
  s->source = a;
  EventHeader& sh = s->header;
  sh.status_record = true;
  sh.message_name = kStatusMessage;
  sh.primary_entity_name = h.primary_entity_name;
  sh.primary_entity_id = h.primary_entity_id;
  sh.stage = h.stage;
  sh.mode = h.mode;
  sh.correlation_id = h.correlation_id;
  sh.organization_name = h.organization_name;
  sh.organization_host = h.organization_host;
  sh.owning_extension_id = adapters[a].config.name;
  sh.operation_created_on_ms = now;
  const std::string event_id = key.ToHex();
  const std::string_view state_name = EventStateName(state);
  // Identity: one record per event, state, attempt count and replay, so a redelivery after a
  // crash is a duplicate the journal drops.
  sh.operation_id = event_id + "/" + std::string(state_name) + "/" + std::to_string(attempts) +
                    "/" + std::to_string(generation);
  std::string& b = s->body;
  b = "{\"event_id\":\"" + event_id + "\",\"seq\":" + std::to_string(seq) + ",\"adapter\":";
  AppendJsonString(&b, adapters[a].config.name);
  b += ",\"state\":\"" + std::string(state_name) + "\",\"attempts\":" + std::to_string(attempts);
  b += ",\"table\":";
  AppendJsonString(&b, h.primary_entity_name);
  b += ",\"row_id\":";
  AppendJsonString(&b, h.primary_entity_id);
  b += ",\"error\":";
  if (error.empty()) {
    b += "null";
  } else {
    AppendJsonString(&b, Utf8Excerpt(error, 4000));  // any adapter's text, cut and made valid
  }
  b += ",\"answer\":";
  if (answer.empty()) {
    b += "null";
  } else if (answer.front() == '{') {
    b += answer;  // the adapter's captured JSON object
  } else {
    AppendJsonString(&b, answer);
  }
  // A hybrid clock: increasing across events, attempts, replays and restarts, so the write-back
  // can drop a status older than the one a row already shows (a retried append lands late).
  uint64_t order = status_clock.load();
  uint64_t next;
  do {
    next = std::max(order + 1, static_cast<uint64_t>(now) * 1000);
  } while (!status_clock.compare_exchange_weak(order, next));
  b += ",\"order\":" + std::to_string(next);
  b += ",\"at\":\"" + FormatIsoUtc(now) + "\"}";
  AppendRequest& r = s->request;
  r.key = sh.DedupeKey();
  r.partition = partition;
  r.received_ms = now;
  r.header = &sh;
  r.body = b;
  r.callback = s.get();
  feeds[a].issued.fetch_add(1, std::memory_order_seq_cst);
  journal->Append(&s.release()->request);
}

void DeliveryEngine::Impl::StatusAppended(StatusAppend* s, const AppendResult& result) {
  if (result.status.ok()) {
    if (status_records && !result.duplicate) status_records->Increment();
    {
      std::lock_guard<std::mutex> lock(status_mu);
      feeds[s->source].settled.fetch_add(1, std::memory_order_seq_cst);
    }
    status_cv.notify_all();
    delete s;
    return;
  }
  if (status_append_errors) status_append_errors->Increment();
  {
    std::lock_guard<std::mutex> lock(status_mu);
    status_retry.push_back(s);  // the maintenance thread appends it again
  }
  status_cv.notify_all();
}

void DeliveryEngine::Impl::RetryStatusAppends() {
  std::vector<StatusAppend*> again;
  {
    std::lock_guard<std::mutex> lock(status_mu);
    again.swap(status_retry);
  }
  // A failure calls back (possibly on this thread) into status_retry again: no lock held here.
  for (StatusAppend* s : again) journal->Append(&s->request);
}

bool DeliveryEngine::Impl::StatusSettled(size_t a, uint64_t issued, int64_t wait_ms) {
  std::unique_lock<std::mutex> lock(status_mu);
  auto failed = [&] {  // a failed append waits for the next retry: no point waiting now
    return std::any_of(status_retry.begin(), status_retry.end(),
                       [&](const StatusAppend* s) { return s->source == a; });
  };
  status_cv.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] {
    return feeds[a].settled.load(std::memory_order_seq_cst) >= issued || failed();
  });
  // Counts alone could match while an older record waits for its retry and a newer one is in.
  return feeds[a].settled.load(std::memory_order_seq_cst) >= issued && !failed();
}

void DeliveryEngine::Impl::MaintenanceLoop() {
  SetThreadName("dv-maint");
  int64_t last_retention = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(maint_mu);
      maint_cv.wait_for(lock, std::chrono::milliseconds(opt.delivery.cursor_flush_ms),
                        [&] { return maint_stop; });
      if (maint_stop) return;
    }
    RetryStatusAppends();
    FlushCursors();
    FeedReplays();
    UpdateHeldFloor();
    const int64_t now = opt.now_ms();
    if (now - last_retention >= 1000) {
      last_retention = now;
      RunRetention();
    }
  }
}

DeliveryEngine::DeliveryEngine(EngineOptions options, std::vector<EngineAdapter> adapters)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(adapters))) {}

DeliveryEngine::~DeliveryEngine() { Stop(); }

Status DeliveryEngine::Start(Journal* journal) { return impl_->Start(journal); }
void DeliveryEngine::Stop() { impl_->Stop(); }

void DeliveryEngine::OnCommitted(const RecordHandle& handle) {
  Impl& m = *impl_;
  m.queues[handle.partition]->Offer(handle);
  m.committed.store(handle.seq, std::memory_order_release);
  // The wake-up waits for the end of the group: a worker woken per record would drain one
  // record, sleep, and be woken again by the next (tens of thousands of switches a second).
  if (!m.started.load(std::memory_order_acquire)) return;  // workers are built by Start
  if (m.wake_pending.size() != m.workers.size()) m.wake_pending.assign(m.workers.size(), 0);
  m.wake_pending[handle.partition % m.workers.size()] = 1;
}

uint64_t DeliveryEngine::ReclaimableBelow() { return impl_->ReclaimableBelow(); }

void DeliveryEngine::OnGroupCommitted() {
  Impl& m = *impl_;
  if (!m.started.load(std::memory_order_acquire)) return;
  for (size_t w = 0; w < m.wake_pending.size(); ++w) {
    if (m.wake_pending[w] == 0) continue;
    m.wake_pending[w] = 0;
    m.workers[w]->waker.Notify();
  }
}

namespace {

bool ParseEventId(const std::string& text, EventKey* key) {
  if (text.size() != 32) return false;
  uint64_t parts[2] = {0, 0};
  for (size_t i = 0; i < 32; ++i) {
    const char c = text[i];
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else {
      return false;
    }
    parts[i / 16] = parts[i / 16] << 4 | static_cast<uint64_t>(v);
  }
  key->hi = parts[0];
  key->lo = parts[1];
  return true;
}

void AppendDlqJson(std::string* out, const DlqEntry& e) {
  *out += "{\"id\":" + std::to_string(e.id) + ",\"adapter\":";
  AppendJsonString(out, e.adapter);
  *out += ",\"seq\":" + std::to_string(e.seq) + ",\"event_id\":";
  AppendJsonString(out, e.event_id);
  *out += ",\"table\":";
  AppendJsonString(out, e.table);
  *out += ",\"row_id\":";
  AppendJsonString(out, e.row_id);
  *out += ",\"message\":";
  AppendJsonString(out, e.message);
  *out += ",\"reason\":";
  AppendJsonString(out, e.reason);
  *out += ",\"attempts\":" + std::to_string(e.attempts) + ",\"last_error\":";
  AppendJsonString(out, e.last_error);
  *out += ",\"failed_at\":";
  AppendJsonString(out, FormatIsoUtc(e.failed_at_ms));
  *out += ",\"replayed\":";
  *out += e.replayed ? "true}" : "false}";
}

}  // namespace

Result<std::string> DeliveryEngine::EventStatusJson(const std::string& event_id) const {
  const Impl& m = *impl_;
  EventKey key;
  if (!ParseEventId(event_id, &key)) {
    return InvalidArgument("an event id is 32 hexadecimal digits, got '" + event_id + "'");
  }
  const std::string id = key.ToHex();
  std::optional<EventStatus> st = m.status.Find(key);
  std::vector<std::optional<DlqEntry>> dead(m.adapters.size());
  bool any_dead = false;
  for (size_t a = 0; a < m.adapters.size(); ++a) {
    if (m.dlq) dead[a] = m.dlq->FindEvent(id, m.adapters[a].config.name);
    any_dead |= dead[a].has_value();
  }
  if (!st && !any_dead) {
    return NotFound("event " + id +
                    " is not among the recent events the status table keeps "
                    "(delivery.status_entries) nor in the DLQ");
  }
  std::string out = "{\"event_id\":\"" + id + "\"";
  if (st) out += ",\"seq\":" + std::to_string(st->seq);
  out += ",\"adapters\":{";
  bool first = true;
  for (size_t a = 0; a < m.adapters.size(); ++a) {
    if (!first) out += ',';
    first = false;
    AppendJsonString(&out, m.adapters[a].config.name);
    out += ':';
    if (st) {
      const AdapterStatus& s = st->adapters[a];
      // A failed event that was replayed may have moved on since its DLQ entry.
      out += "{\"state\":\"" + std::string(EventStateName(s.state)) + "\"";
      out += ",\"attempts\":" + std::to_string(s.attempts);
      if (s.updated_ms > 0) {
        out += ",\"updated_at\":";
        AppendJsonString(&out, FormatIsoUtc(s.updated_ms));
      } else {
        // Never queued for this adapter: not routed to it, or skipped by the loop guard.
        out += ",\"routed\":false";
      }
      if (!s.last_error.empty()) {
        out += ",\"last_error\":";
        AppendJsonString(&out, s.last_error);
      }
      if (!s.answer.empty()) {
        out += ",\"answer\":";
        AppendJsonString(&out, s.answer);
      }
    } else if (dead[a]) {
      out += "{\"state\":\"failed\",\"attempts\":" + std::to_string(dead[a]->attempts) +
             ",\"last_error\":";
      AppendJsonString(&out, dead[a]->last_error);
    } else {
      out += "{\"state\":\"unknown\"";
    }
    if (dead[a]) {
      out += ",\"dlq\":";
      AppendDlqJson(&out, *dead[a]);
    }
    out += '}';
  }
  out += "}}";
  return out;
}

std::string DeliveryEngine::DlqJson(const std::string& adapter, std::optional<uint64_t> id,
                                    bool include_replayed) const {
  std::string out = "[";
  if (impl_->dlq) {
    bool first = true;
    for (const DlqEntry& e : impl_->dlq->List(adapter, id, include_replayed)) {
      if (!first) out += ",\n";
      first = false;
      AppendDlqJson(&out, e);
    }
  }
  out += "]";
  return out;
}

Result<uint64_t> DeliveryEngine::ReplayDlq(const std::string& adapter, std::optional<uint64_t> id) {
  Impl& m = *impl_;
  if (!m.dlq || !m.started.load()) return Unavailable("delivery is not running");
  if (!adapter.empty() && adapter_index(adapter) == SIZE_MAX) {
    return NotFound("no adapter named '" + adapter + "'");
  }
  std::map<size_t, Impl::ReplayJob> by_adapter;
  uint64_t count = 0;
  for (const DlqEntry& e : m.dlq->List(adapter, id, /*include_replayed=*/id.has_value())) {
    const size_t a = adapter_index(e.adapter);
    if (a == SIZE_MAX) continue;  // an adapter no longer configured
    by_adapter[a].adapter = a;
    by_adapter[a].dlq_ids.push_back(e.id);
    ++count;
  }
  if (id && count == 0) return NotFound("no DLQ entry " + std::to_string(*id) + " to replay");
  {
    std::lock_guard<std::mutex> lock(m.jobs_mu);
    for (auto& [a, job] : by_adapter) m.jobs.push_back(std::move(job));
  }
  m.maint_cv.notify_all();
  return count;
}

Status DeliveryEngine::ReplayRange(const std::string& adapter, uint64_t from_seq, uint64_t to_seq) {
  Impl& m = *impl_;
  if (!m.started.load()) return Unavailable("delivery is not running");
  const size_t a = adapter_index(adapter);
  if (a == SIZE_MAX) return NotFound("no adapter named '" + adapter + "'");
  if (from_seq == 0 || to_seq < from_seq) {
    return InvalidArgument("the range must satisfy 1 <= from <= to");
  }
  if (from_seq > m.committed.load()) {
    return InvalidArgument("from " + std::to_string(from_seq) + " is past the newest event " +
                           std::to_string(m.committed.load()));
  }
  {
    // The floor goes down before the check: from here on nothing at or past from_seq is deleted
    // (the journal reads the floor under the lock its Scan snapshots under).
    std::lock_guard<std::mutex> lock(m.jobs_mu);
    LowerTo(&m.held_floor, from_seq);
    LowerTo(&m.adapter_holds[a], from_seq);
    // Retention deletes whole segments from the front: is the start still there?
    uint64_t oldest = 0;
    Status st = m.journal->Scan(0, [&](const RecordView& v) {
      oldest = v.handle.seq;
      return false;
    });
    if (!st.ok()) return st;
    if (oldest == 0 || oldest > from_seq) {
      return NotFound("events before " + std::to_string(oldest) +
                      " are no longer retained (delivery.retention and journal.disk_budget_bytes)");
    }
    Impl::ReplayJob job;
    job.adapter = a;
    job.range = true;
    job.pos = from_seq;
    job.to = to_seq;
    m.jobs.push_back(std::move(job));
  }
  m.maint_cv.notify_all();
  return Status::Ok();
}

uint64_t DeliveryEngine::RecordCacheBytes() const {
  if (!impl_->started.load(std::memory_order_acquire)) return 0;
  uint64_t sum = 0;
  for (const auto& w : impl_->workers) sum += w->record_cache.bytes();
  return sum;
}

void DeliveryEngine::RefreshMetrics() {
  Impl& m = *impl_;
  if (!m.started.load() || m.queue_sum == nullptr) return;
  double sum = 0, max = 0;
  for (auto& q : m.queues) {
    const double d = static_cast<double>(q->SizeApprox());
    sum += d;
    max = std::max(max, d);
  }
  m.queue_sum->Set(sum);
  m.queue_max->Set(max);
  m.cache_bytes->Set(static_cast<double>(RecordCacheBytes()));
  const int64_t now = m.opt.now_ms();
  for (size_t a = 0; a < m.adapters.size(); ++a) {
    DeliveryMetrics& dm = m.metrics[a];
    dm.lag_events->Set(static_cast<double>(LagEvents(a)));
    int64_t oldest = 0;
    for (auto& w : m.workers) {
      const int64_t o = w->channels[a]->oldest_ms.load(std::memory_order_relaxed);
      if (o != 0 && (oldest == 0 || o < oldest)) oldest = o;
    }
    dm.lag_seconds->Set(oldest == 0 ? 0.0 : std::max<double>(0, (now - oldest) / 1000.0));
    dm.breaker->Set(static_cast<double>(static_cast<int>(m.breakers[a]->state())));
    dm.dlq->Set(static_cast<double>(dlq_pending(a)));
    dm.bytes_held->Set(static_cast<double>(m.BytesHeld(a)));
  }
}

Status DeliveryEngine::Confirm(std::string_view adapter, const std::string& event_id,
                               const DeliveryResult& result) {
  const size_t a = adapter_index(adapter);
  if (a == SIZE_MAX) return NotFound("no adapter named " + std::string(adapter));
  EventKey key;
  if (!ParseEventId(event_id, &key)) return NotFound("not an event id: " + event_id);
  return impl_->ConfirmEvent(a, key, result);
}

void DeliveryEngine::Wake() {
  for (auto& w : impl_->workers) w->waker.Notify();
}

uint64_t DeliveryEngine::LoopPasses() const { return impl_->passes.load(); }

uint64_t DeliveryEngine::Cursor(size_t adapter, uint32_t partition) const {
  return impl_->CursorRef(adapter, partition).load();
}

uint64_t DeliveryEngine::LagEvents(size_t adapter) const {
  uint64_t min_cursor = UINT64_MAX;
  for (uint32_t p = 0; p < impl_->opt.partitions; ++p) {
    min_cursor = std::min(min_cursor, impl_->CursorRef(adapter, p).load());
  }
  const uint64_t c = impl_->committed.load();
  return c > min_cursor ? c - min_cursor : 0;
}

uint64_t DeliveryEngine::ReplaysPending() const {
  std::lock_guard<std::mutex> lock(impl_->jobs_mu);
  return impl_->replays_outstanding.load() + impl_->jobs.size();
}

size_t DeliveryEngine::adapter_index(std::string_view name) const {
  for (size_t a = 0; a < impl_->adapters.size(); ++a) {
    if (impl_->adapters[a].config.name == name) return a;
  }
  return SIZE_MAX;
}

uint64_t DeliveryEngine::dlq_pending(size_t adapter) const {
  return impl_->dlq ? impl_->dlq->Pending(impl_->adapters[adapter].config.name) : 0;
}

}  // namespace dvrouter
