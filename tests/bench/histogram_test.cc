#include "bench/loadgen/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

namespace dvrouter::bench {
namespace {

// The exact q-quantile of the samples, by the same rank rule the histogram uses.
int64_t ExactPercentile(std::vector<int64_t> v, double q) {
  std::sort(v.begin(), v.end());
  size_t rank =
      std::max<size_t>(1, static_cast<size_t>(q * static_cast<double>(v.size()) + 0.999999));
  return v[rank - 1];
}

TEST(LatencyHistogram, PercentilesWithinTheBucketError) {
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> dist(13.0, 1.5);  // median ~0.44 ms, long tail
  LatencyHistogram h;
  std::vector<int64_t> samples;
  for (int i = 0; i < 200000; ++i) {
    int64_t ns = std::max<int64_t>(1000, static_cast<int64_t>(dist(rng)));
    samples.push_back(ns);
    h.Record(ns);
  }
  EXPECT_EQ(h.count(), samples.size());
  for (double q : {0.5, 0.9, 0.99, 0.999}) {
    const double exact = static_cast<double>(ExactPercentile(samples, q));
    const double got = static_cast<double>(h.Percentile(q));
    // Upper bucket edge: never below the exact value, at most 1/64 above it (+1 µs floor).
    EXPECT_GE(got, exact - 1000) << q;
    EXPECT_LE(got, exact * (1 + 1.0 / 64) + 1000) << q;
  }
  EXPECT_EQ(h.max_ns(), *std::max_element(samples.begin(), samples.end()));
  EXPECT_EQ(h.Percentile(1.0), h.max_ns());
}

TEST(LatencyHistogram, MergeEqualsRecordingEverythingInOne) {
  LatencyHistogram a, b, all;
  for (int64_t i = 1; i <= 5000; ++i) {
    const int64_t ns = i * 7919 % 10'000'000 + 1000;
    (i % 2 ? a : b).Record(ns);
    all.Record(ns);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.max_ns(), all.max_ns());
  EXPECT_EQ(a.min_ns(), all.min_ns());
  for (double q : {0.1, 0.5, 0.99}) EXPECT_EQ(a.Percentile(q), all.Percentile(q));
}

TEST(LatencyHistogram, EmptyAndOutOfRange) {
  LatencyHistogram h;
  EXPECT_EQ(h.Percentile(0.99), 0);
  h.Record(50);                             // below 1 µs: counted at the floor
  h.Record(int64_t{4000} * 1'000'000'000);  // above the range: last bucket, exact max
  EXPECT_EQ(h.count(), 2u);
  EXPECT_EQ(h.Percentile(0.5), 1000);
  EXPECT_EQ(h.max_ns(), int64_t{4000} * 1'000'000'000);
  EXPECT_EQ(h.Percentile(1.0), h.max_ns());
}

}  // namespace
}  // namespace dvrouter::bench
