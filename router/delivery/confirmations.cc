#include "router/delivery/confirmations.h"

#include <algorithm>
#include <utility>

namespace dvrouter {

Confirmations::Confirmations(std::vector<std::string> names, const std::function<int64_t()>& now_ms,
                             int64_t retention_ms, const std::atomic<bool>& running,
                             StatusTable* status, StatusRecords* records,
                             prometheus::Family<prometheus::Counter>* confirmed)
    : names_(std::move(names)),
      now_ms_(now_ms),
      retention_ms_(retention_ms),
      running_(running),
      status_(status),
      records_(records),
      confirmed_(confirmed) {
  processing_kept_.resize(names_.size());
  open_.resize(names_.size());
  open_partition_.resize(names_.size());
  for (size_t a = 0; a < names_.size(); ++a) {
    auto s = std::make_unique<Sink>();
    s->owner = this;
    s->adapter = a;
    sinks_.push_back(std::move(s));
  }
}

std::optional<DeliveryResult> Confirmations::TakeEarly(size_t a, const EventKey& key) {
  if (early_count_.load(std::memory_order_acquire) == 0) return std::nullopt;
  std::lock_guard<std::mutex> lock(early_mu_);
  auto it = early_.find(EarlyKey(a, key));
  if (it == early_.end()) return std::nullopt;
  DeliveryResult r = std::move(it->second);
  early_.erase(it);
  early_count_.store(early_.size(), std::memory_order_release);
  return r;
}

void Confirmations::CountConfirmed(size_t a, bool failed) {
  if (confirmed_) {
    confirmed_->Add({{"adapter", names_[a]}, {"outcome", failed ? "failed" : "completed"}})
        .Increment();
  }
}

Status Confirmations::Confirm(size_t a, const EventKey& key, const DeliveryResult& confirmed) {
  if (!running_.load(std::memory_order_acquire)) return Unavailable("delivery is not running");
  DeliveryResult result = confirmed;
  KeepTextsValid(&result);
  std::lock_guard<std::mutex> lock(confirm_mu_);
  std::optional<EventStatus> st = status_->Find(key);
  if (!st) {
    return NotFound("event " + key.ToHex() +
                    " is not in the status table (forgotten after a restart, or older than "
                    "delivery.status_entries)");
  }
  const AdapterStatus& as = st->adapters[a];
  const bool failed = result.outcome != DeliveryOutcome::kDelivered;
  if (as.state == EventState::kCompleted || as.state == EventState::kFailed) {
    ReleaseOpen(a, st->seq);  // (a confirmation that raced the 202 completed it first)
    return Status::Ok();      // confirmed already: a repeated callback changes nothing
  }
  if (as.state == EventState::kPending || as.state == EventState::kSubmitted) {
    // The call is in flight (or waits for a retry): the sink confirmed before its answer to the
    // call came back. Kept until that answer says processing.
    std::lock_guard<std::mutex> early_lock(early_mu_);
    const std::string k = EarlyKey(a, key);
    if (early_.insert_or_assign(k, result).second) early_order_.push_back(k);
    while (early_order_.size() > 10'000) {
      early_.erase(early_order_.front());
      early_order_.pop_front();
    }
    early_count_.store(early_.size(), std::memory_order_release);
    return Status::Ok();
  }
  if (as.state != EventState::kProcessing) {
    return FailedPrecondition("event " + key.ToHex() + " is " +
                              std::string(EventStateName(as.state)) + " at adapter " + names_[a] +
                              ", not processing");
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
    Status read = journal_->Read(st->handle, &buffer, &h, &v);
    if (!read.ok()) return read;
    take(v);
  } else if (!found) {  // a replayed event: scan from its sequence
    Status scan = journal_->Scan(st->seq, [&](const RecordView& v) {
      take(v);
      return false;
    });
    if (!scan.ok()) return scan;
  }
  if (!found) return NotFound("event " + key.ToHex() + " is no longer in the journal");
  const int64_t now = now_ms_();
  if (failed) {
    DlqEntry d;
    d.adapter = names_[a];
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
    if (Status w = dlq_->Append(&dead); !w.ok()) {
      KeepProcessing(a, st->seq, dead.front().record);  // the sink may confirm again
      return w;
    }
  }
  status_->Update(key, st->seq, a, [&](AdapterStatus& s) {
    s.Step(failed ? EventState::kFailed : EventState::kCompleted, now, 0, result.error,
           result.answer);
  });
  // Its own identity (generation: the confirmation's time): a replayed job's confirmation must
  // not be taken for the original run's record and dropped as a duplicate.
  records_->Emit(a, key, st->seq, partition, header,
                 failed ? EventState::kFailed : EventState::kCompleted, as.attempts,
                 static_cast<uint64_t>(now), result.error, result.answer);
  ReleaseOpen(a, st->seq);
  CountConfirmed(a, failed);
  return Status::Ok();
}

void Confirmations::HoldOpen(size_t a, uint32_t partition, uint64_t seq) {
  std::lock_guard<std::mutex> lock(open_mu_);
  open_[a][{partition, seq}] = now_ms_();
  open_partition_[a][seq] = partition;
  while (open_[a].size() > kMaxOpen) {  // the oldest event of any partition waits no longer
    auto oldest = open_[a].begin();
    for (auto it = oldest; it != open_[a].end();
         it = open_[a].lower_bound({it->first.first + 1, 0})) {
      if (it->first.second < oldest->first.second) oldest = it;
    }
    open_partition_[a].erase(oldest->first.second);
    open_[a].erase(oldest);
  }
}

void Confirmations::ReleaseOpen(size_t a, uint64_t seq) {
  std::lock_guard<std::mutex> lock(open_mu_);
  auto it = open_partition_[a].find(seq);
  if (it == open_partition_[a].end()) return;
  open_[a].erase({it->second, seq});
  open_partition_[a].erase(it);
}

std::vector<uint64_t> Confirmations::OldestOpen(size_t a, uint32_t partitions) {
  std::vector<uint64_t> oldest(partitions, UINT64_MAX);
  // A hold keeps every later event of its partition to be delivered again after a restart, so
  // it lasts at most kMaxHoldMs (an ERP job's default poll timeout): a job still open then is
  // followed only by its callback, or fails by its poll timeout.
  const int64_t expired = now_ms_() - std::min<int64_t>(retention_ms_, kMaxHoldMs);
  std::lock_guard<std::mutex> lock(open_mu_);
  auto& open = open_[a];
  for (uint32_t p = 0; p < partitions; ++p) {
    auto it = open.lower_bound({p, 0});
    // Past the bound such an event holds the cursor no longer.
    while (it != open.end() && it->first.first == p && it->second < expired) {
      open_partition_[a].erase(it->first.second);
      it = open.erase(it);
    }
    if (it != open.end() && it->first.first == p) oldest[p] = it->first.second;
  }
  return oldest;
}

// An event an adapter answered processing (202) is finished for ordering, cursors and the
// journal, which may delete it under pressure; its confirmation needs the record again (the DLQ
// frame, the status header). A compressed copy is kept for that, within kProcessingBytes and
// delivery.retention, oldest dropped first (its confirmation then reads the journal, which may
// no longer have it). Worker threads keep; admin and poll threads take.
void Confirmations::KeepProcessing(size_t a, uint64_t seq, std::string_view record) {
  // A frame from the journal's read tail comes with its checksum blank (Journal::Read).
  std::string frame(record);
  journal::WriteFrameChecksum(&frame);
  KeptRecord k;
  journal::CompressBody(frame, 1, nullptr, &k.frame);
  k.raw_length = static_cast<uint32_t>(frame.size());
  if (k.frame.codec == Codec::kNone) k.frame.bytes = std::move(frame);
  k.since_ms = now_ms_();
  const int64_t expired = k.since_ms - retention_ms_;
  std::lock_guard<std::mutex> lock(processing_mu_);
  auto& kept = processing_kept_[a];
  auto [it, fresh] = kept.try_emplace(seq);
  if (!fresh) kept_bytes_ -= it->second.frame.bytes.size();
  kept_bytes_ += k.frame.bytes.size();
  it->second = std::move(k);
  // Oldest first, across adapters: past the bound or the retention.
  for (;;) {
    size_t oldest = SIZE_MAX;
    for (size_t x = 0; x < processing_kept_.size(); ++x) {
      if (processing_kept_[x].empty()) continue;
      if (oldest == SIZE_MAX ||
          processing_kept_[x].begin()->first < processing_kept_[oldest].begin()->first) {
        oldest = x;
      }
    }
    if (oldest == SIZE_MAX) break;
    auto first = processing_kept_[oldest].begin();
    if (kept_bytes_ <= kProcessingBytes && first->second.since_ms >= expired) break;
    kept_bytes_ -= first->second.frame.bytes.size();
    processing_kept_[oldest].erase(first);
  }
}

// The plain frame kept for (a, seq), or nullopt; forgotten either way.
std::optional<std::string> Confirmations::TakeProcessing(size_t a, uint64_t seq) {
  KeptRecord k;
  {
    std::lock_guard<std::mutex> lock(processing_mu_);
    auto it = processing_kept_[a].find(seq);
    if (it == processing_kept_[a].end()) return std::nullopt;
    kept_bytes_ -= it->second.frame.bytes.size();
    k = std::move(it->second);
    processing_kept_[a].erase(it);
  }
  if (k.frame.codec == Codec::kNone) return std::move(k.frame.bytes);
  journal::FrameMeta meta;
  meta.codec = Codec::kZstd;
  meta.raw_length = k.raw_length;
  std::string frame;
  if (!journal::RawBody(meta, k.frame.bytes, &frame).ok()) return std::nullopt;
  return frame;
}

}  // namespace dvrouter
