#include "router/delivery/scheduler.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>

#include "router/delivery/status_record.h"
#include "router/ingress/admin_json.h"

namespace dvrouter::delivery {

Scheduler::Scheduler(const std::vector<EngineAdapter>& adapters,
                     const std::function<int64_t()>& now_ms, StatusTable* status,
                     StatusRecords* records, Confirmations* confirmations, Replays* replays,
                     const DeliveryMetrics& metrics)
    : adapters_(adapters),
      now_ms_(now_ms),
      status_(status),
      records_(records),
      confirmations_(confirmations),
      replays_(replays),
      metrics_(metrics) {
  for (const EngineAdapter& ea : adapters) {
    BreakerOptions bo;
    bo.failure_threshold = static_cast<uint32_t>(ea.config.breaker_failures);
    bo.open_ms = static_cast<int64_t>(ea.config.breaker_open_ms);
    breakers_.push_back(std::make_unique<SharedBreaker>(bo));
  }
}

bool Scheduler::Dispatch(Worker* w, Channel& c, int64_t now, int64_t* wake_at) {
  // Batches out and none answered for a while: stalled for the record cache.
  const bool hung = c.unanswered_since_ms >= 0 &&
                    now - c.unanswered_since_ms > std::max(kCacheHungMs, 4 * c.answer_avg_ms);
  if (hung) MarkStalled(w, c);
  const AdapterConfig& cfg = adapters_[c.adapter].config;
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
      size_t at;  // its index in the window
    };
    std::vector<Pick> picks;
    std::vector<size_t> replay_picks;
    const bool serialize =
        adapters_[c.adapter].adapter->record_ordering() != RecordOrdering::kPipelined;
    const bool share = SharesBatches(c.adapter);
    for (size_t pi = 0; pi < w->parts.size() && picks.size() < max_batch; ++pi) {
      Lane& lane = w->parts[pi].lanes[c.adapter];
      if (lane.waiting.empty()) continue;
      // Only waiting entries need looking at: in-flight records are in lane.in_flight (kept
      // for serializing adapters, the only ones that ask), and earlier waiting entries of a
      // record are met first in this walk (seq order).
      if (!w->blocked.empty()) w->blocked.clear();  // clear() is O(buckets)
      lane.waiting.ForEach([&](uint64_t pos) {
        const size_t at = static_cast<size_t>(pos - lane.popped);
        Entry& e = lane.window[at];
        if (serialize) {
          // The first unfinished event of a record, when none is in flight (an operator replay
          // of the record in flight counts too); `blocked` holds the records already met. When
          // a record's events share a batch, its ready events up to the first one not ready.
          if (lane.in_flight.count(e.record) || c.replays_in_flight.count(e.record)) return true;
          if (share ? w->blocked.count(e.record) != 0 : !w->blocked.insert(e.record).second) {
            return true;
          }
        } else if (w->blocked.count(e.record)) {
          // Hand-over order: nothing of a record passes an earlier event still waiting.
          return true;
        }
        if (e.ready_ms <= now) {
          // A pipelining adapter takes every ready event of a record, in seq order.
          picks.push_back(Pick{pi, &e, at});
          if (picks.size() >= max_batch) return false;
        } else {
          if (!serialize || share) w->blocked.insert(e.record);
          *wake_at = std::min(*wake_at, e.ready_ms);
        }
        return true;
      });
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
    if (!breakers_[c.adapter]->Allow(now, &probe, &retry_at)) {
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
        if (metrics_.batch_records[0]) metrics_.batch_records[0]->Increment();
      } else {
        RecordView view;
        Status st = journal_->Read(e.handle, &b->buffers[k], &b->headers[k], &view);
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
        if (metrics_.batch_records[1]) metrics_.batch_records[1]->Increment();
      }
      d.seq = e.seq;
      d.key = e.key;
      d.attempt = e.attempts + 1;
      d.received_ms = e.received_ms;
      b->deliveries.push_back(d);
      b->refs.push_back(Batch::Ref{p.part, e.seq, -1});
      e.state = EntryState::kInFlight;
      Lane& lane = w->parts[p.part].lanes[c.adapter];
      UnmarkWaiting(lane, p.at);
      if (serialize) ++lane.in_flight[e.record];  // only serializing gathers look at it
      if (e.attempts == 0) {
        e.first_attempt_ms = now;
        records_->Emit(c.adapter, e.key, e.seq, e.handle.partition, *d.header,
                       EventState::kSubmitted, 1, 0, "", "");
      }
      status_->Update(
          e.key, e.seq, c.adapter,
          [&](AdapterStatus& s) { s.Step(EventState::kSubmitted, now, e.attempts + 1, "", ""); },
          nullptr, e.status);
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
        records_->Emit(c.adapter, item.meta.key, item.meta.seq, item.meta.partition, item.header,
                       EventState::kSubmitted, 1, static_cast<uint64_t>(now), "", "");
      }
      status_->Update(item.meta.key, item.meta.seq, c.adapter, [&](AdapterStatus& s) {
        s.Step(EventState::kSubmitted, now, item.attempts + 1, "", "");
        s.steps.back().replay = true;
      });
      b->deliveries.push_back(d);
      b->refs.push_back(Batch::Ref{0, item.meta.seq, static_cast<int>(r)});
    }
    if (b->deliveries.empty()) {
      b->ReleaseHeld();
      w->free_batches.emplace_back(b);
      if (probe) breakers_[c.adapter]->OnFailure(now);
      return progress;
    }
    if (metrics_.per_adapter[c.adapter].batch) {
      metrics_.per_adapter[c.adapter].batch->Observe(static_cast<double>(b->deliveries.size()));
    }
    ++c.in_flight;
    if (c.unanswered_since_ms < 0) c.unanswered_since_ms = now;
    b->dispatched_ms = now;
    w->in_flight_total.fetch_add(1);
    b->started = SteadyClock::now();
    progress = true;
    adapters_[c.adapter].adapter->Deliver(b->deliveries, b);
  }
  return progress;
}

