// The status table: per event and adapter, bounded, oldest evicted first.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

// A lane entry keeps where its event's status was (the slot UpdateEach returns) and passes it to
// the later updates: the same record while it holds the event, and the event's own record (not
// the one reusing the slot) once the table has given the slot to a newer event.
TEST(StatusTable, ASlotHintFindsItsEventAndNeverAnotherOne) {
  StatusTable table(16, 2);  // one record per shard
  const StatusTable::Slot slot = table.UpdateEach(
      Key(0, 1), 3, 0b11, [](AdapterStatus& s) { s.state = EventState::kPending; });
  ASSERT_NE(slot, nullptr);
  EXPECT_EQ(table.UpdateEach(
                Key(0, 1), 3, 0b01, [](AdapterStatus& s) { s.state = EventState::kSubmitted; },
                nullptr, nullptr, slot),
            slot);
  table.Update(
      Key(0, 1), 3, 1, [](AdapterStatus& s) { s.state = EventState::kCompleted; }, nullptr, slot);
  std::optional<EventStatus> st = table.Find(Key(0, 1));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->adapters[0].state, EventState::kSubmitted);
  EXPECT_EQ(st->adapters[1].state, EventState::kCompleted);
  // Same shard, table full: the slot now holds Key(16, 2).
  EXPECT_EQ(table.UpdateEach(Key(16, 2), 9, 0b01,
                             [](AdapterStatus& s) { s.state = EventState::kSubmitted; }),
            slot);
  // A late step of the evicted event with its stale hint: its own record again (evicting the
  // newer one, as without the hint), never the newer event's.
  table.Update(
      Key(0, 1), 3, 0, [](AdapterStatus& s) { s.state = EventState::kFailed; }, nullptr, slot);
  st = table.Find(Key(0, 1));
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->key, Key(0, 1));
  EXPECT_EQ(st->adapters[0].state, EventState::kFailed);
  EXPECT_EQ(st->adapters[1].state, EventState::kPending) << "a new record, started clean";
  EXPECT_FALSE(table.Find(Key(16, 2)).has_value());
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

// A step's texts live apart from it (StatusStep::texts): a found status is a copy of them, and
// the table's later steps (a failure, then the answer) leave the copy as it was.
TEST(StatusTable, AFoundStatusKeepsItsStepTextsWhileTheTableMovesOn) {
  StatusTable table(10, 1);
  auto step = [&](EventState st, int64_t ms, const std::string& error, const std::string& answer) {
    table.Update(Key(4, 4), 9, 0, [&](AdapterStatus& s) { s.Step(st, ms, 1, error, answer); });
  };
  step(EventState::kPending, 1, "", "");
  step(EventState::kPending, 2, "HTTP 503", "");
  std::optional<EventStatus> before = table.Find(Key(4, 4));
  ASSERT_TRUE(before.has_value());
  step(EventState::kCompleted, 3, "", R"({"order":7})");
  table.Update(Key(4, 4), 9, 0, [](AdapterStatus& s) { s.steps[1].texts->error = "changed"; });
  const std::vector<StatusStep>& kept = before->adapters[0].steps;
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].texts, nullptr) << "a step without texts carries none";
  EXPECT_EQ(kept[1].error(), "HTTP 503");
  EXPECT_TRUE(kept[1].answer().empty());
  std::optional<EventStatus> after = table.Find(Key(4, 4));
  ASSERT_TRUE(after.has_value());
  ASSERT_EQ(after->adapters[0].steps.size(), 3u);
  EXPECT_EQ(after->adapters[0].steps[1].error(), "changed");
  EXPECT_EQ(after->adapters[0].steps[2].answer(), R"({"order":7})");
  EXPECT_TRUE(after->adapters[0].steps[2].error().empty());
}

