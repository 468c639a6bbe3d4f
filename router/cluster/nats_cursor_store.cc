#include "router/cluster/nats_cursor_store.h"

#include <nats/nats.h>

#include <charconv>
#include <chrono>
#include <thread>
#include <utility>

#include "router/cluster/nats_kv.h"
#include "router/common/clock.h"

namespace dvrouter {

namespace {

constexpr std::string_view kMagic = "dvrouter-cursors 1";
constexpr std::string_view kPrefix = "c.";
constexpr int64_t kLoadWaitMs = 30'000;

bool Number(std::string_view text, uint64_t* out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && ptr == text.data() + text.size() && !text.empty();
}

// The space-separated fields of `text`.
std::vector<std::string_view> Fields(std::string_view text) {
  std::vector<std::string_view> out;
  size_t at = 0;
  while (at < text.size()) {
    while (at < text.size() && text[at] == ' ') ++at;
    const size_t end = text.find(' ', at);
    if (at < text.size()) out.push_back(text.substr(at, end - at));
    at = end == std::string_view::npos ? text.size() : end;
  }
  return out;
}

}  // namespace

NatsCursorStore::NatsCursorStore(kvStore* bucket, std::string bucket_name,
                                 std::function<bool()> may_write)
    : kv_(bucket), bucket_name_(std::move(bucket_name)), may_write_(std::move(may_write)) {}

Result<CursorMap> NatsCursorStore::Load(uint32_t partitions) const {
  // A JetStream that elects the bucket's leader (a server just left) answers nothing for a few
  // seconds: delivery waits for it rather than failing the start.
  const int64_t deadline = SteadyNowMs() + kLoadWaitMs;
  for (;;) {
    Result<CursorMap> r = LoadOnce(partitions);
    if (r.ok() || r.status().code() != StatusCode::kUnavailable || SteadyNowMs() >= deadline) {
      return r;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

Result<CursorMap> NatsCursorStore::LoadOnce(uint32_t partitions) const {
  CursorMap out;
  kvKeysList keys{};
  natsStatus s = kvStore_Keys(&keys, kv_, nullptr);
  if (s == NATS_NOT_FOUND) return out;  // an empty bucket: the cluster's first leader
  if (s != NATS_OK) {
    return Unavailable("cursors in bucket " + bucket_name_ + ": " + NatsErrorText(s));
  }
  Status error;
  for (int i = 0; i < keys.Count && error.ok(); ++i) {
    const std::string key = keys.Keys[i];
    if (!key.starts_with(kPrefix)) continue;
    const std::string where = bucket_name_ + "/" + key;
    kvEntry* e = nullptr;
    s = kvStore_Get(&e, kv_, key.c_str());
    // A key just listed but not found: a read served by a replica that lags (a direct get). Taken
    // as an adapter new to the journal it would start at the journal's end and skip its backlog,
    // so it is an error like any other, and the load is tried again.
    if (s != NATS_OK) {
      error = Unavailable(where + ": " + NatsErrorText(s));
      break;
    }
    const char* v = static_cast<const char*>(kvEntry_Value(e));
    const std::string value(v == nullptr ? "" : v, static_cast<size_t>(kvEntry_ValueLen(e)));
    kvEntry_Destroy(e);
    const std::vector<std::string_view> f = Fields(value);
    uint64_t count = 0;
    if (f.size() < 3 || std::string(f[0]) + " " + std::string(f[1]) != kMagic ||
        !Number(f[2], &count)) {
      error = InvalidArgument(where + ": not a dvrouter cursor value (it does not start with '" +
                              std::string(kMagic) + " <partitions>')");
      break;
    }
    if (count != partitions || f.size() != 3 + count) {
      error = InvalidArgument(where + ": " + std::to_string(f.size() - 3) + " cursors for " +
                              std::to_string(count) + " partitions, the journal has " +
                              std::to_string(partitions));
      break;
    }
    std::vector<uint64_t> cursors(partitions, 0);
    for (uint32_t p = 0; p < partitions; ++p) {
      if (!Number(f[3 + p], &cursors[p])) {
        error = InvalidArgument(where + ": cursor " + std::to_string(p) + " is not a number");
        break;
      }
    }
    out[key.substr(kPrefix.size())] = std::move(cursors);
  }
  kvKeysList_Destroy(&keys);
  if (!error.ok()) return error;
  written_ = out;
  return out;
}

Status NatsCursorStore::Save(const CursorMap& cursors) const {
  if (may_write_ && !may_write_()) {
    return FailedPrecondition("cursors not saved: this node does not hold the delivery lease");
  }
  for (const auto& [name, values] : cursors) {
    auto it = written_.find(name);
    if (it != written_.end() && it->second == values) continue;
    std::string text(kMagic);
    text += ' ' + std::to_string(values.size());
    for (uint64_t c : values) text += ' ' + std::to_string(c);
    uint64_t rev = 0;
    const std::string key = std::string(kPrefix) + name;
    const natsStatus s = kvStore_PutString(&rev, kv_, key.c_str(), text.c_str());
    if (s != NATS_OK) {
      return Unavailable("cursors in bucket " + bucket_name_ + "/" + key + ": " + NatsErrorText(s));
    }
    written_[name] = values;
  }
  return Status::Ok();
}

}  // namespace dvrouter
