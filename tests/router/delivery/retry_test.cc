#include "router/delivery/retry.h"

#include <gtest/gtest.h>

#include <type_traits>

#include "adapters/adapter.h"

namespace dvrouter {
namespace {

// Batches hand adapters views, never copies of event bytes.
static_assert(std::is_trivially_copyable_v<Delivery>);

TEST(RetryPolicy, CeilingGrowsExponentiallyToTheCap) {
  RetryPolicy p(RetryOptions{.initial_backoff_ms = 100, .max_backoff_ms = 5000, .multiplier = 2},
                1);
  EXPECT_EQ(p.Ceiling(1), 100);
  EXPECT_EQ(p.Ceiling(2), 200);
  EXPECT_EQ(p.Ceiling(5), 1600);
  EXPECT_EQ(p.Ceiling(6), 3200);
  EXPECT_EQ(p.Ceiling(7), 5000);
  EXPECT_EQ(p.Ceiling(200), 5000);  // no overflow far past the cap
}

TEST(RetryPolicy, FullJitterStaysWithinTheCeilingAndSpreads) {
  RetryPolicy p(RetryOptions{.initial_backoff_ms = 100, .max_backoff_ms = 1000}, 42);
  const int64_t now = 1'000'000;
  int64_t min_delay = INT64_MAX, max_delay = 0, sum = 0;
  constexpr int kDraws = 20000;
  for (int i = 0; i < kDraws; ++i) {
    RetryPolicy::Next n = p.AfterFailure(10, now, now, std::nullopt);  // ceiling 1000 (capped)
    ASSERT_FALSE(n.give_up);
    const int64_t d = n.at_ms - now;
    ASSERT_GE(d, 0);
    ASSERT_LE(d, 1000);
    min_delay = std::min(min_delay, d);
    max_delay = std::max(max_delay, d);
    sum += d;
  }
  // Uniform on [0, 1000]: mean ~500, and both ends are reached.
  EXPECT_NEAR(static_cast<double>(sum) / kDraws, 500, 15);
  EXPECT_LT(min_delay, 10);
  EXPECT_GT(max_delay, 990);
}

TEST(RetryPolicy, RetryAfterIsAFloorAndIsCapped) {
  RetryPolicy p(
      RetryOptions{.initial_backoff_ms = 100, .max_backoff_ms = 200, .max_retry_after_ms = 60'000},
      7);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(p.AfterFailure(1, 0, 1000, 30'000).at_ms, 31'000);  // 30 s beats any jitter
  }
  EXPECT_EQ(p.AfterFailure(1, 0, 1000, 3'600'000).at_ms, 61'000);  // an hour is cut to 60 s
  const int64_t at = p.AfterFailure(1, 0, 1000, 0).at_ms;          // 0: jitter decides
  EXPECT_GE(at, 1000);
  EXPECT_LE(at, 1100);
}

TEST(RetryPolicy, GivesUpByAttempts) {
  RetryPolicy p(RetryOptions{.max_attempts = 3, .max_age_ms = 0}, 1);
  EXPECT_FALSE(p.AfterFailure(1, 0, 10, std::nullopt).give_up);
  EXPECT_FALSE(p.AfterFailure(2, 0, 20, std::nullopt).give_up);
  RetryPolicy::Next n = p.AfterFailure(3, 0, 30, std::nullopt);
  EXPECT_TRUE(n.give_up);
  EXPECT_EQ(n.reason, "gave up after 3 attempts");
}

TEST(RetryPolicy, GivesUpByAgeIncludingTheNextWait) {
  RetryPolicy p(
      RetryOptions{.initial_backoff_ms = 1000, .max_backoff_ms = 1000, .max_age_ms = 10'000}, 1);
  EXPECT_FALSE(p.AfterFailure(5, 0, 5'000, std::nullopt).give_up);  // at most 6 s < 10 s
  // A Retry-After that would land past the age limit gives up now rather than waiting for it.
  RetryPolicy::Next n = p.AfterFailure(6, 0, 8'000, 5'000);
  EXPECT_TRUE(n.give_up);
  EXPECT_NE(n.reason.find("limit 10000 ms"), std::string::npos) << n.reason;
}

TEST(CircuitBreaker, OpensAfterConsecutiveFailuresAndProbesOnce) {
  CircuitBreaker b(BreakerOptions{.failure_threshold = 3, .open_ms = 1000});
  EXPECT_TRUE(b.Allow(0));
  b.OnFailure(1);
  b.OnFailure(2);
  b.OnSuccess();  // a success resets the count
  b.OnFailure(3);
  b.OnFailure(4);
  EXPECT_EQ(b.state(), BreakerState::kClosed);
  b.OnFailure(5);
  EXPECT_EQ(b.state(), BreakerState::kOpen);
  EXPECT_FALSE(b.Allow(500));
  EXPECT_FALSE(b.Allow(1004));
  EXPECT_EQ(b.probe_at_ms(), 1005);
  EXPECT_TRUE(b.Allow(1005));  // the probe
  EXPECT_EQ(b.state(), BreakerState::kHalfOpen);
  EXPECT_FALSE(b.Allow(1006));  // only one probe at a time
  b.OnFailure(1100);            // probe failed: a whole period again
  EXPECT_EQ(b.state(), BreakerState::kOpen);
  EXPECT_FALSE(b.Allow(2000));
  EXPECT_TRUE(b.Allow(2100));
  b.OnSuccess();
  EXPECT_EQ(b.state(), BreakerState::kClosed);
  EXPECT_TRUE(b.Allow(2101));
  EXPECT_TRUE(b.Allow(2102));
}

}  // namespace
}  // namespace dvrouter