// The timeline keeps the first step (queued) and the latest ones, and counts what it left out.
// A retry storm's error is kept once, later steps marked the same; long texts are cut.
TEST(StatusTable, StepsKeepARepeatedErrorOnceAndCutLongTexts) {
  AdapterStatus s;
  s.Step(EventState::kPending, 1, 0, "", "");
  s.Step(EventState::kPending, 2, 1, "HTTP 503", "");
  s.Step(EventState::kSubmitted, 3, 2, "", "");
  s.Step(EventState::kPending, 4, 2, "HTTP 503", "");
  s.Step(EventState::kPending, 5, 3, "HTTP 500", "");
  s.Step(EventState::kCompleted, 6, 4, "", std::string(1000, 'a'));
  ASSERT_EQ(s.steps.size(), 6u);
  EXPECT_EQ(s.steps[1].error(), "HTTP 503");
  EXPECT_FALSE(s.steps[1].same_error);
  EXPECT_TRUE(s.steps[3].error().empty());
  EXPECT_TRUE(s.steps[3].same_error);
  EXPECT_EQ(s.steps[4].error(), "HTTP 500");
  EXPECT_FALSE(s.steps[4].same_error);
  EXPECT_EQ(s.steps[5].answer().size(), AdapterStatus::kMaxStepText);
  EXPECT_EQ(s.answer.size(), 1000u) << "the current answer is kept whole";
  EXPECT_EQ(s.last_error, "HTTP 500");
}

TEST(StatusTable, StepsKeepTheFirstAndTheLatest) {
  AdapterStatus s;
  s.Step(EventState::kPending, 1, 0, "", "");
  for (uint32_t a = 1; a <= 20; ++a) {
    s.Step(EventState::kSubmitted, 10 * a, a, "", "");
    s.Step(EventState::kPending, 10 * a + 5, 0, "HTTP 503 #" + std::to_string(a), "");
  }
  s.Step(EventState::kCompleted, 999, 0, "", "{\"order\":1}");
  ASSERT_EQ(s.steps.size(), AdapterStatus::kMaxSteps);
  EXPECT_EQ(s.steps_dropped, 42u - AdapterStatus::kMaxSteps);
  EXPECT_EQ(s.steps.front().ms, 1) << "the first step stays";
  EXPECT_EQ(s.steps.front().state, EventState::kPending);
  EXPECT_EQ(s.steps.back().state, EventState::kCompleted);
  EXPECT_EQ(s.steps.back().attempt, 20u) << "attempt 0 keeps the count";
  EXPECT_EQ(s.steps.back().answer(), "{\"order\":1}");
  EXPECT_EQ(s.steps[s.steps.size() - 2].error(), "HTTP 503 #20");
  // The current fields follow the steps; an empty error does not wipe the last one.
  EXPECT_EQ(s.state, EventState::kCompleted);
  EXPECT_EQ(s.attempts, 20u);
  EXPECT_EQ(s.last_error, "HTTP 503 #20");
  EXPECT_EQ(s.answer, "{\"order\":1}");
  EXPECT_EQ(s.updated_ms, 999);
}

EventSummaryView Summary(std::string_view table, std::string_view row, std::string_view message,
                         bool status_record = false) {
  return EventSummaryView{table, row, message, 1000, status_record};
}

void Route(StatusTable* t, uint64_t seq, const EventSummaryView& summary, uint64_t adapters = 1) {
  t->UpdateEach(
      Key(seq, ~seq), seq, adapters,
      [&](AdapterStatus& s) { s.Step(EventState::kPending, static_cast<int64_t>(seq), 0, "", ""); },
      nullptr, &summary);
}

