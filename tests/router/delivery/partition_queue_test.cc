#include "router/delivery/partition_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <vector>

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

// One producer commits records of two partitions into a simulated journal and offers partition
// 0's handles to a tiny queue; one consumer drains it with a deliberately uneven pace. The
// consumer must deliver every partition-0 record exactly once, in order, whatever was dropped.
TEST(PartitionReader, DeliversEverythingOnceInOrderDespiteDrops) {
  constexpr uint64_t kRecords = 200'000;
  std::vector<RecordHandle> journal;
  journal.reserve(kRecords);
  for (uint64_t s = 1; s <= kRecords; ++s) journal.push_back(Handle(s, s % 3 == 0 ? 1 : 0));
  std::atomic<size_t> committed{0};
  std::atomic<bool> done{false};
  PartitionQueue queue(16);

  std::thread producer([&] {
    for (size_t i = 0; i < journal.size(); ++i) {
      committed.store(i + 1, std::memory_order_release);  // durable before it is offered
      if (journal[i].partition == 0) queue.Offer(journal[i]);
    }
    done.store(true, std::memory_order_release);
  });

  PartitionReader reader;
  std::vector<uint64_t> delivered;
  // Every third catch-up read, starting with the first, fails part-way, as a journal I/O error
  // would.
  uint64_t reads = 0, failed_reads = 0;
  auto read_journal = [&](uint64_t from, const auto& emit) {
    const size_t end = committed.load(std::memory_order_acquire);
    const bool fail = ++reads % 3 == 1;
    const size_t stop = fail ? std::min(end, static_cast<size_t>(from - 1 + 50)) : end;
    for (size_t i = from - 1; i < stop; ++i) {
      if (journal[i].partition == 0) emit(journal[i]);
    }
    if (fail) ++failed_reads;
    return !fail;
  };
  // Start consuming only once the producer is far past the queue's capacity, so at least one
  // overflow (and so one catch-up) is certain.
  while (committed.load(std::memory_order_acquire) < 1000) {
  }
  uint64_t spins = 0;
  for (;;) {
    const bool finished = done.load(std::memory_order_acquire);
    reader.Drain(queue, read_journal, [&](const RecordHandle& h) {
      delivered.push_back(h.seq);
      // Uneven consumer: now and then much slower than the producer, so the queue overflows.
      if (h.seq % 1000 == 0) {
        for (int k = 0; k < 20000; ++k) spins = spins + static_cast<uint64_t>(k);
      }
    });
    if (finished && queue.SizeApprox() == 0 && queue.DroppedUpTo() == 0) {
      reader.Drain(queue, read_journal, [&](const RecordHandle& h) { delivered.push_back(h.seq); });
      break;
    }
  }
  producer.join();

  std::vector<uint64_t> expected;
  for (const auto& h : journal) {
    if (h.partition == 0) expected.push_back(h.seq);
  }
  ASSERT_EQ(delivered.size(), expected.size());
  EXPECT_EQ(delivered, expected);
  EXPECT_GT(reader.catch_ups(), 0u) << "the queue never overflowed: the test proves nothing";
  EXPECT_GT(failed_reads, 0u) << "no catch-up read failed: the retry path is untested";
  EXPECT_GT(spins, 0u);
}

}  // namespace
}  // namespace dvrouter
