#include "router/cluster/lease.h"

#include <nats/nats.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <utility>

#include "router/cluster/nats_kv.h"
#include "router/common/clock.h"
#include "router/common/json.h"
#include "router/common/thread_name.h"

namespace dvrouter {

namespace {

constexpr char kLeaderKey[] = "leader";
constexpr char kNodePrefix[] = "node.";

std::string Unquote(const std::string& v) {
  return v.size() >= 2 && v.front() == '"' && v.back() == '"' ? v.substr(1, v.size() - 2) : v;
}

int64_t Number(const std::string& v) {
  try {
    return std::stoll(v);
  } catch (...) {
    return 0;
  }
}

std::vector<std::pair<std::string, std::string>> Members(kvEntry* e) {
  std::vector<std::pair<std::string, std::string>> out;
  const char* v = static_cast<const char*>(kvEntry_Value(e));
  (void)JsonObjectMembers(std::string_view(v == nullptr ? "" : v, kvEntry_ValueLen(e)), "lease",
                          &out);
  return out;
}

}  // namespace

NatsLease::NatsLease(kvStore* bucket, LeaseOptions options)
    : kv_(bucket), opt_(std::move(options)) {}

NatsLease::~NatsLease() { Stop(); }

std::string NatsLease::Value(int64_t since_ms, int64_t renewed_ms) const {
  std::string v = "{\"node\":";
  AppendJsonString(&v, opt_.node);
  v += ",\"since_ms\":" + std::to_string(since_ms) +
       ",\"renewed_ms\":" + std::to_string(renewed_ms) + "}";
  return v;
}

NatsLease::Change NatsLease::Step(std::string* why) {
  const int64_t start = SteadyNowMs();
  const int64_t now = WallNowMs();
  Change change = Change::kNone;
  if (!held()) {
    uint64_t rev = 0;
    const std::string v = Value(now, now);
    if (kvStore_CreateString(&rev, kv_, kLeaderKey, v.c_str()) == NATS_OK) {
      revision_ = rev;
      since_ms_ = now;
      last_ok_ms_.store(start);
      held_.store(true, std::memory_order_release);
      { std::lock_guard<std::mutex> lock(mu_); }  // a WaitHeld between its check and its wait
      cv_.notify_all();
      change = Change::kAcquired;
    }
  } else {
    std::string lost;
    // Stalled past the point where the key may have expired: another node may hold it now.
    if (start - last_ok_ms_.load() >= opt_.ttl_ms * 3 / 4) {
      lost = "no renewal for " + std::to_string(start - last_ok_ms_.load()) + " ms (lease_ttl " +
             std::to_string(opt_.ttl_ms) + " ms)";
    } else {
      uint64_t rev = 0;
      const std::string v = Value(since_ms_, now);
      const natsStatus s = kvStore_UpdateString(&rev, kv_, kLeaderKey, v.c_str(), revision_);
      if (s == NATS_OK) {
        revision_ = rev;
        last_ok_ms_.store(start);
      } else {
        const std::string text = NatsErrorText(s);
        Result<LeaderInfo> stored = NotFound("");
        if (text.find("wrong last sequence") != std::string::npos && (stored = Leader()).ok() &&
            stored->node == opt_.node && stored->since_ms == since_ms_) {
          // Our own renewal whose answer was lost (a timeout): still ours, at that revision.
          // last_ok_ms_ stays where it was, so the stall check above still bounds the lease.
          revision_ = stored->revision;
        } else if (text.find("wrong last sequence") != std::string::npos) {
          lost = "revision conflict: the lease was taken or expired (" + text + ")";
        } else if (SteadyNowMs() - last_ok_ms_.load() >= opt_.ttl_ms * 3 / 4) {
          lost = "could not renew for " + std::to_string(SteadyNowMs() - last_ok_ms_.load()) +
                 " ms: " + text;
        }
      }
    }
    if (!lost.empty()) {
      held_.store(false, std::memory_order_release);
      change = Change::kLost;
      if (why != nullptr) *why = lost;
    }
  }
  if (change != Change::kLost) Heartbeat();  // a lost lease is reported without another call
  return change;
}

void NatsLease::Heartbeat() {
  std::string v = "{\"node\":";
  AppendJsonString(&v, opt_.node);
  v += std::string(",\"role\":\"") + (held() ? "leader" : "follower") +
       "\",\"seen_ms\":" + std::to_string(WallNowMs()) + "}";
  uint64_t rev = 0;
  (void)kvStore_PutString(&rev, kv_, (kNodePrefix + opt_.node).c_str(), v.c_str());
}

void NatsLease::Start(std::function<void(const std::string& why)> on_lost) {
  on_lost_ = std::move(on_lost);
  thread_ = std::thread([this] { Loop(); });
  watchdog_ = std::thread([this] { Watch(); });
}

void NatsLease::ReportLost(const std::string& why) {
  held_.store(false, std::memory_order_release);
  if (lost_reported_.exchange(true)) return;
  if (on_lost_) on_lost_(why);
}

// The renewals' calls may block (up to the request timeout each): the watchdog ends the lease at
// 3/4 of lease_ttl without a successful renewal whatever they do, before the key can expire and
// another node take it.
void NatsLease::Watch() {
  SetThreadName("dv-lease-watch");
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (held() && !lost_reported_.load()) {
      const int64_t stalled = SteadyNowMs() - last_ok_ms_.load();
      if (stalled >= opt_.ttl_ms * 3 / 4) {
        lock.unlock();
        ReportLost("no renewal for " + std::to_string(stalled) + " ms (lease_ttl " +
                   std::to_string(opt_.ttl_ms) + " ms)");
        lock.lock();
        continue;
      }
    }
    cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(10, opt_.ttl_ms / 40)));
  }
}