TEST(StatusTable, SearchFindsByRowTableMessageAndStateNewestFirst) {
  StatusTable table(1000, 2);
  const std::string row_a = "aaaaaaaa-0000-0000-0000-000000000001";
  const std::string row_b = "bbbbbbbb-0000-0000-0000-000000000002";
  for (uint64_t seq = 1; seq <= 60; ++seq) {
    Route(&table, seq,
          Summary(seq % 3 == 0 ? "contact" : "account", seq % 2 == 0 ? row_a : row_b,
                  seq % 5 == 0 ? "Delete" : "Update"));
  }
  Route(&table, 61, Summary("account", row_a, "Update", /*status_record=*/true), 2);
  table.Update(Key(8, ~8ull), 8, 0,
               [](AdapterStatus& s) { s.Step(EventState::kFailed, 9, 1, "HTTP 400", ""); });

  EventQuery q;
  q.row_id = "AAAAAAAA-0000-0000-0000-000000000001";  // GUIDs compare ignoring case
  q.limit = 100;
  std::vector<EventMatch> found = table.Search(q);
  ASSERT_EQ(found.size(), 30u) << "the status record of the row is left out";
  for (size_t i = 0; i < found.size(); ++i) {
    EXPECT_EQ(found[i].status.seq, 60 - 2 * i) << "newest first";
    EXPECT_EQ(found[i].status.summary.row_id, row_a);
  }
  q.status_records = true;
  EXPECT_EQ(table.Search(q).front().status.seq, 61u);

  EventQuery page;
  page.table = "contact";
  page.message = "delete";
  page.limit = 2;
  found = table.Search(page);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].status.seq, 60u);
  EXPECT_EQ(found[1].status.seq, 45u);
  page.before_seq = 45;  // the next page
  found = table.Search(page);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].status.seq, 30u);
  EXPECT_EQ(found[1].status.seq, 15u);
  EXPECT_EQ(found[1].key, Key(15, ~15ull));
  page.before_seq = 15;
  EXPECT_TRUE(table.Search(page).empty());

  EventQuery failed;
  failed.state = EventState::kFailed;
  found = table.Search(failed);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].status.seq, 8u);
  EXPECT_EQ(found[0].status.adapters[0].last_error, "HTTP 400");

  EventQuery none;
  none.limit = 0;
  EXPECT_TRUE(table.Search(none).empty());
  EXPECT_EQ(table.size(), 61u);
}

// A record reused for a newer event (the table full) starts clean: no steps, summary or
// write-back of the evicted one.
TEST(StatusTable, AReusedRecordForgetsTheEvictedEvent) {
  StatusTable table(16, 1);  // one per shard
  Route(&table, 16, Summary("account", "aaaaaaaa-0000-0000-0000-000000000001", "Create"));
  ASSERT_TRUE(table.UpdateExisting(Key(16, ~16ull), 0, [](AdapterStatus& s) {
    s.written_back = "completed";
    s.written_back_by = 0;
  }));
  table.UpdateEach(Key(32, 0), 32, 1, [](AdapterStatus&) {});  // same shard (hi % 16)
  ASSERT_FALSE(table.Find(Key(16, ~16ull)).has_value());
  std::optional<EventStatus> st = table.Find(Key(32, 0));
  ASSERT_TRUE(st.has_value());
  EXPECT_TRUE(st->summary.table.empty());
  EXPECT_TRUE(st->summary.row_id.empty());
  EXPECT_TRUE(st->adapters[0].steps.empty());
  EXPECT_TRUE(st->adapters[0].written_back.empty());
  EXPECT_EQ(st->adapters[0].written_back_by, -1);
}

