#include "router/delivery/replays.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <utility>

#include "router/common/json.h"
#include "router/decode/attributes.h"
#include "router/partition/partition.h"

namespace dvrouter {

Replays::Replays(std::vector<std::string> names, const std::function<int64_t()>& now_ms,
                 const std::atomic<bool>& running, const std::atomic<uint64_t>& committed,
                 const RouteTable* routes, StatusRecords* records, Retention* retention,
                 size_t max_body_bytes)
    : names_(std::move(names)),
      now_ms_(now_ms),
      running_(running),
      committed_(committed),
      routes_(routes),
      records_(records),
      retention_(retention),
      extractor_(std::make_unique<AttributeExtractor>(max_body_bytes)) {}

void Replays::Attach(Journal* journal, DeadLetterQueue* dlq, Post post) {
  journal_ = journal;
  dlq_ = dlq;
  post_ = std::move(post);
}

size_t Replays::IndexOf(std::string_view name) const {
  for (size_t a = 0; a < names_.size(); ++a) {
    if (names_[a] == name) return a;
  }
  return SIZE_MAX;
}

Result<uint64_t> Replays::QueueDlq(const std::string& adapter, std::optional<uint64_t> id) {
  if (!dlq_ || !running_.load()) return Unavailable("delivery is not running");
  if (!adapter.empty() && IndexOf(adapter) == SIZE_MAX) {
    return NotFound("no adapter named '" + adapter + "'");
  }
  std::map<size_t, Job> by_adapter;
  uint64_t count = 0;
  for (const DlqEntry& e : dlq_->List(adapter, id, /*include_replayed=*/id.has_value())) {
    const size_t a = IndexOf(e.adapter);
    if (a == SIZE_MAX) continue;  // an adapter no longer configured
    by_adapter[a].adapter = a;
    by_adapter[a].dlq_ids.push_back(e.id);
    ++count;
  }
  if (id && count == 0) return NotFound("no DLQ entry " + std::to_string(*id) + " to replay");
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [a, job] : by_adapter) jobs_.push_back(std::move(job));
  }
  return count;
}

Result<uint64_t> Replays::QueueRange(const std::string& adapter, uint64_t from_seq, uint64_t to_seq,
                                     int64_t from_ms, int64_t to_ms) {
  if (!running_.load()) return Unavailable("delivery is not running");
  const size_t a = IndexOf(adapter);
  if (a == SIZE_MAX) return NotFound("no adapter named '" + adapter + "'");
  if (from_ms > to_ms) return InvalidArgument("the time window must satisfy from <= to");
  // from_seq 0: from the oldest retained event (a time window's start), found under the hold.
  if (from_seq != 0 && to_seq < from_seq) {
    return InvalidArgument("the range must satisfy 1 <= from <= to");
  }
  const uint64_t newest = committed_.load();
  if (from_seq > newest) {
    return InvalidArgument("from " + std::to_string(from_seq) + " is past the newest event " +
                           std::to_string(newest));
  }
  // Events committed later are delivered anyway: a range ends at the newest one, so it cannot
  // hold the journal open-endedly.
  to_seq = std::min(to_seq, newest);
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Each queued range holds the journal from where it reads: one per adapter at a time.
    for (const Job& j : jobs_) {
      if (j.range && j.adapter == a) {
        return FailedPrecondition("a range replay to " + adapter + " is queued already (seq " +
                                  std::to_string(j.from) + "-" + std::to_string(j.to) + ", next " +
                                  std::to_string(j.pos) + "): wait for it to finish (GET /replay)");
      }
    }
    // The floor goes down before the check: from here on nothing at or past from_seq is deleted
    // (the journal reads the floor under the lock its Scan snapshots under).
    retention_->HoldFrom(a, std::max<uint64_t>(from_seq, 1));
    // Retention deletes whole segments from the front: is the start still there?
    uint64_t oldest = 0;
    Status st = journal_->Scan(0, [&](const RecordView& v) {
      oldest = v.handle.seq;
      return false;
    });
    if (!st.ok()) return st;
    if (from_seq == 0 && oldest != 0) {
      from_seq = oldest;
      retention_->HoldFrom(a, from_seq);
      if (to_seq < from_seq) return InvalidArgument("the range must satisfy 1 <= from <= to");
    }
    if (oldest == 0 || oldest > from_seq) {
      return NotFound("events before " + std::to_string(oldest) +
                      " are no longer retained (delivery.retention and journal.disk_budget_bytes)");
    }
    Job job;
    job.adapter = a;
    job.range = true;
    job.from = from_seq;
    job.pos = from_seq;
    job.to = to_seq;
    job.from_ms = from_ms;
    job.to_ms = to_ms;
    jobs_.push_back(std::move(job));
  }
  return to_seq;
}

