#include "router/delivery/retry.h"

#include <algorithm>
#include <cmath>

namespace dvrouter {

RetryPolicy::RetryPolicy(RetryOptions options, uint64_t seed) : options_(options), rng_(seed) {}

int64_t RetryPolicy::Ceiling(uint32_t attempts) const {
  const double exp = std::pow(options_.multiplier, attempts > 0 ? attempts - 1 : 0);
  const double ceiling = static_cast<double>(options_.initial_backoff_ms) * exp;
  return ceiling >= static_cast<double>(options_.max_backoff_ms) ? options_.max_backoff_ms
                                                                 : static_cast<int64_t>(ceiling);
}

RetryPolicy::Next RetryPolicy::AfterFailure(uint32_t attempts, int64_t first_attempt_ms,
                                            int64_t now_ms, std::optional<int64_t> retry_after_ms) {
  Next next;
  if (options_.max_attempts > 0 && attempts >= options_.max_attempts) {
    next.give_up = true;
    next.reason = "gave up after " + std::to_string(attempts) + " attempts";
    return next;
  }
  // Full jitter: spreads the retries of many events so a recovering sink is not hit in waves.
  std::uniform_int_distribution<int64_t> jitter(0, Ceiling(attempts));
  int64_t delay = jitter(rng_);
  if (retry_after_ms) {
    delay = std::max(delay, std::clamp<int64_t>(*retry_after_ms, 0, options_.max_retry_after_ms));
  }
  next.at_ms = now_ms + delay;
  if (options_.max_age_ms > 0 && next.at_ms - first_attempt_ms > options_.max_age_ms) {
    next.give_up = true;
    next.reason = "gave up: first attempt " + std::to_string(now_ms - first_attempt_ms) +
                  " ms ago, limit " + std::to_string(options_.max_age_ms) + " ms";
  }
  return next;
}

bool CircuitBreaker::Allow(int64_t now_ms) {
  switch (state_) {
    case BreakerState::kClosed:
      return true;
    case BreakerState::kOpen:
      if (now_ms < probe_at_ms()) return false;
      state_ = BreakerState::kHalfOpen;
      probe_in_flight_ = true;
      return true;
    case BreakerState::kHalfOpen:
      if (probe_in_flight_) return false;
      probe_in_flight_ = true;
      return true;
  }
  return false;
}

void CircuitBreaker::OnSuccess() {
  state_ = BreakerState::kClosed;
  consecutive_failures_ = 0;
  probe_in_flight_ = false;
}

void CircuitBreaker::OnFailure(int64_t now_ms) {
  probe_in_flight_ = false;
  if (state_ == BreakerState::kHalfOpen) {
    state_ = BreakerState::kOpen;  // the probe failed: wait a whole period again
    opened_at_ms_ = now_ms;
    return;
  }
  if (++consecutive_failures_ >= options_.failure_threshold && state_ == BreakerState::kClosed) {
    state_ = BreakerState::kOpen;
    opened_at_ms_ = now_ms;
  }
}

}  // namespace dvrouter