bool Scheduler::WriteDlq(Worker* w, std::vector<DlqEntry>* entries) {
  if (entries->empty()) return true;
  Status st = dlq_->Append(entries);
  if (!st.ok()) {
    std::fprintf(stderr, "dvrouter: delivery worker %d: DLQ write failed, will retry: %s\n",
                 w->index, st.ToString().c_str());
    return false;
  }
  return true;
}

void Scheduler::NoteWrittenBack(size_t a, std::string_view body, int64_t now) {
  Result<StatusRecord> record = DecodeStatusRecord(body);
  EventKey source;
  if (!record.ok() || !ParseEventId(record->event_id, &source)) return;
  for (size_t s = 0; s < adapters_.size(); ++s) {
    if (adapters_[s].config.name != record->adapter) continue;
    status_->UpdateExisting(source, s, [&](AdapterStatus& st) {
      st.written_back = record->state;
      st.written_back_ms = now;
      st.written_back_by = static_cast<int32_t>(a);
    });
    return;
  }
}

void Scheduler::Complete(Worker* w, Batch* b) {
  Channel& c = *w->channels[b->adapter];
  c.dirty = true;
  const size_t a = b->adapter;
  const AdapterDeliveryMetrics& m = metrics_.per_adapter[a];
  const int64_t now = now_ms_();
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
  // Shared batches (RecordOrdering::kOneBatchInFlight): records with an event answered retryable in
  // this batch. A later event of such a record answered retryable too was held back unwritten
  // by the adapter (its contract): it goes back to waiting as it was, without counting an
  // attempt, so it is neither backed off nor given up on for its predecessor's failures.
  const bool share = SharesBatches(a);
  const bool serialize = adapters_[a].adapter->record_ordering() != RecordOrdering::kPipelined;
  std::vector<uint64_t> retried_records;
  WindowCursor cursor;  // a batch's events are in seq order per partition
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
    size_t e_at = 0;  // e's index in its lane's window
    ReplayItem* item = nullptr;
    if (ref.replay >= 0) {
      item = b->replays[static_cast<size_t>(ref.replay)].get();
      auto it = c.replays_in_flight.find(item->record);
      if (it != c.replays_in_flight.end()) c.replays_in_flight.erase(it);
    } else {
      Lane& lane = w->parts[ref.part].lanes[a];
      e_at = cursor.Find(lane, ref.seq);
      if (e_at == lane.window.size() || lane.window[e_at].seq != ref.seq) {
        continue;  // cannot happen
      }
      e = &lane.window[e_at];
      touched.push_back(ref.part);
      if (serialize) {
        auto f = lane.in_flight.find(e->record);
        if (f != lane.in_flight.end() && --f->second == 0) lane.in_flight.erase(f);
      }
    }
    if (share && e != nullptr && result.outcome == DeliveryOutcome::kRetryable) {
      if (std::find(retried_records.begin(), retried_records.end(), e->record) !=
          retried_records.end()) {
        e->state = EntryState::kWaiting;
        e->ready_ms = now;  // goes with its predecessor, which the walk meets first
        MarkWaiting(w->parts[ref.part].lanes[a], e_at);
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
    const StatusTable::Slot slot = e ? e->status : nullptr;
    auto set_status = [&](EventState s, const std::string& err, const std::string& answer) {
      status_->Update(
          key, seq, a, [&](AdapterStatus& st) { st.Step(s, now, attempts, err, answer); }, nullptr,
          slot);
    };
    const EventHeader& header = *b->deliveries[i].header;
    const uint32_t partition = e ? e->handle.partition : item->meta.partition;
    // A replay's status records differ from the original run's (their dedupe keys).
    const uint64_t generation = item ? static_cast<uint64_t>(item->first_attempt_ms) : 0;
    std::string reason;
    if (result.outcome == DeliveryOutcome::kProcessing) {
      if (std::optional<DeliveryResult> confirmed = confirmations_->TakeEarly(a, key)) {
        // Confirmed already (its callback came first): processing, then that outcome at once.
        set_status(EventState::kProcessing, "", result.answer);
        records_->Emit(a, key, seq, partition, header, EventState::kProcessing, attempts,
                       generation, "", result.answer);
        result = std::move(*confirmed);
        confirmations_->CountConfirmed(a, result.outcome != DeliveryOutcome::kDelivered);
        if (result.outcome == DeliveryOutcome::kPermanent) last_error = result.error;
      }
    }
    switch (result.outcome) {
      case DeliveryOutcome::kDelivered:
      case DeliveryOutcome::kProcessing: {
        const bool processing = result.outcome == DeliveryOutcome::kProcessing;
        m.outcome[processing ? 1 : 0] ? m.outcome[processing ? 1 : 0]->Increment() : void();
        // A journaled event (not a replay's) keeps the saved cursor behind it until confirmed:
        // held before its status says processing, so a confirmation that comes at once (a
        // callback racing this answer) finds the hold and releases it.
        if (processing && e) confirmations_->HoldOpen(a, partition, seq);
        // The record first: a confirmation (which needs the status processing) then always
        // comes after it in the status order.
        records_->Emit(a, key, seq, partition, header,
                       processing ? EventState::kProcessing : EventState::kCompleted, attempts,
                       generation, "", result.answer);
        set_status(processing ? EventState::kProcessing : EventState::kCompleted, "",
                   result.answer);
        if (header.status_record && !processing) NoteWrittenBack(a, b->deliveries[i].body, now);
        if (processing) confirmations_->KeepProcessing(a, seq, e ? b->Record(i) : item->frame);
        if (e) e->state = EntryState::kDone;
        if (item) {
          if (item->dlq_id != 0) replayed_ids.push_back(item->dlq_id);
          replays_->Sent();
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
            records_->Emit(a, key, seq, partition, header, EventState::kPending, attempts,
                           generation, result.error, "");
          }
          if (e) {
            e->state = EntryState::kWaiting;
            e->ready_ms = next.at_ms;
            MarkWaiting(w->parts[ref.part].lanes[a], e_at);
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
    d.adapter = adapters_[a].config.name;
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
    records_->Emit(a, key, seq, partition, header, EventState::kFailed, attempts, generation,
                   last_error, "");
  }
  if (!dead.empty()) {
    const bool written = WriteDlq(w, &dead);
    for (const DeadRef& ref : dead_refs) {
      if (ref.replay >= 0) {
        if (written) {
          const uint64_t id = b->replays[static_cast<size_t>(ref.replay)]->dlq_id;
          if (id != 0) replayed_ids.push_back(id);
          replays_->Sent();
        } else {
          auto& owned = b->replays[static_cast<size_t>(ref.replay)];
          owned->ready_ms = now + 1000;
          InsertReplay(c, std::move(owned));
        }
        continue;
      }
      Lane& lane = w->parts[ref.part].lanes[a];
      const size_t at = IndexOf(lane, ref.seq);
      Entry& e = lane.window[at];
      if (written) {
        e.state = EntryState::kDone;
      } else {
        // Never lose it: keep it and try the DLQ again later.
        e.state = EntryState::kWaiting;
        e.ready_ms = now + 1000;
        MarkWaiting(lane, at);
      }
    }
  }
  // A DLQ entry counts as replayed once its event went through, or failed into a new entry; a
  // crash before that leaves it to be replayed again.
  if (!replayed_ids.empty()) replays_->Through(replayed_ids);
  if (any_retry) {
    breakers_[a]->OnFailure(now);
  } else {
    breakers_[a]->OnSuccess();
  }
  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  for (size_t pi : touched) Finish(w->parts[pi].lanes[a]);
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

}  // namespace dvrouter::delivery
