#include "router/delivery/status_table.h"

#include "adapters/adapter.h"
#include "router/common/json.h"

namespace dvrouter {

void KeepTextsValid(DeliveryResult* result) {
  if (!result->error.empty()) result->error = Utf8Excerpt(result->error);
  if (!result->answer.empty()) result->answer = Utf8Excerpt(result->answer);
}

std::string_view EventStateName(EventState s) {
  switch (s) {
    case EventState::kPending:
      return "pending";
    case EventState::kSubmitted:
      return "submitted";
    case EventState::kProcessing:
      return "processing";
    case EventState::kCompleted:
      return "completed";
    case EventState::kFailed:
      return "failed";
  }
  return "unknown";
}

StatusTable::StatusTable(size_t capacity, size_t adapters)
    : capacity_(capacity),
      per_shard_(capacity == 0 ? 0 : (capacity + kShards - 1) / kShards),
      adapters_(adapters) {}

std::optional<EventStatus> StatusTable::Find(const EventKey& key) const {
  const Shard& s = shards_[key.hi % kShards];
  std::lock_guard<std::mutex> lock(s.mu);
  auto it = s.map.find(key);
  if (it == s.map.end()) return std::nullopt;
  return it->second;
}

}  // namespace dvrouter
