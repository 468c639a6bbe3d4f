// Status records: for an adapter that write-back adapters report (AdapterSettings::status_source),
// each status change of its events that a CRM row shows (submitted, pending after a first
// failure, processing, completed, failed) is journaled as a record of its own
// (EventHeader::status_record; its body: status_record.h), routed only to that source's
// write-back adapters. Owns their emission, the appends in flight, failed appends to try again, and
// per source the count of records issued and settled (the source's cursors are persisted only once
// they are durable).
//
// Threads: Emit from delivery workers and confirmation threads; the append callback on the
// journal's writer thread; RetryAppends and Settled on the maintenance thread; MaskFor and the
// accessors from any thread (immutable after construction).
#pragma once

#include <prometheus/counter.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "router/config/config.h"
#include "router/delivery/status_table.h"
#include "router/journal/journal.h"

namespace dvrouter {

class StatusRecords {
 public:
  // `adapters`: every configured adapter, by index. `now_ms` must outlive this object.
  StatusRecords(const std::vector<AdapterConfig>& adapters, const std::function<int64_t()>& now_ms,
                prometheus::Counter* appended, prometheus::Counter* append_errors);
  ~StatusRecords() = default;
  StatusRecords(const StatusRecords&) = delete;
  StatusRecords& operator=(const StatusRecords&) = delete;

  // The journal the records go to: set once by Start, before any Emit.
  void Attach(Journal* journal) { journal_ = journal; }

  // The write-back adapters reporting adapter `a` (a bit per adapter index; 0: none).
  uint64_t writeback_mask(size_t a) const { return feeds_[a].writeback_mask; }
  // Where a status record (its body: status_record.h) goes: the write-back adapters of its source
  // adapter; 0 when that adapter is no longer configured or the body is not a status record.
  uint64_t MaskFor(std::string_view body) const;
  // Status records of adapter `a` handed to the journal so far.
  uint64_t Issued(size_t a) const { return feeds_[a].issued.load(std::memory_order_seq_cst); }

  // Journals the status `state` of event (key, seq) at adapter `a` when write-back adapters
  // report `a` (nothing otherwise, nor for a status record itself). `generation` tells a
  // replay's records from the original run's (0: the original run).
  void Emit(size_t a, const EventKey& key, uint64_t seq, uint32_t partition, const EventHeader& h,
            EventState state, uint32_t attempts, uint64_t generation, const std::string& error,
            const std::string& answer);
  // Appends again the records whose append failed.
  void RetryAppends();
  // Waits up to wait_ms for the first `issued` records of adapter `a` to be durable (or found
  // to be duplicates); false when they are not (one of them waits for a retry).
  bool Settled(size_t a, uint64_t issued, int64_t wait_ms);
  // Forgets the failed appends (Stop: the events are delivered again after the restart, and their
  // statuses recorded again).
  void DropRetries();

 private:
  // A status record on its way into the journal. Owns the request until the journal's callback;
  // a failed append is kept and tried again.
  struct Append final : AppendCallback {
    StatusRecords* owner = nullptr;
    size_t source = 0;
    EventHeader header;
    std::string body;
    AppendRequest request;
    void OnAppendDone(const AppendResult& result) override { owner->Appended(this, result); }
  };
  struct Feed {
    uint64_t writeback_mask = 0;       // the write-back adapters reporting this adapter
    std::atomic<uint64_t> issued{0};   // status records handed to the journal...
    std::atomic<uint64_t> settled{0};  // ...and durable (or found to be duplicates)
  };
  void Appended(Append* s, const AppendResult& result);

  std::vector<std::string> names_;  // the adapters', by index
  const std::function<int64_t()>& now_ms_;
  prometheus::Counter* appended_ = nullptr;
  prometheus::Counter* append_errors_ = nullptr;
  Journal* journal_ = nullptr;
  std::unique_ptr<Feed[]> feeds_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Append*> retry_;  // under mu_
  std::atomic<uint64_t> clock_{0};
};

}  // namespace dvrouter
