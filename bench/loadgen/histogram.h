// LatencyHistogram: an HDR-style log-linear histogram of durations in nanoseconds.
//
// Values from 1 µs to ~17 minutes land in buckets whose width is at most 1/64 of their value
// (under 1.6% relative error), whatever the magnitude; below 1 µs everything counts as 1 µs,
// above the range in the last bucket (max() stays exact). Fixed
// memory, O(1) record, mergeable: each load generator thread keeps its own and they are merged
// at the end. Not thread-safe.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>

namespace dvrouter::bench {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 7;  // 128 sub-buckets; 64 used per power of two above 128 µs
  static constexpr int kSub = 1 << kSubBits;
  static constexpr int kMagnitudes = 24;    // up to 2^30 µs
  static constexpr int64_t kUnitNs = 1000;  // resolution floor: 1 µs

  void Record(int64_t ns) {
    int64_t units = std::max<int64_t>(ns / kUnitNs, 1);
    ++counts_[Index(units)];
    ++total_;
    max_ns_ = std::max(max_ns_, ns);
    min_ns_ = total_ == 1 ? ns : std::min(min_ns_, ns);
    sum_ns_ += ns;
  }

  void Merge(const LatencyHistogram& o) {
    for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    if (o.total_ > 0) {
      min_ns_ = total_ == 0 ? o.min_ns_ : std::min(min_ns_, o.min_ns_);
      max_ns_ = std::max(max_ns_, o.max_ns_);
    }
    total_ += o.total_;
    sum_ns_ += o.sum_ns_;
  }

  // The smallest recorded bucket value v such that at least q of all values are <= v (the
  // bucket's upper edge, so percentiles never under-report). q in [0, 1].
  int64_t Percentile(double q) const {
    if (total_ == 0) return 0;
    const uint64_t rank =
        std::max<uint64_t>(1, static_cast<uint64_t>(q * static_cast<double>(total_) + 0.999999));
    uint64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank)
        return i + 1 == counts_.size() ? max_ns_ : std::min(UpperEdgeNs(i), max_ns_);
    }
    return max_ns_;
  }

  uint64_t count() const { return total_; }
  int64_t max_ns() const { return max_ns_; }
  int64_t min_ns() const { return min_ns_; }
  double mean_ns() const {
    return total_ ? static_cast<double>(sum_ns_) / static_cast<double>(total_) : 0;
  }

 private:
  static size_t Index(int64_t units) {
    // Magnitude m holds [2^(m+kSubBits-1), 2^(m+kSubBits)) for m >= 1; m = 0 holds [0, kSub).
    const int bits = 64 - __builtin_clzll(static_cast<uint64_t>(units));
    int m = bits - kSubBits;
    if (m < 0) m = 0;
    if (m >= kMagnitudes) return static_cast<size_t>(kMagnitudes) * kSub - 1;
    const int64_t sub = m == 0 ? units : (units >> m);
    return static_cast<size_t>(m) * kSub + static_cast<size_t>(sub);
  }
  static int64_t UpperEdgeNs(size_t index) {
    const int64_t m = static_cast<int64_t>(index) / kSub;
    const int64_t sub = static_cast<int64_t>(index) % kSub;
    const int64_t units = m == 0 ? sub : ((sub + 1) << m) - 1;
    return std::max<int64_t>(units, 1) * kUnitNs;
  }

  std::array<uint64_t, static_cast<size_t>(kMagnitudes) * kSub> counts_{};
  uint64_t total_ = 0;
  int64_t max_ns_ = 0;
  int64_t min_ns_ = 0;
  int64_t sum_ns_ = 0;
};

}  // namespace dvrouter::bench
