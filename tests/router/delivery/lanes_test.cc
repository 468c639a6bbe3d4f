// WindowCursor (router/delivery/lanes.h): lookups in a lane's window in seq order, galloping from
// the last one, must find exactly what a binary search of the whole window finds, whatever order
// and lanes they come in.
#include "router/delivery/lanes.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace dvrouter::delivery {
namespace {

Lane LaneOf(const std::vector<uint64_t>& seqs) {
  Lane lane;
  for (uint64_t s : seqs) lane.window.emplace_back().seq = s;
  return lane;
}

TEST(WindowCursor, FindsWhatABinarySearchFindsInAnyOrderAndLane) {
  std::mt19937_64 rng(23);
  std::vector<uint64_t> a_seqs, b_seqs;
  for (uint64_t s = 1; a_seqs.size() < 5000; s += 1 + rng() % 7) a_seqs.push_back(s);
  for (uint64_t s = 3; b_seqs.size() < 40; s += 1 + rng() % 300) b_seqs.push_back(s);
  const Lane a = LaneOf(a_seqs), b = LaneOf(b_seqs), empty;
  const Lane* lanes[] = {&a, &b, &empty};
  WindowCursor cursor;
  // Runs of rising seqs (the walks it serves), with jumps back, lane changes, seqs between the
  // entries' and past the last one.
  uint64_t seq = 0;
  for (int i = 0; i < 20000; ++i) {
    const Lane& lane = *lanes[rng() % 64 == 0 ? rng() % 3 : 0];
    if (rng() % 50 == 0) {
      seq = rng() % 40000;  // anywhere, backwards too
    } else {
      seq += rng() % 3 == 0 ? rng() % 200 : rng() % 8;
    }
    ASSERT_EQ(cursor.Find(lane, seq), IndexOf(lane, seq)) << "lookup " << i << ", seq " << seq;
  }
}

TEST(WindowCursor, EachEntryOfAWalkIsFoundAtItsIndex) {
  std::vector<uint64_t> seqs;
  for (uint64_t s = 10; s < 10000; s += 3) seqs.push_back(s);
  const Lane lane = LaneOf(seqs);
  WindowCursor cursor;
  for (size_t i = 0; i < seqs.size(); i += 1 + i % 5) {
    EXPECT_EQ(cursor.Find(lane, seqs[i]), i);
  }
  EXPECT_EQ(cursor.Find(lane, 1'000'000), seqs.size());  // past the end
  EXPECT_EQ(cursor.Find(lane, 10), 0u);                  // back to the start
}

}  // namespace
}  // namespace dvrouter::delivery
