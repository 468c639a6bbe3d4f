// Confirmations: the later outcome of events a sink answered processing (202), by its callback
// or a poll (Adapter::SetConfirmationSink). Owns the sinks handed to the adapters, the
// early-confirmation buffer (a callback that overtakes the 202 it confirms, applied when the
// answer arrives), and a compressed copy of each 202's record kept for its confirmation (the DLQ
// frame, the status record's header) while the journal may delete it.
//
// It also keeps which journaled events still wait for their confirmation (HoldOpen), so the
// saved cursors stay behind them: a restart delivers them again, and the sink's answer (the same
// job, by its idempotency key) is polled or called back anew (docs/architecture.md, "Cursors").
//
// Threads: Confirm from adapters' callback and poll threads and the admin listener (one at a
// time); TakeEarly, KeepProcessing, HoldOpen and CountConfirmed from delivery workers; OldestOpen
// from the maintenance thread.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "adapters/adapter.h"
#include "router/delivery/dlq.h"
#include "router/delivery/status_records.h"
#include "router/delivery/status_table.h"
#include "router/journal/journal.h"
#include "router/journal/record.h"

namespace dvrouter {

class Confirmations {
 public:
  // `names`: the adapters', by index. `now_ms` and `running` (the engine is started) must
  // outlive this object; `confirmed` may be null (no metrics).
  Confirmations(std::vector<std::string> names, const std::function<int64_t()>& now_ms,
                int64_t retention_ms, const std::atomic<bool>& running, StatusTable* status,
                StatusRecords* records, prometheus::Family<prometheus::Counter>* confirmed);
  Confirmations(const Confirmations&) = delete;
  Confirmations& operator=(const Confirmations&) = delete;

  // The journal and DLQ: set once by Start, before `running`.
  void Attach(Journal* journal, DeadLetterQueue* dlq) {
    journal_ = journal;
    dlq_ = dlq;
  }
  // The sink adapter `a` confirms through (Confirm for that adapter).
  ConfirmationSink* sink(size_t a) { return sinks_[a].get(); }

  // The later outcome of event `key`, which adapter `a` answered processing for: its status, its
  // status record, and a failure to the DLQ. See DeliveryEngine::Confirm.
  Status Confirm(size_t a, const EventKey& key, const DeliveryResult& result);
  // A confirmation that came before adapter a's processing answer for `key`, or nullopt;
  // forgotten either way.
  std::optional<DeliveryResult> TakeEarly(size_t a, const EventKey& key);
  // Keeps the record of event `seq` that adapter `a` answered processing for.
  void KeepProcessing(size_t a, uint64_t seq, std::string_view frame);
  // Counts a confirmation applied (dvrouter_delivery_confirmations_total).
  void CountConfirmed(size_t a, bool failed);
  // Journaled event `seq` of `partition` waits for adapter a's confirmation: until it comes (or
  // kMaxHoldMs or delivery.retention passes, or kMaxOpen newer ones wait), OldestOpen names it.
  // Called before the event's status says processing and before its cursor moves past it.
  void HoldOpen(size_t a, uint32_t partition, uint64_t seq);
  // The oldest event of each of `partitions` that waits for adapter a's confirmation (UINT64_MAX:
  // none). Read after the live cursors, so an event they passed is in it.
  std::vector<uint64_t> OldestOpen(size_t a, uint32_t partitions);

 private:
  // Hands an adapter its ConfirmationSink.
  struct Sink final : ConfirmationSink {
    Confirmations* owner = nullptr;
    size_t adapter = 0;
    Status Confirm(const EventKey& key, const DeliveryResult& result) override {
      return owner->Confirm(adapter, key, result);
    }
  };
  // The record of an event a sink answered processing, kept for its confirmation.
  struct KeptRecord {
    StoredBody frame;  // the plain frame, compressed
    uint32_t raw_length = 0;
    int64_t since_ms = 0;
  };
  static constexpr uint64_t kProcessingBytes = 64ull << 20;
  static constexpr size_t kMaxOpen = 100'000;       // per adapter, as many as an ERP adapter polls
  static constexpr int64_t kMaxHoldMs = 3'600'000;  // how long a 202 holds its saved cursor

  static std::string EarlyKey(size_t a, const EventKey& key) {
    return std::to_string(a) + ":" + key.ToHex();
  }
  std::optional<std::string> TakeProcessing(size_t a, uint64_t seq);
  void ReleaseOpen(size_t a, uint64_t seq);

  const std::vector<std::string> names_;
  const std::function<int64_t()>& now_ms_;
  const int64_t retention_ms_;
  const std::atomic<bool>& running_;
  StatusTable* const status_;
  StatusRecords* const records_;
  prometheus::Family<prometheus::Counter>* const confirmed_;
  Journal* journal_ = nullptr;
  DeadLetterQueue* dlq_ = nullptr;
  std::vector<std::unique_ptr<Sink>> sinks_;

  std::mutex
      confirm_mu_;  // one confirmation at a time: a repeated callback sees the first's effect
  // Confirmations that came before the sink's 202 was applied (a callback racing the answer to
  // the call itself): applied when that answer arrives. Bounded; oldest dropped first.
  std::mutex early_mu_;
  std::unordered_map<std::string, DeliveryResult> early_;
  std::deque<std::string> early_order_;
  std::atomic<size_t> early_count_{0};
  // Records of events a sink answered processing, kept for their confirmation.
  std::mutex processing_mu_;
  std::vector<std::map<uint64_t, KeptRecord>> processing_kept_;  // by adapter, by seq
  uint64_t kept_bytes_ = 0;
  // Journaled events waiting for their confirmation, by adapter: (partition, seq) -> since.
  std::mutex open_mu_;
  std::vector<std::map<std::pair<uint32_t, uint64_t>, int64_t>> open_;
  std::vector<std::unordered_map<uint64_t, uint32_t>> open_partition_;  // seq -> partition
};

}  // namespace dvrouter
