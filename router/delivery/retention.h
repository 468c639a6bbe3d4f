// Cursors and retention: the live delivery cursor of every adapter and partition (every event up
// to it is finished), their persistence (cursor_store.h), and what the journal may delete: records
// every adapter finished, short of what a restart or a replay reads again (the saved cursors of
// write-back sources, whose status records are not all durable yet, and the start of range
// replays).
//
// Threads: workers publish cursors (Ref); Flush, UpdateHeldFloor and Run on the maintenance
// thread (and the owner's thread in Start and Stop); ReclaimableBelow on the journal's writer and
// the maintenance thread; HoldFrom, AdapterFloor, BytesHeld and Ref's loads from any thread.
#pragma once

#include <prometheus/counter.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "router/common/status.h"
#include "router/delivery/cursor_store.h"
#include "router/delivery/status_records.h"
#include "router/journal/journal.h"

namespace dvrouter {

// Something else that keeps journal records for an adapter (range replays). LowerFloors lowers
// floors[a] to the oldest sequence adapter a still reads and calls `publish` under the lock its
// holds are added under (they call Retention::HoldFrom there), so that an older view never
// overwrites a newer hold.
class JournalHolds {
 public:
  virtual ~JournalHolds() = default;
  virtual void LowerFloors(std::vector<uint64_t>* floors, const std::function<void()>& publish) = 0;
};

class Retention {
 public:
  // `names`: the adapters', by index. `now_ms`, `running`, `committed` (the newest committed
  // sequence) and `records` must outlive this object; the counters may be null.
  Retention(std::vector<std::string> names, uint32_t partitions,
            const std::function<int64_t()>& now_ms, int64_t retention_ms,
            const std::atomic<bool>& running, const std::atomic<uint64_t>& committed,
            StatusRecords* records, prometheus::Counter* flush_errors,
            prometheus::Counter* deleted_bytes);
  Retention(const Retention&) = delete;
  Retention& operator=(const Retention&) = delete;
  // What else holds the journal (range replays); set once before Start, must outlive this.
  void set_holds(JournalHolds* holds) { holds_ = holds; }
  // The oldest event of each partition that adapter `a` answered processing for and that waits
  // for its confirmation (UINT64_MAX: none): the saved cursor stays behind it, so a restart
  // delivers it again. Set once before Start; called by Flush after reading the live cursors.
  void set_open_jobs(std::function<std::vector<uint64_t>(size_t a)> open) {
    open_jobs_ = std::move(open);
  }

  // Start: takes the cursor store and returns the saved cursors (by adapter name).
  Result<std::map<std::string, std::vector<uint64_t>>> Open(std::shared_ptr<CursorStore> store);
  // Start: sets the live cursors from `loaded` (an adapter new to this journal, or a cursor past
  // `last`, starts at `last`), persists them when an adapter is new, and computes the floor.
  void Resume(Journal* journal, const std::map<std::string, std::vector<uint64_t>>& loaded,
              uint64_t last);

  // The live cursor of adapter `a` in `partition` (published by the worker that owns it).
  std::atomic<uint64_t>& Ref(size_t a, uint32_t partition) {
    return cursors_[a * partitions_ + partition];
  }
  const std::atomic<uint64_t>& Ref(size_t a, uint32_t partition) const {
    return cursors_[a * partitions_ + partition];
  }

  // Persists the live cursors; a write-back source's only once its status records are durable.
  void Flush();
  // Recomputes what the journal must keep besides the live cursors.
  void UpdateHeldFloor();
  // A range replay of adapter `a` reads from `seq` on: nothing from there is deleted. Called
  // under the lock of JournalHolds::LowerFloors.
  void HoldFrom(size_t a, uint64_t seq);
  // Deletes what every adapter finished (and delivery.retention allows); logs who holds a full
  // journal budget.
  void Run();

  // Records below this are finished by every adapter and read by no restart or replay.
  uint64_t ReclaimableBelow() const;
  // The oldest sequence adapter `a` still needs, and the journal bytes from there.
  uint64_t AdapterFloor(size_t a) const;
  uint64_t BytesHeld(size_t a) const;

 private:
  uint64_t MinCursor(size_t a) const;
  void LogBudgetHolders();

  const std::vector<std::string> names_;
  const uint32_t partitions_;
  const std::function<int64_t()>& now_ms_;
  const int64_t retention_ms_;
  const std::atomic<bool>& running_;
  const std::atomic<uint64_t>& committed_;
  StatusRecords* const records_;
  JournalHolds* holds_ = nullptr;
  prometheus::Counter* const flush_errors_;
  prometheus::Counter* const deleted_bytes_;
  Journal* journal_ = nullptr;
  std::unique_ptr<std::atomic<uint64_t>[]> cursors_;  // by adapter, then partition
  std::shared_ptr<CursorStore> store_;
  std::function<std::vector<uint64_t>(size_t)> open_jobs_;
  // The cursors last saved (kept for an adapter whose status records are not all durable yet).
  std::map<std::string, std::vector<uint64_t>> saved_;
  // The same without what open jobs held back: what a write-back source's floor keeps (an open
  // job does not hold the journal; under budget pressure its record may go, docs/architecture.md).
  std::map<std::string, std::vector<uint64_t>> floors_saved_;
  // What the journal must keep besides the live cursors: the saved cursors of write-back
  // sources and the start of range replays (maintenance thread and HoldFrom, under the lock of
  // JournalHolds::LowerFloors).
  std::atomic<uint64_t> held_floor_{0};
  std::unique_ptr<std::atomic<uint64_t>[]> adapter_holds_;  // each adapter's part of held_floor_
  uint64_t logged_refusals_ = 0;                            // maintenance thread
  int64_t last_budget_log_ms_ = 0;
};

}  // namespace dvrouter
