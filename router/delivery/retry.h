// RetryPolicy and CircuitBreaker: when a delivery to one adapter is tried again, and when the
// adapter is not tried at all (docs/architecture.md, guarantee 4).
//
// RetryPolicy: exponential backoff with full jitter (delay drawn uniformly in [0, min(cap,
// initial * multiplier^(attempt-1))]), a server's Retry-After honoured as a floor (itself capped),
// and a give-up rule by attempts and/or age; giving up sends the event to the DLQ so a poison
// event never blocks its partition forever. CircuitBreaker: opens after `failure_threshold`
// consecutive failures, lets one probe through after `open_ms` (half-open), closes on its success
// and reopens on its failure. Times are milliseconds from the caller's clock, so tests drive them.
// Both are plain objects owned by one adapter's delivery loop: not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>

namespace dvrouter {

struct RetryOptions {
  int64_t initial_backoff_ms = 200;          // first retry waits up to this
  int64_t max_backoff_ms = 60'000;           // the backoff ceiling
  double multiplier = 2.0;                   // growth per attempt
  uint32_t max_attempts = 0;                 // give up after this many attempts (0: no limit)
  int64_t max_age_ms = 24ll * 3'600'000;     // give up once the first attempt is this old (0: none)
  int64_t max_retry_after_ms = 15 * 60'000;  // a longer Retry-After is cut to this
};

class RetryPolicy {
 public:
  RetryPolicy(RetryOptions options, uint64_t seed);

  struct Next {
    bool give_up = false;
    int64_t at_ms = 0;   // when to try again (when !give_up)
    std::string reason;  // why it gave up (when give_up), for the DLQ entry
  };

  // After attempt number `attempts` (1 for the first) failed retryably at `now_ms`; the first
  // attempt was at `first_attempt_ms`; `retry_after_ms` is the server's Retry-After, if any.
  Next AfterFailure(uint32_t attempts, int64_t first_attempt_ms, int64_t now_ms,
                    std::optional<int64_t> retry_after_ms);

  // The backoff ceiling for attempt `attempts` before jitter (exposed for tests and docs).
  int64_t Ceiling(uint32_t attempts) const;

 private:
  RetryOptions options_;
  std::mt19937_64 rng_;
};

struct BreakerOptions {
  uint32_t failure_threshold = 5;  // consecutive failures that open the breaker
  int64_t open_ms = 30'000;        // how long it stays open before one probe
};

enum class BreakerState { kClosed, kOpen, kHalfOpen };

class CircuitBreaker {
 public:
  explicit CircuitBreaker(BreakerOptions options) : options_(options) {}

  // Whether a delivery may start now. In half-open state only the one probe is allowed, and
  // the caller must report its outcome (OnSuccess or OnFailure, also for a permanent error or
  // a give-up): an unreported probe keeps the breaker half-open and shut.
  bool Allow(int64_t now_ms);
  void OnSuccess();
  void OnFailure(int64_t now_ms);

  BreakerState state() const { return state_; }
  // When an open breaker lets its probe through.
  int64_t probe_at_ms() const { return opened_at_ms_ + options_.open_ms; }

 private:
  BreakerOptions options_;
  BreakerState state_ = BreakerState::kClosed;
  uint32_t consecutive_failures_ = 0;
  int64_t opened_at_ms_ = 0;
  bool probe_in_flight_ = false;
};

}  // namespace dvrouter
