#include "router/delivery/engine.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>

#include "router/common/json.h"
#include "router/common/thread_name.h"
#include "router/decode/attributes.h"
#include "router/decode/decode.h"
#include "router/delivery/confirmations.h"
#include "router/delivery/dlq.h"
#include "router/delivery/lanes.h"
#include "router/delivery/record_cache.h"
#include "router/delivery/replays.h"
#include "router/delivery/retention.h"
#include "router/delivery/retry.h"
#include "router/delivery/routing.h"
#include "router/delivery/scheduler.h"
#include "router/delivery/status_records.h"
#include "router/delivery/status_table.h"
#include "router/ingress/admin_json.h"
#include "router/metrics/delivery_metrics.h"
#include "router/partition/partition.h"
#include "router/partition/partition_queue.h"

namespace dvrouter {

namespace {

using delivery::Batch;
using delivery::CanHoldCached;
using delivery::Channel;
using delivery::Entry;
using delivery::Finish;
using delivery::InsertReplay;
using delivery::Lane;
using delivery::Part;
using delivery::SteadyClock;
using delivery::Worker;

// An idle worker looks at its partitions this often even without a wake-up: idle partitions'
// cursors follow the journal's end (for lag and retention) within this time.
constexpr int64_t kIdleWaitMs = 100;

int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct DeliveryEngine::Impl {
  Impl(EngineOptions o, std::vector<EngineAdapter> a)
      : opt(std::move(o)),
        adapters(std::move(a)),
        status(opt.delivery.status_entries, adapters.size()) {
    if (!opt.now_ms) opt.now_ms = SystemNowMs;
    for (uint32_t p = 0; p < opt.partitions; ++p) {
      queues.push_back(std::make_unique<PartitionQueue>(opt.delivery.queue_capacity));
    }
    for (const EngineAdapter& ea : adapters) names.push_back(ea.config.name);
    routes = std::make_unique<RouteTable>(opt.routes, opt.loop_guard, names);
    metrics = DeliveryMetrics::Register(opt.registry, names);
    std::vector<AdapterConfig> configs;
    for (const EngineAdapter& ea : adapters) configs.push_back(ea.config);
    status_records = std::make_unique<StatusRecords>(configs, opt.now_ms, metrics.status_records,
                                                     metrics.status_append_errors);
    confirmations = std::make_unique<Confirmations>(
        names, opt.now_ms, static_cast<int64_t>(opt.delivery.retention_ms), started, &status,
        status_records.get(), metrics.confirmations);
    retention = std::make_unique<Retention>(
        names, opt.partitions, opt.now_ms, static_cast<int64_t>(opt.delivery.retention_ms), started,
        committed, status_records.get(), metrics.cursor_flush_errors, metrics.retention_bytes);
    replays = std::make_unique<Replays>(names, opt.now_ms, started, committed, routes.get(),
                                        status_records.get(), retention.get(), opt.max_body_bytes);
    retention->set_holds(replays.get());         // range replays hold the journal too
    retention->set_open_jobs([this](size_t a) {  // 202s not yet confirmed hold the saved cursor
      return confirmations->OldestOpen(a, opt.partitions);
    });
    scheduler =
        std::make_unique<delivery::Scheduler>(adapters, opt.now_ms, &status, status_records.get(),
                                              confirmations.get(), replays.get(), metrics);
  }

  Status Start(Journal* j);
  void Stop();
  void WorkerLoop(Worker* w);
  bool Drain(Worker* w, Part& part, uint64_t committed);
  bool CatchUp(Worker* w);
  void Offer(Worker* w, Part& part, const RecordView& view, bool live,
             CachedRecord* cached = nullptr);
  void PublishOldest(Worker* w);
  void MaintenanceLoop();

  std::atomic<uint64_t>& CursorRef(size_t adapter, uint32_t partition) {
    return retention->Ref(adapter, partition);
  }

  EngineOptions opt;
  std::vector<EngineAdapter> adapters;
  std::vector<std::string> names;  // the adapters' names, by index
  DeliveryMetrics metrics;         // null pointers when no registry
  StatusTable status;
  Journal* journal = nullptr;
  std::vector<std::unique_ptr<PartitionQueue>> queues;
  std::unique_ptr<RouteTable> routes;
  std::vector<std::unique_ptr<Worker>> workers;
  // Workers that got records in the current group commit (journal writer thread only).
  std::vector<uint8_t> wake_pending;
  std::unique_ptr<DeadLetterQueue> dlq;
  std::atomic<uint64_t> committed{0};
  std::atomic<bool> started{false};
  std::atomic<uint64_t> passes{0};

  // The units the data path calls (each header says what it owns and which thread calls it).
  std::unique_ptr<StatusRecords> status_records;   // of write-back sources
  std::unique_ptr<Confirmations> confirmations;    // of events sinks answered processing (202)
  std::unique_ptr<Retention> retention;            // cursors, and what the journal may delete
  std::unique_ptr<Replays> replays;                // operator replays: DLQ entries, ranges
  std::unique_ptr<delivery::Scheduler> scheduler;  // batches to the adapters, their answers

  std::thread maintenance;
  std::mutex maint_mu;
  std::condition_variable maint_cv;
  bool maint_stop = false;
};

Status DeliveryEngine::Impl::Start(Journal* j) {
  journal = j;
  status_records->Attach(j);
  if (Status st = MakeDirectories(opt.state_dir); !st.ok()) return st;
  auto loaded = retention->Open(
      opt.cursor_store != nullptr ? opt.cursor_store
                                  : std::make_shared<FileCursorStore>(opt.state_dir + "/cursors"));
  if (!loaded.ok()) return loaded.status();
  Result<std::unique_ptr<DeadLetterQueue>> q = InvalidArgument("no DLQ");
  if (opt.dlq_log) {
    Result<std::unique_ptr<DlqLog>> log = opt.dlq_log();
    if (!log.ok()) return log.status();
    q = DeadLetterQueue::Open(std::move(log).value());
  } else {
    q = DeadLetterQueue::Open(opt.state_dir + "/dlq.log");
  }
  if (!q.ok()) return q.status();
  dlq = std::move(q).value();
  if (dlq->damaged_lines() > 0) {
    std::fprintf(stderr, "dvrouter: %s: %llu damaged lines skipped\n", dlq->name().c_str(),
                 static_cast<unsigned long long>(dlq->damaged_lines()));
  }

  const uint64_t last = j->Stats().next_seq - 1;
  committed.store(std::max(committed.load(), last), std::memory_order_release);
  retention->Resume(j, *loaded, last);

  confirmations->Attach(journal, dlq.get());
  scheduler->Attach(journal, dlq.get());
  replays->Attach(journal, dlq.get(), [this](std::unique_ptr<ReplayItem> item) {
    workers[item->meta.partition % workers.size()]->PostReplay(std::move(item));
  });
  for (size_t a = 0; a < adapters.size(); ++a) {
    if (AsyncConfirmations* async = adapters[a].adapter->async_confirmations()) {
      async->SetConfirmationSink(confirmations->sink(a));
    }
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
  status_records->RetryAppends();
  retention->Flush();
  status_records->DropRetries();
}

void DeliveryEngine::Impl::WorkerLoop(Worker* w) {
  SetThreadName("dv-worker-" + std::to_string(w->index));
  std::vector<Batch*> done;
  std::vector<std::unique_ptr<ReplayItem>> posted;
  for (;;) {
    const bool exiting = w->exit.load(std::memory_order_acquire);
    const uint64_t snapshot = committed.load(std::memory_order_acquire);
    bool progress = false;
    {
      std::lock_guard<std::mutex> lock(w->inbox_mu);
      done.swap(w->completions);
      posted.swap(w->replay_inbox);
    }
    for (Batch* b : done) scheduler->Complete(w, b);
    progress |= !done.empty();
    done.clear();
    for (auto& item : posted) {
      Channel& c = *w->channels[item->adapter];  // before the move below
      c.dirty = true;
      InsertReplay(c, std::move(item));
    }
    progress |= !posted.empty();
    posted.clear();
    if (exiting) {
      // Adapters are stopped: every batch has completed. Drop replay items not yet sent (their
      // DLQ entries were marked replayed; they are counted so the operator sees them).
      std::vector<std::deque<std::unique_ptr<ReplayItem>>*> unsent;
      for (auto& c : w->channels) unsent.push_back(&c->replays);
      replays->Abandon(unsent);
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
          progress |= scheduler->Dispatch(w, *c, now, &c->due_ms);
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
          cacheable |= CanHoldCached(*w, lane, a);
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
            cached->changes.SetTarget(cached->header.target_offset, cached->header.target_length);
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
      if (lane.window.empty()) Finish(lane);
    }
  }
  return progress;
}

// Routes the record and appends it to every lane that is at the record's position.
void DeliveryEngine::Impl::Offer(Worker* w, Part& part, const RecordView& view, bool live,
                                 CachedRecord* cached) {
  uint64_t mask = 0;
  uint64_t pending = 0;  // adapters that took the event: its status is pending there
  Entry* taken[64];      // the entries it became (at most one per adapter)
  size_t n_taken = 0;
  bool routed = false;
  uint64_t record = 0;  // RecordHash, once per event (0: not yet)
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
        mask = status_records->MaskFor(view.body);  // only to the write-back adapters of its source
      } else {
        RouteVerdict v = routes->Match(*view.header, view.body, w->extractor.get(), &mask);
        if (v != RouteVerdict::kRouted && metrics.skipped[static_cast<int>(v)]) {
          metrics.skipped[static_cast<int>(v)]->Increment();
        }
      }
    }
    lane.read_pos = view.handle.seq;
    lane.hint = ScanHint{view.handle.segment, view.handle.offset + view.handle.length};
    if ((mask >> a & 1) == 0) {
      if (lane.window.empty()) Finish(lane);
      continue;
    }
    Entry e;
    e.seq = view.handle.seq;
    e.handle = view.handle;
    if (record == 0) {
      record = RecordHash(view.header->primary_entity_name, view.header->primary_entity_id);
    }
    e.record = record;
    e.key = view.key;
    e.received_ms = view.received_ms;
    e.ready_ms = now;
    // Only a lane that keeps up holds the cached record: one with a backlog would keep it (and
    // the cache budget) long before its batch comes, so it reads the journal when it gets there.
    if (cached != nullptr && CanHoldCached(*w, lane, a)) e.cached = EntryHold(cached);
    lane.window.push_back(std::move(e));
    if (n_taken < 64) taken[n_taken++] = &lane.window.back();  // a deque keeps its elements put
    MarkWaiting(lane, lane.window.size() - 1);
    w->channels[a]->dirty = true;
    pending |= uint64_t{1} << a;
  }
  const EventSummaryView summary{view.header->primary_entity_name, view.header->primary_entity_id,
                                 view.header->message_name, view.received_ms,
                                 view.header->status_record};
  const StatusTable::Slot slot = status.UpdateEach(
      view.key, view.handle.seq, pending,
      [&](AdapterStatus& s) { s.Step(EventState::kPending, now, 0, "", ""); }, &view.handle,
      &summary);
  for (size_t i = 0; i < n_taken; ++i) taken[i]->status = slot;
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
  if (metrics.catch_up_reads) metrics.catch_up_reads->Increment();
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
        if (lane.window.empty()) Finish(lane);
      }
    }
  }
  return true;
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
    status_records->RetryAppends();
    retention->Flush();
    replays->Feed();
    retention->UpdateHeldFloor();
    const int64_t now = opt.now_ms();
    if (now - last_retention >= 1000) {
      last_retention = now;
      retention->Run();
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

uint64_t DeliveryEngine::ReclaimableBelow() { return impl_->retention->ReclaimableBelow(); }

void DeliveryEngine::OnGroupCommitted() {
  Impl& m = *impl_;
  if (!m.started.load(std::memory_order_acquire)) return;
  for (size_t w = 0; w < m.wake_pending.size(); ++w) {
    if (m.wake_pending[w] == 0) continue;
    m.wake_pending[w] = 0;
    m.workers[w]->waker.Notify();
  }
}

Result<std::string> DeliveryEngine::EventStatusJson(const std::string& event_id,
                                                    bool with_record) const {
  EventKey key;
  if (!ParseEventId(event_id, &key)) {
    return InvalidArgument("an event id is 32 hexadecimal digits, got '" + event_id + "'");
  }
  std::optional<EventStatus> st = impl_->status.Find(key);
  std::string record;
  if (with_record && st) {
    if (st->handle.length == 0 || !impl_->started.load(std::memory_order_acquire)) {
      record = R"({"error":"where the record is in the journal is not known"})";
    } else {
      std::string buffer;
      EventHeader header;
      RecordView view;
      if (Status read = impl_->journal->Read(st->handle, &buffer, &header, &view); read.ok()) {
        record = EventRecordJson(header, view.body);
      } else {
        // Delivered history the journal deleted (retention or the disk budget), or a read error.
        record = "{\"error\":";
        AppendJsonString(&record, read.message());
        record += '}';
      }
    }
  }
  return dvrouter::EventStatusJson(key, st, impl_->dlq.get(), impl_->names, record);
}

std::string DeliveryEngine::SearchEventsJson(const EventQuery& query) const {
  EventQuery one_more = query;
  ++one_more.limit;  // to tell whether a next page has anything
  std::vector<EventMatch> found = impl_->status.Search(one_more);
  const bool more = found.size() > query.limit;
  if (more) found.pop_back();
  return EventSearchJson(found, impl_->names, more, impl_->status.size());
}

std::string DeliveryEngine::DlqJson(const std::string& adapter, std::optional<uint64_t> id,
                                    bool include_replayed, const std::string& reason,
                                    int64_t since_ms, size_t limit) const {
  return dvrouter::DlqJson(impl_->dlq.get(), adapter, id, include_replayed, reason, since_ms,
                           limit);
}

Result<uint64_t> DeliveryEngine::ReplayDlq(const std::string& adapter, std::optional<uint64_t> id) {
  Result<uint64_t> count = impl_->replays->QueueDlq(adapter, id);
  if (count.ok()) impl_->maint_cv.notify_all();
  return count;
}

Status DeliveryEngine::ReplayRange(const std::string& adapter, uint64_t from_seq, uint64_t to_seq,
                                   uint64_t* queued_to, int64_t from_ms, int64_t to_ms) {
  Result<uint64_t> last = impl_->replays->QueueRange(adapter, from_seq, to_seq, from_ms, to_ms);
  if (!last.ok()) return last.status();
  if (queued_to != nullptr) *queued_to = *last;
  impl_->maint_cv.notify_all();
  return Status::Ok();
}

std::string DeliveryEngine::ReplaysJson() const { return impl_->replays->Json(); }

uint64_t DeliveryEngine::RecordCacheBytes() const {
  if (!impl_->started.load(std::memory_order_acquire)) return 0;
  uint64_t sum = 0;
  for (const auto& w : impl_->workers) sum += w->record_cache.bytes();
  return sum;
}

void DeliveryEngine::RefreshMetrics() {
  Impl& m = *impl_;
  if (!m.started.load() || m.metrics.queue_sum == nullptr) return;
  double sum = 0, max = 0;
  for (auto& q : m.queues) {
    const double d = static_cast<double>(q->SizeApprox());
    sum += d;
    max = std::max(max, d);
  }
  m.metrics.queue_sum->Set(sum);
  m.metrics.queue_max->Set(max);
  m.metrics.cache_bytes->Set(static_cast<double>(RecordCacheBytes()));
  const int64_t now = m.opt.now_ms();
  for (size_t a = 0; a < m.adapters.size(); ++a) {
    AdapterDeliveryMetrics& dm = m.metrics.per_adapter[a];
    dm.lag_events->Set(static_cast<double>(LagEvents(a)));
    int64_t oldest = 0;
    for (auto& w : m.workers) {
      const int64_t o = w->channels[a]->oldest_ms.load(std::memory_order_relaxed);
      if (o != 0 && (oldest == 0 || o < oldest)) oldest = o;
    }
    dm.lag_seconds->Set(oldest == 0 ? 0.0 : std::max<double>(0, (now - oldest) / 1000.0));
    dm.breaker->Set(static_cast<double>(static_cast<int>(m.scheduler->breaker_state(a))));
    dm.dlq->Set(static_cast<double>(dlq_pending(a)));
    dm.bytes_held->Set(static_cast<double>(m.retention->BytesHeld(a)));
  }
}

Status DeliveryEngine::Confirm(std::string_view adapter, const std::string& event_id,
                               const DeliveryResult& result) {
  const size_t a = adapter_index(adapter);
  if (a == SIZE_MAX) return NotFound("no adapter named " + std::string(adapter));
  EventKey key;
  if (!ParseEventId(event_id, &key)) return NotFound("not an event id: " + event_id);
  return impl_->confirmations->Confirm(a, key, result);
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

uint64_t DeliveryEngine::ReplaysPending() const { return impl_->replays->Pending(); }

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
