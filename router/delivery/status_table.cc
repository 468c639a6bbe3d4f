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

// As created (every adapter pending), keeping the strings' and the steps' storage.
void Reset(EventStatus* st) {
  st->handle = RecordHandle{};
  st->summary.table.clear();
  st->summary.row_id.clear();
  st->summary.message.clear();
  st->summary.received_ms = 0;
  st->summary.status_record = false;
  for (AdapterStatus& a : st->adapters) {
    a.state = EventState::kPending;
    a.attempts = 0;
    a.updated_ms = 0;
    a.last_error.clear();
    a.answer.clear();
    a.steps.clear();
    a.steps_dropped = 0;
    a.written_back.clear();
    a.written_back_ms = 0;
    a.written_back_by = -1;
  }
}

// An index entry (status_table.h, Shard::index_) and its two halves.
uint64_t Entry(uint32_t hash, uint32_t slot) { return uint64_t{hash} << 32 | (uint64_t{slot} + 1); }
uint32_t HashOf(uint64_t entry) { return static_cast<uint32_t>(entry >> 32); }
uint32_t SlotOf(uint64_t entry) { return static_cast<uint32_t>((entry & 0xffff'ffffull) - 1); }

}  // namespace

uint32_t StatusTable::IndexHash(const EventKey& key) {
  // Event keys are hashes already (XXH3-128 of the event id); the shard took hi's low bits.
  return static_cast<uint32_t>((key.lo ^ (key.hi >> 32)) * 0x9e37'79b9'7f4a'7c15ull >> 32);
}

EventStatus* StatusTable::Shard::Lookup(const EventKey& key) const {
  if (index_.empty()) return nullptr;
  const uint32_t hash = IndexHash(key);
  const size_t mask = index_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    const uint64_t e = index_[i];
    if (e == 0) return nullptr;
    if (HashOf(e) != hash) continue;
    EventStatus& st = Slot(SlotOf(e));
    if (st.key == key) return &st;
  }
}

size_t StatusTable::Shard::Find(uint32_t hash, uint32_t slot) const {
  const size_t mask = index_.size() - 1;
  const uint64_t want = Entry(hash, slot);
  for (size_t i = hash & mask; index_[i] != 0; i = (i + 1) & mask) {
    if (index_[i] == want) return i;
  }
  return SIZE_MAX;
}

void StatusTable::Shard::Insert(std::vector<uint64_t>* index, uint32_t hash, uint32_t slot) {
  const size_t mask = index->size() - 1;
  size_t i = hash & mask;
  while ((*index)[i] != 0) i = (i + 1) & mask;
  (*index)[i] = Entry(hash, slot);
}

void StatusTable::Shard::Erase(size_t at) {
  // Linear probing without tombstones: every later entry of the run that the hole would cut off
  // from its home position moves into the hole.
  const size_t mask = index_.size() - 1;
  size_t hole = at;
  for (size_t j = (at + 1) & mask; index_[j] != 0; j = (j + 1) & mask) {
    const size_t home = HashOf(index_[j]) & mask;
    // The entry stays when its home lies cyclically in (hole, j].
    const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (stays) continue;
    index_[hole] = index_[j];
    hole = j;
  }
  index_[hole] = 0;
}

void StatusTable::Shard::Grow() {
  // Built aside and swapped in: an allocation that fails leaves the index as it was.
  std::vector<uint64_t> bigger(index_.empty() ? 64 : index_.size() * 2, 0);
  for (const uint64_t e : index_) {
    if (e != 0) Insert(&bigger, HashOf(e), SlotOf(e));
  }
  index_.swap(bigger);
}

EventStatus* StatusTable::Shard::Claim(const EventKey& key, size_t capacity, size_t adapters) {
  EventStatus* st = nullptr;
  size_t slot = 0;
  if (used_ < capacity) {
    // Everything that allocates comes first: an allocation that throws leaves the shard as it
    // was (a chunk allocated ahead is used by the next claim).
    slot = used_;
    if (slot / kChunk == chunks_.size()) {
      chunks_.push_back(std::make_unique<EventStatus[]>(std::min(kChunk, capacity - slot)));
    }
    if ((slot + 1) * 2 > index_.size()) Grow();
    st = &Slot(slot);
    st->adapters.resize(adapters);
    ++used_;
  } else {
    // Full: the oldest event's slot (and its statuses' storage) becomes the new event's.
    slot = oldest_;
    oldest_ = (oldest_ + 1) % used_;
    st = &Slot(slot);
    const size_t at = Find(IndexHash(st->key), static_cast<uint32_t>(slot));
    if (at != SIZE_MAX) Erase(at);
    Reset(st);
  }
  st->key = key;
  Insert(&index_, IndexHash(key), static_cast<uint32_t>(slot));
  return st;
}

StatusTable::StatusTable(size_t capacity, size_t adapters)
    : capacity_(capacity),
      per_shard_(capacity == 0 ? 0 : (capacity + kShards - 1) / kShards),
      adapters_(adapters) {}

std::optional<EventStatus> StatusTable::Find(const EventKey& key) const {
  const Shard& s = shards_[key.hi % kShards];
  std::lock_guard<std::mutex> lock(s.mu);
  const EventStatus* st = s.Lookup(key);
  if (st == nullptr) return std::nullopt;
  return *st;
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
    s.ForEach([&](const EventStatus& st) {
      if (!Matches(query, st)) return;
      if (found.size() == query.limit) {
        if (st.seq <= found.front().status.seq) return;
        std::pop_heap(found.begin(), found.end(), newer);
        found.pop_back();
      }
      found.push_back(EventMatch{st.key, st});
      std::push_heap(found.begin(), found.end(), newer);
    });
  }
  std::sort(found.begin(), found.end(), newer);
  return found;
}

size_t StatusTable::size() const {
  size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard<std::mutex> lock(s.mu);
    n += s.size();
  }
  return n;
}

}  // namespace dvrouter
