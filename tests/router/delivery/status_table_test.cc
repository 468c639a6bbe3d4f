// The status table: per event and adapter, bounded, oldest evicted first.
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>

#include "router/delivery/status_table.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

// ---------------------------------------------------------------------------------------------
// StatusTable

EventKey Key(uint64_t hi, uint64_t lo = 0) { return EventKey{hi, lo}; }

TEST(StatusTable, UpdateCreatesARecordWithEveryAdapterPending) {
  StatusTable table(1000, 3);
  EXPECT_FALSE(table.Find(Key(1, 2)).has_value());
  table.Update(Key(1, 2), 77, 1, [](AdapterStatus& s) {
    s.state = EventState::kSubmitted;
    s.attempts = 1;
    s.updated_ms = 123;
  });
  std::optional<EventStatus> st = table.Find(Key(1, 2));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->seq, 77u);
  ASSERT_EQ(st->adapters.size(), 3u);
  EXPECT_EQ(st->adapters[0].state, EventState::kPending);
  EXPECT_EQ(st->adapters[0].attempts, 0u);
  EXPECT_EQ(st->adapters[1].state, EventState::kSubmitted);
  EXPECT_EQ(st->adapters[1].attempts, 1u);
  EXPECT_EQ(st->adapters[1].updated_ms, 123);
  EXPECT_EQ(st->adapters[2].state, EventState::kPending);
  EXPECT_FALSE(table.Find(Key(1, 3)).has_value()) << "lo is part of the key";
  EXPECT_FALSE(table.Find(Key(2, 2)).has_value());
}

TEST(StatusTable, FindReturnsLaterUpdates) {
  StatusTable table(1000, 2);
  table.Update(Key(5, 5), 10, 0, [](AdapterStatus& s) { s.state = EventState::kSubmitted; });
  table.Update(Key(5, 5), 999, 0, [](AdapterStatus& s) {
    s.state = EventState::kFailed;
    s.attempts = 4;
    s.last_error = "HTTP 503";
  });
  table.Update(Key(5, 5), 999, 1, [](AdapterStatus& s) {
    s.state = EventState::kCompleted;
    s.answer = "{\"ok\":true}";
  });
  std::optional<EventStatus> st = table.Find(Key(5, 5));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->seq, 10u) << "the seq is the one the record was created with";
  EXPECT_EQ(st->adapters[0].state, EventState::kFailed);
  EXPECT_EQ(st->adapters[0].attempts, 4u);
  EXPECT_EQ(st->adapters[0].last_error, "HTTP 503");
  EXPECT_EQ(st->adapters[1].state, EventState::kCompleted);
  EXPECT_EQ(st->adapters[1].answer, "{\"ok\":true}");
}

// A full table reuses the oldest record's storage for a new event: nothing of it carries over.
TEST(StatusTable, ANewEventInAFullTableStartsClean) {
  StatusTable table(16, 2);  // one record per shard
  RecordHandle where;
  where.seq = 3;
  where.length = 100;
  table.Update(
      Key(0, 1), 3, 1,
      [](AdapterStatus& s) {
        s.state = EventState::kFailed;
        s.attempts = 7;
        s.updated_ms = 55;
        s.last_error = "HTTP 500";
        s.answer = "{\"order\":1}";
      },
      &where);
  // Same shard (hi % 16 == 0): the first record goes.
  table.Update(Key(16, 2), 9, 0, [](AdapterStatus& s) { s.attempts = 1; });
  EXPECT_FALSE(table.Find(Key(0, 1)).has_value());
  std::optional<EventStatus> st = table.Find(Key(16, 2));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->seq, 9u);
  EXPECT_EQ(st->handle.length, 0u) << "the evicted event's journal position carried over";
  ASSERT_EQ(st->adapters.size(), 2u);
  EXPECT_EQ(st->adapters[0].attempts, 1u);
  EXPECT_EQ(st->adapters[1].state, EventState::kPending);
  EXPECT_EQ(st->adapters[1].attempts, 0u);
  EXPECT_EQ(st->adapters[1].updated_ms, 0);
  EXPECT_EQ(st->adapters[1].last_error, "");
  EXPECT_EQ(st->adapters[1].answer, "");
}

TEST(StatusTable, CapacityEvictsTheOldestEvents) {
  constexpr size_t kCapacity = 64;
  StatusTable table(kCapacity, 1);
  // Sequential keys spread evenly over the shards; the first 16 are the oldest.
  for (uint64_t i = 0; i < kCapacity + 16; ++i) {
    table.Update(Key(i, i), i, 0, [](AdapterStatus& s) { s.attempts = 1; });
  }
  for (uint64_t i = 0; i < 16; ++i) {
    EXPECT_FALSE(table.Find(Key(i, i)).has_value()) << "key " << i << " should be evicted";
  }
  for (uint64_t i = 16; i < kCapacity + 16; ++i) {
    std::optional<EventStatus> st = table.Find(Key(i, i));
    ASSERT_TRUE(st.has_value()) << "key " << i;
    EXPECT_EQ(st->seq, i);
  }
  // Updating an existing record does not evict anything.
  table.Update(Key(20, 20), 20, 0, [](AdapterStatus& s) { s.attempts = 2; });
  EXPECT_TRUE(table.Find(Key(36, 36)).has_value());
  EXPECT_EQ(table.Find(Key(20, 20))->adapters[0].attempts, 2u);
}

TEST(StatusTable, ZeroCapacityDisablesTheTable) {
  StatusTable table(0, 2);
  int calls = 0;
  table.Update(Key(1, 1), 1, 0, [&](AdapterStatus&) { ++calls; });
  EXPECT_EQ(calls, 0);
  EXPECT_FALSE(table.Find(Key(1, 1)).has_value());
}

TEST(StatusTable, StateNames) {
  EXPECT_EQ(EventStateName(EventState::kPending), "pending");
  EXPECT_EQ(EventStateName(EventState::kSubmitted), "submitted");
  EXPECT_EQ(EventStateName(EventState::kProcessing), "processing");
  EXPECT_EQ(EventStateName(EventState::kCompleted), "completed");
  EXPECT_EQ(EventStateName(EventState::kFailed), "failed");
}

}  // namespace
}  // namespace dvrouter