std::string Replays::Json() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out = "{\"replays\":[";
  for (size_t i = 0; i < jobs_.size(); ++i) {
    const Job& j = jobs_[i];
    if (i > 0) out += ',';
    out += "{\"adapter\":";
    AppendJsonString(&out, names_[j.adapter]);
    if (j.range) {
      out += ",\"kind\":\"range\",\"from\":" + std::to_string(j.from) +
             ",\"to\":" + std::to_string(j.to) + ",\"next\":" + std::to_string(j.pos);
      if (j.from_ms > 0) {
        out += ",\"from_time\":";
        AppendJsonString(&out, FormatIsoUtc(j.from_ms));
      }
      if (j.to_ms != INT64_MAX) {
        out += ",\"to_time\":";
        AppendJsonString(&out, FormatIsoUtc(j.to_ms));
      }
    } else {
      out += ",\"kind\":\"dlq\",\"entries\":" + std::to_string(j.dlq_ids.size()) +
             ",\"sent\":" + std::to_string(j.next);
    }
    out += i == 0 ? ",\"state\":\"running\"}" : ",\"state\":\"queued\"}";
  }
  out += "],\"in_flight\":" + std::to_string(outstanding_.load()) + "}";
  return out;
}

uint64_t Replays::Pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return outstanding_.load() + jobs_.size();
}

// Range replays hold the journal from where they read on (Retention::UpdateHeldFloor).
void Replays::LowerFloors(std::vector<uint64_t>* floors, const std::function<void()>& publish) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Job& j : jobs_) {
    if (j.range) (*floors)[j.adapter] = std::min((*floors)[j.adapter], j.pos);
  }
  publish();
}

// A DLQ entry counts as replayed once its event went through, or failed into a new entry; a
// crash before that leaves it to be replayed again.
void Replays::Through(const std::vector<uint64_t>& dlq_ids) {
  if (Status st = dlq_->MarkReplayed(dlq_ids); !st.ok()) {
    std::fprintf(stderr, "dvrouter: marking DLQ entries replayed failed: %s\n",
                 st.ToString().c_str());
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (uint64_t id : dlq_ids) dlq_in_replay_.erase(id);
}

void Replays::Abandon(std::span<std::deque<std::unique_ptr<ReplayItem>>* const> lists) {
  std::lock_guard<std::mutex> lock(mu_);
  for (std::deque<std::unique_ptr<ReplayItem>>* items : lists) {
    for (auto& item : *items) dlq_in_replay_.erase(item->dlq_id);
    outstanding_.fetch_sub(items->size());
    items->clear();
  }
}

void Replays::Feed() {
  constexpr uint64_t kMaxOutstanding = 4096;
  std::unique_lock<std::mutex> lock(mu_);
  while (!jobs_.empty() && outstanding_.load() < kMaxOutstanding) {
    Job& job = jobs_.front();
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
      item->ready_ms = now_ms_();
      item->record = RecordHash(item->header.primary_entity_name, item->header.primary_entity_id);
      outstanding_.fetch_add(1);
      post_(std::move(item));
      return true;
    };
    if (!job.range) {
      while (job.next < job.dlq_ids.size() && outstanding_.load() < kMaxOutstanding) {
        const uint64_t id = job.dlq_ids[job.next++];
        if (!dlq_in_replay_.insert(id).second) continue;  // already on its way
        auto entry = dlq_->Get(id);
        if (!entry.ok() || !send(std::move(entry->record), id)) {
          dlq_in_replay_.erase(id);
          std::fprintf(
              stderr, "dvrouter: DLQ entry %llu cannot be replayed: %s\n",
              static_cast<unsigned long long>(id),
              entry.ok() ? "its record does not decode" : entry.status().ToString().c_str());
          continue;
        }
      }
      if (job.next >= job.dlq_ids.size()) jobs_.pop_front();
      continue;
    }
    // A journal range: read a bounded piece. Records outside a time window count too, so a
    // window far into the journal is scanned a piece per call, never under the lock at once.
    constexpr uint64_t kMaxScanned = 20'000;
    uint64_t scanned = 0;
    bool finished = true;
    std::string frame;
    Status st = journal_->Scan(
        job.pos,
        [&](const RecordView& v) {
          if (v.handle.seq > job.to) return false;
          if (++scanned > kMaxScanned) {
            finished = false;
            return false;
          }
          // A time window: past its end by a minute, no later event can fall in it.
          constexpr int64_t kSkewMs = 60'000;
          if (job.to_ms != INT64_MAX && v.received_ms - kSkewMs > job.to_ms) return false;
          if (outstanding_.load() >= kMaxOutstanding) {
            finished = false;
            return false;
          }
          job.pos = v.handle.seq + 1;
          job.hint = ScanHint{v.handle.segment, v.handle.offset + v.handle.length};
          if (v.received_ms < job.from_ms || v.received_ms > job.to_ms) return true;
          // Only what the routes (and the loop guard) send to this adapter.
          uint64_t mask = 0;
          if (v.header->status_record) {
            mask = records_->MaskFor(v.body);  // status records: to write-back adapters only
          } else {
            routes_->Match(*v.header, v.body, extractor_.get(), &mask);
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
                   names_[job.adapter].c_str(), static_cast<unsigned long long>(job.pos),
                   st.ToString().c_str());
    }
    if (finished || !st.ok()) jobs_.pop_front();
    if (!finished) break;
  }
}

}  // namespace dvrouter
