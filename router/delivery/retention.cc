#include "router/delivery/retention.h"

#include <algorithm>
#include <cstdio>
#include <utility>

namespace dvrouter {

namespace {

// *v = min(*v, x), atomically.
void LowerTo(std::atomic<uint64_t>* v, uint64_t x) {
  uint64_t cur = v->load(std::memory_order_relaxed);
  while (x < cur && !v->compare_exchange_weak(cur, x, std::memory_order_acq_rel)) {
  }
}

}  // namespace

Retention::Retention(std::vector<std::string> names, uint32_t partitions,
                     const std::function<int64_t()>& now_ms, int64_t retention_ms,
                     const std::atomic<bool>& running, const std::atomic<uint64_t>& committed,
                     StatusRecords* records, prometheus::Counter* flush_errors,
                     prometheus::Counter* deleted_bytes)
    : names_(std::move(names)),
      partitions_(partitions),
      now_ms_(now_ms),
      retention_ms_(retention_ms),
      running_(running),
      committed_(committed),
      records_(records),
      flush_errors_(flush_errors),
      deleted_bytes_(deleted_bytes) {
  cursors_.reset(new std::atomic<uint64_t>[names_.size() * partitions_]);
  for (size_t i = 0; i < names_.size() * partitions_; ++i) cursors_[i] = 0;
  adapter_holds_.reset(new std::atomic<uint64_t>[names_.size()]);
  for (size_t a = 0; a < names_.size(); ++a) adapter_holds_[a] = UINT64_MAX;
}

Result<std::map<std::string, std::vector<uint64_t>>> Retention::Open(
    std::shared_ptr<CursorStore> store) {
  store_ = std::move(store);
  return store_->Load(partitions_);
}

void Retention::Resume(Journal* journal, const std::map<std::string, std::vector<uint64_t>>& loaded,
                       uint64_t last) {
  journal_ = journal;
  // An adapter new to this journal starts at its end: earlier events are history (replay
  // delivers them on request), not a backlog to flood a new sink with.
  bool new_adapter = false;
  for (size_t a = 0; a < names_.size(); ++a) {
    auto it = loaded.find(names_[a]);
    for (uint32_t p = 0; p < partitions_; ++p) {
      uint64_t c = it == loaded.end() ? last : it->second[p];
      if (c > last) c = last;  // a cursor past the journal (journal replaced): start at its end
      Ref(a, p).store(c);
    }
    new_adapter |= it == loaded.end();
  }
  for (const std::string& name : names_) {
    auto it = loaded.find(name);
    if (it != loaded.end()) saved_[name] = floors_saved_[name] = it->second;
  }
  if (new_adapter) Flush();
  UpdateHeldFloor();
}

void Retention::HoldFrom(size_t a, uint64_t seq) {
  LowerTo(&held_floor_, seq);
  LowerTo(&adapter_holds_[a], seq);
}

void Retention::Flush() {
  std::map<std::string, std::vector<uint64_t>> snapshot, floors;
  for (size_t a = 0; a < names_.size(); ++a) {
    auto& v = snapshot[names_[a]];
    v.resize(partitions_);
    for (uint32_t p = 0; p < partitions_; ++p) v[p] = Ref(a, p).load();
    floors[names_[a]] = v;
    // Events answered processing (202) and not yet confirmed: the saved cursor stays behind
    // them, so that after a restart they are delivered again and their jobs followed anew (the
    // poll list and the status table live in memory). Read after the cursors: an event they
    // passed was held before its cursor moved.
    if (open_jobs_) {
      const std::vector<uint64_t> open = open_jobs_(a);
      for (uint32_t p = 0; p < partitions_ && p < open.size(); ++p) {
        if (open[p] != UINT64_MAX && open[p] > 0 && open[p] <= v[p]) v[p] = open[p] - 1;
      }
    }
    if (records_->writeback_mask(a) == 0) continue;
    // An event's status records are journaled before its cursor moves past it: persist this
    // adapter's cursors only once they are durable, else keep the last saved ones (the events
    // are delivered again after a crash, and their statuses recorded again).
    const uint64_t issued = records_->Issued(a);
    if (!records_->Settled(a, issued, 2000)) {
      auto old = saved_.find(names_[a]);
      if (old != saved_.end()) {
        v = old->second;
        floors[names_[a]] = floors_saved_[names_[a]];
      } else {
        snapshot.erase(names_[a]);
        floors.erase(names_[a]);
      }
    }
  }
  if (Status st = store_->Save(snapshot); st.ok()) {
    for (auto& [name, v] : snapshot) saved_[name] = v;
    for (auto& [name, v] : floors) floors_saved_[name] = v;
  } else {
    if (flush_errors_) flush_errors_->Increment();
    std::fprintf(stderr, "dvrouter: persisting delivery cursors failed: %s\n",
                 st.ToString().c_str());
  }
}

uint64_t Retention::MinCursor(size_t a) const {
  uint64_t c = UINT64_MAX;
  for (uint32_t p = 0; p < partitions_; ++p) {
    c = std::min(c, cursors_[a * partitions_ + p].load(std::memory_order_acquire));
  }
  return c;
}

// Records below the returned sequence are finished by every adapter, and no restart or replay
// reads them again (docs/architecture.md, "Journal budget and retention"). Called by the journal's
// writer when an append needs room, and by the maintenance thread: atomic loads only.
uint64_t Retention::ReclaimableBelow() const {
  if (!running_.load(std::memory_order_acquire)) return 0;
  uint64_t below = std::min(committed_.load(std::memory_order_acquire) + 1,
                            held_floor_.load(std::memory_order_acquire));
  for (size_t a = 0; a < names_.size(); ++a) below = std::min(below, MinCursor(a) + 1);
  return below;
}

// A write-back source's saved cursor is held back until its status records are durable: a
// restart resumes there and reads its events again, so they stay. Other adapters' events behind
// their live cursors are finished; a restart that finds them deleted starts at the oldest
// retained record. A range replay keeps what it has yet to read.
void Retention::UpdateHeldFloor() {
  std::vector<uint64_t> floors(names_.size(), UINT64_MAX);
  for (size_t a = 0; a < names_.size(); ++a) {
    if (records_->writeback_mask(a) == 0) continue;
    auto it = floors_saved_.find(names_[a]);
    if (it == floors_saved_.end()) continue;
    for (uint64_t c : it->second) floors[a] = std::min(floors[a], c + 1);
  }
  // Published under the holds' lock: a replay added meanwhile lowers the floor itself, and must
  // not be overwritten by this older view.
  holds_->LowerFloors(&floors, [&] {
    uint64_t floor = UINT64_MAX;
    for (size_t a = 0; a < names_.size(); ++a) {
      adapter_holds_[a].store(floors[a], std::memory_order_relaxed);
      floor = std::min(floor, floors[a]);
    }
    held_floor_.store(floor, std::memory_order_release);
  });
}

// The oldest sequence adapter `a` still needs: its live cursor, and what UpdateHeldFloor found.
uint64_t Retention::AdapterFloor(size_t a) const {
  return std::min(MinCursor(a) + 1, adapter_holds_[a].load(std::memory_order_relaxed));
}

uint64_t Retention::BytesHeld(size_t a) const {
  const uint64_t floor = AdapterFloor(a);
  return floor > committed_.load(std::memory_order_acquire) ? 0 : journal_->BytesFrom(floor);
}

void Retention::Run() {
  auto r = journal_->DeleteBefore(ReclaimableBelow(), retention_ms_);
  if (!r.ok()) {
    std::fprintf(stderr, "dvrouter: journal retention failed: %s\n", r.status().ToString().c_str());
  } else if (r->bytes_deleted > 0 && deleted_bytes_) {
    deleted_bytes_->Increment(static_cast<double>(r->bytes_deleted));
  }
  LogBudgetHolders();
}

// When the journal refuses appends because undelivered events fill its budget, says which
// adapters hold how much (at most every 10 s).
void Retention::LogBudgetHolders() {
  const JournalStats js = journal_->Stats();
  if (js.budget_refusals == logged_refusals_) return;
  const int64_t now = now_ms_();
  if (now - last_budget_log_ms_ < 10'000) return;
  last_budget_log_ms_ = now;
  std::string holders;
  const uint64_t last = committed_.load(std::memory_order_acquire);
  for (size_t a = 0; a < names_.size(); ++a) {
    const uint64_t floor = AdapterFloor(a);
    if (floor > last) continue;
    holders += " " + names_[a] + " holds " + std::to_string(BytesHeld(a)) + " bytes from seq " +
               std::to_string(floor) + ";";
  }
  std::fprintf(stderr,
               "dvrouter: journal disk budget (%llu bytes) is full of undelivered events: %llu "
               "appends refused (503) since the last report;%s\n",
               static_cast<unsigned long long>(js.budget_bytes),
               static_cast<unsigned long long>(js.budget_refusals - logged_refusals_),
               holders.c_str());
  logged_refusals_ = js.budget_refusals;
}

}  // namespace dvrouter