void NatsLease::Loop() {
  SetThreadName("dv-lease");
  for (;;) {
    std::string why;
    if (lost_reported_.load()) return;
    if (Step(&why) == Change::kLost) {
      ReportLost(why);
      return;
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, std::chrono::milliseconds(renew_interval_ms()), [&] { return stop_; })) {
      return;
    }
  }
}

void NatsLease::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (watchdog_.joinable()) watchdog_.join();
}

void NatsLease::Release() {
  if (!held()) return;
  // Ours when it names this node and our acquisition (a read served by a replica that lags may
  // show an older revision of our own renewals; another holder would have its own since_ms).
  Result<LeaderInfo> now = Leader();
  if (now.ok() && now->node == opt_.node && now->since_ms == since_ms_) {
    (void)kvStore_Delete(kv_, kLeaderKey);
  }
  held_.store(false, std::memory_order_release);
  (void)kvStore_Delete(kv_, (kNodePrefix + opt_.node).c_str());
}

bool NatsLease::WaitHeld(int64_t ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stop_ || held(); });
  return held();
}

Result<LeaderInfo> NatsLease::Leader() const {
  kvEntry* e = nullptr;
  const natsStatus s = kvStore_Get(&e, kv_, kLeaderKey);
  if (s == NATS_NOT_FOUND) return NotFound("no node holds the lease");
  if (s != NATS_OK) return Unavailable("cluster: reading the lease: " + NatsErrorText(s));
  LeaderInfo info;
  info.revision = kvEntry_Revision(e);
  for (const auto& [k, v] : Members(e)) {
    if (k == "node") info.node = Unquote(v);
    if (k == "since_ms") info.since_ms = Number(v);
    if (k == "renewed_ms") info.renewed_ms = Number(v);
  }
  kvEntry_Destroy(e);
  return info;
}

std::vector<NodeInfo> NatsLease::Nodes() const {
  std::vector<NodeInfo> out;
  kvKeysList keys{};
  if (kvStore_Keys(&keys, kv_, nullptr) != NATS_OK) return out;
  for (int i = 0; i < keys.Count; ++i) {
    const std::string key = keys.Keys[i];
    if (!key.starts_with(kNodePrefix)) continue;
    kvEntry* e = nullptr;
    if (kvStore_Get(&e, kv_, key.c_str()) != NATS_OK) continue;
    NodeInfo n;
    for (const auto& [k, v] : Members(e)) {
      if (k == "node") n.node = Unquote(v);
      if (k == "role") n.role = Unquote(v);
      if (k == "seen_ms") n.seen_ms = Number(v);
    }
    kvEntry_Destroy(e);
    out.push_back(std::move(n));
  }
  kvKeysList_Destroy(&keys);
  return out;
}

}  // namespace dvrouter