// The index (docs/architecture.md, "The status table") against a model of what each shard keeps:
// its newest events, the oldest reused first; 300 per shard, so two chunks of slots, the second
// partial. Half the keys are random; the other half come from three families whose keys differ
// only in bits the index does not hash, so they share one home and one 32-bit hash: long probe
// runs, entries that match in hash but not in key, and backward-shift removals inside runs. One
// family's home is at the end of the index, so its run wraps around to the start. After every
// new event the evicted one is gone and the new one is there; every 500 events every kept event
// is found with its seq; at the end the search lists the newest events.
TEST(StatusTable, EveryKeptEventIsFoundAndEveryReusedOneIsGoneWhileSlotsTurnOver) {
  constexpr size_t kShards = 16, kPerShard = 300, kEvents = 30'000;
  constexpr size_t kIndexSize = 1024;  // the power of two at most half full with 300 slots
  StatusTable table(kShards * kPerShard, 2);
  std::vector<std::deque<std::pair<EventKey, uint64_t>>> kept(kShards);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  const auto next = [&] {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    return x;
  };
  // Family f's keys: hi below 2^32 (the hash mixes in only its upper half), lo = lows[f].
  uint64_t lows[3] = {0xfeed0001ull, 0xfeed0002ull, 0};
  for (uint64_t lo = 0xbeef0000ull; lows[2] == 0; ++lo) {
    if ((StatusTable::IndexHash(Key(0, lo)) & (kIndexSize - 1)) >= kIndexSize - 4) lows[2] = lo;
  }
  size_t family_keys = 0;
  for (uint64_t seq = 1; seq <= kEvents; ++seq) {
    EventKey key;
    if (seq % 2 == 0) {
      const uint64_t hi = next();
      const uint64_t lo = next();
      key = Key(hi, lo);
    } else {
      const uint64_t family = next() % 3;
      key = Key((family_keys++ << 8) | (family * 5 % kShards), lows[family]);
    }
    std::deque<std::pair<EventKey, uint64_t>>& shard = kept[key.hi % kShards];
    table.UpdateEach(key, seq, 0b11, [](AdapterStatus& s) { s.attempts = 1; });
    shard.emplace_back(key, seq);
    if (shard.size() > kPerShard) {
      const EventKey gone = shard.front().first;
      shard.pop_front();
      ASSERT_FALSE(table.Find(gone).has_value()) << "event " << seq << " reused a kept slot";
    }
    std::optional<EventStatus> st = table.Find(key);
    ASSERT_TRUE(st.has_value()) << "event " << seq;
    ASSERT_EQ(st->seq, seq);
    // An update of a kept event, through the index, creates and evicts nothing.
    const auto& [older, older_seq] = shard[next() % shard.size()];
    ASSERT_TRUE(table.UpdateExisting(older, 1, [](AdapterStatus& s) { ++s.attempts; }));
    if (seq % 500 == 0) {
      size_t total = 0;
      for (const auto& events : kept) {
        total += events.size();
        for (const auto& [k, n] : events) {
          std::optional<EventStatus> found = table.Find(k);
          ASSERT_TRUE(found.has_value()) << "kept event " << n << " lost at " << seq;
          ASSERT_EQ(found->seq, n);
          ASSERT_EQ(found->key, k);
        }
      }
      ASSERT_EQ(table.size(), total);
    }
  }
  EXPECT_GT(family_keys, kEvents / 3);
  std::vector<uint64_t> newest;
  for (const auto& events : kept) {
    for (const auto& [k, n] : events) newest.push_back(n);
  }
  std::sort(newest.rbegin(), newest.rend());
  EventQuery q;
  q.limit = 40;
  const std::vector<EventMatch> listed = table.Search(q);
  ASSERT_EQ(listed.size(), q.limit);
  for (size_t i = 0; i < listed.size(); ++i) EXPECT_EQ(listed[i].status.seq, newest[i]) << i;
}

TEST(StatusTable, UpdateExistingCreatesNothing) {
  StatusTable table(100, 2);
  int calls = 0;
  EXPECT_FALSE(table.UpdateExisting(Key(3, 3), 0, [&](AdapterStatus&) { ++calls; }));
  EXPECT_EQ(calls, 0);
  EXPECT_FALSE(table.Find(Key(3, 3)).has_value());
  table.Update(Key(3, 3), 3, 0, [](AdapterStatus&) {});
  EXPECT_FALSE(table.UpdateExisting(Key(3, 3), 2, [&](AdapterStatus&) { ++calls; }))
      << "no adapter 2";
  EXPECT_TRUE(table.UpdateExisting(Key(3, 3), 1, [&](AdapterStatus&) { ++calls; }));
  EXPECT_EQ(calls, 1);
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
