#include "router/delivery/status_records.h"

#include <algorithm>
#include <chrono>

#include "router/decode/attributes.h"
#include "router/delivery/status_record.h"

namespace dvrouter {

StatusRecords::StatusRecords(const std::vector<AdapterConfig>& adapters,
                             const std::function<int64_t()>& now_ms, prometheus::Counter* appended,
                             prometheus::Counter* append_errors)
    : now_ms_(now_ms), appended_(appended), append_errors_(append_errors) {
  for (const AdapterConfig& ac : adapters) names_.push_back(ac.name);
  feeds_.reset(new Feed[adapters.size()]);
  for (size_t w = 0; w < adapters.size(); ++w) {
    const std::string_view source = adapters[w].status_source();
    if (source.empty()) continue;
    for (size_t a = 0; a < adapters.size(); ++a) {
      if (adapters[a].name == source) feeds_[a].writeback_mask |= 1ull << w;
    }
  }
}

void StatusRecords::DropRetries() {
  std::lock_guard<std::mutex> lock(mu_);
  for (Append* s : retry_) delete s;  // recorded again after the restart
  retry_.clear();
}

uint64_t StatusRecords::MaskFor(std::string_view body) const {
  Result<StatusRecord> r = DecodeStatusRecord(body);
  if (!r.ok()) return 0;  // not written by Emit: nobody takes it
  for (size_t a = 0; a < names_.size(); ++a) {
    if (names_[a] == r->adapter) return feeds_[a].writeback_mask;
  }
  return 0;  // its source adapter is no longer configured
}

void StatusRecords::Emit(size_t a, const EventKey& key, uint64_t seq, uint32_t partition,
                         const EventHeader& h, EventState state, uint32_t attempts,
                         uint64_t generation, const std::string& error, const std::string& answer) {
  if (feeds_[a].writeback_mask == 0 || h.status_record) return;
  const int64_t now = now_ms_();
  auto s = std::make_unique<Append>();
  s->owner = this;
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
  sh.operation_created_on_ms = now;
  StatusRecord rec;
  rec.event_id = key.ToHex();
  rec.seq = seq;
  rec.adapter = names_[a];
  rec.state = std::string(EventStateName(state));
  rec.attempts = attempts;
  rec.table = h.primary_entity_name;
  rec.row_id = h.primary_entity_id;
  rec.error = error;
  rec.answer = answer;
  // Identity: one record per event, adapter, state, attempt count and replay, so a redelivery
  // after a crash is a duplicate the journal drops.
  sh.operation_id = rec.event_id + "/" + rec.adapter + "/" + rec.state + "/" +
                    std::to_string(attempts) + "/" + std::to_string(generation);
  // A hybrid clock: increasing across events, attempts, replays and restarts, so the write-back
  // can drop a status older than the one a row already shows (a retried append lands late).
  uint64_t order = clock_.load();
  uint64_t next;
  do {
    next = std::max(order + 1, static_cast<uint64_t>(now) * 1000);
  } while (!clock_.compare_exchange_weak(order, next));
  rec.order = next;
  rec.at = FormatIsoUtc(now);
  s->body = EncodeStatusRecord(rec);
  const std::string& b = s->body;
  AppendRequest& r = s->request;
  r.key = sh.DedupeKey();
  r.partition = partition;
  r.received_ms = now;
  r.header = &sh;
  r.body = b;
  r.callback = s.get();
  feeds_[a].issued.fetch_add(1, std::memory_order_seq_cst);
  journal_->Append(&s.release()->request);
}

void StatusRecords::Appended(Append* s, const AppendResult& result) {
  if (result.status.ok()) {
    if (appended_ && !result.duplicate) appended_->Increment();
    {
      std::lock_guard<std::mutex> lock(mu_);
      feeds_[s->source].settled.fetch_add(1, std::memory_order_seq_cst);
    }
    cv_.notify_all();
    delete s;
    return;
  }
  if (append_errors_) append_errors_->Increment();
  {
    std::lock_guard<std::mutex> lock(mu_);
    retry_.push_back(s);  // the maintenance thread appends it again
  }
  cv_.notify_all();
}

void StatusRecords::RetryAppends() {
  std::vector<Append*> again;
  {
    std::lock_guard<std::mutex> lock(mu_);
    again.swap(retry_);
  }
  // A failure calls back (possibly on this thread) into retry_ again: no lock held here.
  for (Append* s : again) journal_->Append(&s->request);
}

bool StatusRecords::Settled(size_t a, uint64_t issued, int64_t wait_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  auto failed = [&] {  // a failed append waits for the next retry: no point waiting now
    return std::any_of(retry_.begin(), retry_.end(),
                       [&](const Append* s) { return s->source == a; });
  };
  cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] {
    return feeds_[a].settled.load(std::memory_order_seq_cst) >= issued || failed();
  });
  // Counts alone could match while an older record waits for its retry and a newer one is in.
  return feeds_[a].settled.load(std::memory_order_seq_cst) >= issued && !failed();
}

}  // namespace dvrouter
