// WaitingSet: which entries of a lane's window are waiting for a batch, as a bitmap by the
// entries' positions counted from the lane's first entry ever (a lane's window only grows at the
// back and shrinks at the front: docs/architecture.md, "The delivery engine", "Design"). Marking,
// unmarking and the walk in seq order cost a bit operation per entry and allocate nothing per event
// (a tree of seqs allocated a node for each).
//
// Threads: part of a Lane, used on its delivery worker's thread only.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace dvrouter::delivery {

class WaitingSet {
 public:
  // Marks position `pos`. Marking a marked one changes nothing.
  void Insert(uint64_t pos) {
    const uint64_t w = pos / 64;
    if (words_.empty()) {
      first_word_ = w;
    } else if (w < first_word_) {  // before the first word kept: room in front
      const size_t add = static_cast<size_t>(first_word_ - w);
      if (add <= head_) {
        head_ -= add;
      } else {
        words_.insert(words_.begin(), add - head_, 0);
        head_ = 0;
      }
      first_word_ = w;
    }
    const size_t at = head_ + static_cast<size_t>(w - first_word_);
    if (at >= words_.size()) words_.resize(at + 1, 0);
    const uint64_t bit = uint64_t{1} << (pos % 64);
    if ((words_[at] & bit) == 0) {
      words_[at] |= bit;
      ++count_;
    }
  }
  // Unmarks `pos`; an unmarked one changes nothing.
  void Erase(uint64_t pos) {
    const size_t at = IndexOf(pos / 64);
    if (at == kNone) return;
    const uint64_t bit = uint64_t{1} << (pos % 64);
    if ((words_[at] & bit) != 0) {
      words_[at] &= ~bit;
      --count_;
    }
  }
  bool Contains(uint64_t pos) const {
    const size_t at = IndexOf(pos / 64);
    return at != kNone && (words_[at] >> (pos % 64) & 1) != 0;
  }
  // Positions below `pos` left the window: their marks go, and whole words of them with them.
  void DropBelow(uint64_t pos) {
    const uint64_t w = pos / 64;
    while (head_ < words_.size() && first_word_ < w) {
      count_ -= static_cast<size_t>(std::popcount(words_[head_]));
      words_[head_] = 0;  // zero again: Insert may take it back for an earlier word
      ++head_;
      ++first_word_;
    }
    if (head_ < words_.size() && first_word_ == w) {  // the first word's positions below pos
      const uint64_t below = (uint64_t{1} << (pos % 64)) - 1;
      count_ -= static_cast<size_t>(std::popcount(words_[head_] & below));
      words_[head_] &= ~below;
    }
    if (head_ == words_.size()) {
      words_.clear();
      head_ = 0;
    } else if (head_ >= 64 && head_ * 2 >= words_.size()) {
      words_.erase(words_.begin(), words_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }
  size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }

  // Calls fn(pos) for each marked position in rising order until fn returns false. fn must not
  // change the set.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (size_t i = head_; i < words_.size(); ++i) {
      uint64_t bits = words_[i];
      const uint64_t base = (first_word_ + (i - head_)) * 64;
      while (bits != 0) {
        const uint64_t pos = base + static_cast<uint64_t>(std::countr_zero(bits));
        if (!fn(pos)) return;
        bits &= bits - 1;
      }
    }
  }

 private:
  static constexpr size_t kNone = SIZE_MAX;
  size_t IndexOf(uint64_t w) const {
    if (words_.empty() || w < first_word_) return kNone;
    const size_t at = head_ + static_cast<size_t>(w - first_word_);
    return at < words_.size() ? at : kNone;
  }

  std::vector<uint64_t> words_;  // words_[head_] holds positions first_word_ * 64 and on
  size_t head_ = 0;              // words before it are dropped (and zero)
  uint64_t first_word_ = 0;
  size_t count_ = 0;
};

}  // namespace dvrouter::delivery
