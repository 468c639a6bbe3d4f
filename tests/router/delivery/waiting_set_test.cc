// WaitingSet (router/delivery/waiting_set.h): marks by position must behave as a set of
// positions would (std::set, the model) through any mix of marks, unmarks and drops of the
// window's front, walked in rising order; and the walk must stop where asked.
#include "router/delivery/waiting_set.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <vector>

namespace dvrouter::delivery {
namespace {

std::vector<uint64_t> Walk(const WaitingSet& set) {
  std::vector<uint64_t> out;
  set.ForEach([&](uint64_t pos) {
    out.push_back(pos);
    return true;
  });
  return out;
}

TEST(WaitingSet, MarksUnmarksAndDropsAsASetOfPositionsWould) {
  std::mt19937_64 rng(41);
  WaitingSet set;
  std::set<uint64_t> model;
  uint64_t front = 0, back = 0;  // the window: positions [front, back)
  for (int step = 0; step < 200000; ++step) {
    const int op = static_cast<int>(rng() % 100);
    if (op < 40 || back == front) {  // a new entry at the back, waiting
      set.Insert(back);
      model.insert(back);
      ++back;
    } else if (op < 70) {  // taken into a batch, or marked again after a retry
      const uint64_t pos = front + rng() % (back - front);
      if (rng() % 2 == 0) {
        set.Erase(pos);
        model.erase(pos);
      } else {
        set.Insert(pos);
        model.insert(pos);
      }
    } else if (op < 98) {  // finished entries leave the front: a few, or a long run
      front += std::min<uint64_t>(back - front, rng() % 4 == 0 ? rng() % 300 : rng() % 3);
      set.DropBelow(front);
      model.erase(model.begin(), model.lower_bound(front));
    } else {  // every entry finished at once: the window empties, its next entries follow
      front = back;
      set.DropBelow(front);
      model.clear();
    }
    ASSERT_EQ(set.size(), model.size()) << "step " << step;
    ASSERT_EQ(set.empty(), model.empty());
    if (step % 97 == 0) {
      ASSERT_EQ(Walk(set), std::vector<uint64_t>(model.begin(), model.end())) << "step " << step;
      const uint64_t probe = front + rng() % (back - front + 1);
      ASSERT_EQ(set.Contains(probe), model.count(probe) == 1);
    }
  }
}

TEST(WaitingSet, AMarkBeforeTheFirstKeptWordIsKept) {
  WaitingSet set;
  set.Insert(1000);
  set.Insert(5);  // 15 words before the first one
  set.Insert(700);
  EXPECT_EQ(Walk(set), (std::vector<uint64_t>{5, 700, 1000}));
  set.DropBelow(600);
  EXPECT_EQ(Walk(set), (std::vector<uint64_t>{700, 1000}));
  set.Insert(650);  // into the room the drop left in front
  set.Insert(64);   // and before it
  EXPECT_EQ(Walk(set), (std::vector<uint64_t>{64, 650, 700, 1000}));
  EXPECT_EQ(set.size(), 4u);
}

TEST(WaitingSet, TheWalkStopsWhereTheCallerSays) {
  WaitingSet set;
  for (uint64_t pos = 0; pos < 300; pos += 7) set.Insert(pos);
  std::vector<uint64_t> seen;
  set.ForEach([&](uint64_t pos) {
    seen.push_back(pos);
    return seen.size() < 10;
  });
  EXPECT_EQ(seen.size(), 10u);
  EXPECT_EQ(seen.back(), 63u);
}

TEST(WaitingSet, MarkingTwiceOrUnmarkingWhatIsNotMarkedChangesNothing) {
  WaitingSet set;
  set.Insert(70);
  set.Insert(70);
  set.Erase(71);
  set.Erase(100000);
  set.Erase(3);
  EXPECT_EQ(set.size(), 1u);
  EXPECT_TRUE(set.Contains(70));
  EXPECT_FALSE(set.Contains(71));
  set.Erase(70);
  EXPECT_TRUE(set.empty());
}

}  // namespace
}  // namespace dvrouter::delivery
