#include "router/delivery/status_table.h"

#include <algorithm>

#include "adapters/adapter.h"
#include "router/common/ascii.h"
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

static_assert(sizeof(StatusStep) <= 24, "a step without texts stays small (status_table.h)");

const std::string& StatusStep::error() const {
  static const std::string kNone;
  return texts ? texts->error : kNone;
}

const std::string& StatusStep::answer() const {
  static const std::string kNone;
  return texts ? texts->answer : kNone;
}

StatusStep& StatusStep::operator=(const StatusStep& other) {
  if (this == &other) return *this;
  ms = other.ms;
  attempt = other.attempt;
  state = other.state;
  replay = other.replay;
  same_error = other.same_error;
  texts = other.texts ? std::make_unique<Texts>(*other.texts) : nullptr;
  return *this;
}

void AdapterStatus::Step(EventState s, int64_t ms, uint32_t attempt, const std::string& error,
                         const std::string& answer) {
  state = s;
  updated_ms = ms;
  if (attempt != 0) attempts = attempt;
  if (!error.empty()) last_error = error;
  if (!answer.empty()) this->answer = answer;
  if (steps.size() >= kMaxSteps) {
    // Keep the first step (queued) and the latest: drop the second, moving the rest down.
    steps.erase(steps.begin() + 1);
    ++steps_dropped;
  }
  const auto cut = [](const std::string& text) {
    return text.size() > kMaxStepText ? Utf8Excerpt(text, kMaxStepText) : text;
  };
  // A repeated error (a retry storm) is kept once: the later steps say it is the same.
  std::string kept_error = error.empty() ? std::string() : cut(error);
  bool same = false;
  if (!kept_error.empty()) {
    for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
      if (it->error().empty()) continue;
      same = it->error() == kept_error;
      break;
    }
  }
  // An event's usual timeline (pending, submitted, completed) in one allocation, not three.
  if (steps.empty()) steps.reserve(kUsualSteps);
  StatusStep& step = steps.emplace_back();
  step.ms = ms;
  step.state = s;
  step.attempt = attempt != 0 ? attempt : attempts;
  step.replay = false;
  step.same_error = same;
  if ((!same && !kept_error.empty()) || !answer.empty()) {
    step.texts = std::make_unique<StatusStep::Texts>();
    if (!same) step.texts->error = std::move(kept_error);
    if (!answer.empty()) step.texts->answer = cut(answer);
  }
}

namespace {

bool Matches(const EventQuery& q, const EventStatus& st) {
  if (st.seq >= q.before_seq) return false;
  if (q.adapter != SIZE_MAX &&
      (q.adapter >= st.adapters.size() || st.adapters[q.adapter].updated_ms == 0)) {
    return false;
  }
  if (st.summary.status_record && !q.status_records) return false;
  if (!q.row_id.empty() && !EqualsIgnoreCase(q.row_id, st.summary.row_id)) return false;
  if (!q.table.empty() && q.table != st.summary.table) return false;
  if (!q.message.empty() && !EqualsIgnoreCase(q.message, st.summary.message)) return false;
  if (q.state) {
    bool any = false;
    for (size_t a = 0; a < st.adapters.size(); ++a) {
      if (q.adapter != SIZE_MAX && a != q.adapter) continue;
      any |= st.adapters[a].updated_ms > 0 && st.adapters[a].state == *q.state;
    }
    if (!any) return false;
  }
  return true;
}

}  // namespace

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

std::vector<EventMatch> StatusTable::Search(const EventQuery& query) const {
  std::vector<EventMatch> found;
  if (query.limit == 0) return found;
  // The newest `limit` matches: a min-heap by seq over what each shard holds.
  const auto newer = [](const EventMatch& a, const EventMatch& b) {
    return a.status.seq > b.status.seq;
  };
  for (const Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    for (const auto& [key, st] : s.map) {
      if (!Matches(query, st)) continue;
      if (found.size() == query.limit) {
        if (st.seq <= found.front().status.seq) continue;
        std::pop_heap(found.begin(), found.end(), newer);
        found.pop_back();
      }
      found.push_back(EventMatch{key, st});
      std::push_heap(found.begin(), found.end(), newer);
    }
  }
  std::sort(found.begin(), found.end(), newer);
  return found;
}

size_t StatusTable::size() const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    n += s.map.size();
  }
  return n;
}

}  // namespace dvrouter
