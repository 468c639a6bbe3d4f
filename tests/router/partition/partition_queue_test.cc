// The bounded hand-off of record handles: capacity, order, and the drop mark the consumer clears.
#include "router/partition/partition_queue.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace dvrouter {
namespace {

RecordHandle Handle(uint64_t seq, uint32_t partition) {
  RecordHandle h;
  h.seq = seq;
  h.partition = partition;
  h.offset = seq * 100;
  return h;
}

TEST(PartitionQueue, BoundedAndInOrder) {
  PartitionQueue q(4);
  for (uint64_t s = 1; s <= 4; ++s) EXPECT_TRUE(q.TryPush(Handle(s, 0)));
  EXPECT_FALSE(q.TryPush(Handle(5, 0)));
  EXPECT_EQ(q.SizeApprox(), 4u);
  RecordHandle out[8];
  ASSERT_EQ(q.PopBatch(out, 8), 4u);
  for (uint64_t i = 0; i < 4; ++i) EXPECT_EQ(out[i].seq, i + 1);
  EXPECT_EQ(q.PopBatch(out, 8), 0u);
}

TEST(PartitionQueue, ClearFailsWhenMoreWereDroppedMeanwhile) {
  PartitionQueue q(1);
  EXPECT_EQ(q.DroppedUpTo(), 0u);
  q.NoteDropped(7);
  const uint64_t seen = q.DroppedUpTo();
  EXPECT_EQ(seen, 7u);
  q.NoteDropped(9);  // the producer drops again while the consumer reads the journal
  EXPECT_FALSE(q.ClearDropped(seen));
  EXPECT_EQ(q.DroppedUpTo(), 9u);
  EXPECT_TRUE(q.ClearDropped(9));
  EXPECT_EQ(q.DroppedUpTo(), 0u);
}

}  // namespace
}  // namespace dvrouter
