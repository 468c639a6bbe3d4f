#include "router/partition/partition.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <map>
#include <string>

namespace dvrouter {
namespace {

TEST(Partition, IsStableAcrossCaseOfTheRowId) {
  EXPECT_EQ(PartitionOf("contact", "6D81597F-0F9F-E711-8122-000D3AA2331C", 64),
            PartitionOf("contact", "6d81597f-0f9f-e711-8122-000d3aa2331c", 64));
}

TEST(Partition, DependsOnTableAndRow) {
  const std::string row = "6d81597f-0f9f-e711-8122-000d3aa2331c";
  EXPECT_NE(RecordHash("contact", row), RecordHash("account", row));
  EXPECT_NE(RecordHash("contact", row),
            RecordHash("contact", "6d81597f-0f9f-e711-8122-000d3aa2331d"));
  // The separator keeps ("ab", "c") and ("a", "bc") apart.
  EXPECT_NE(RecordHash("ab", "c"), RecordHash("a", "bc"));
}

TEST(Partition, MatchesTheRecordedXxh3Values) {
  // XXH3-64 is specified byte for byte; these values were computed once with the xxhsum
  // reference tool over "contact\x1f<row id>" and must never change, or journals written by
  // one release would route records to different partitions in the next.
  EXPECT_EQ(RecordHash("contact", "6d81597f-0f9f-e711-8122-000d3aa2331c"), 0xf20596b5487f74e1ull);
}

TEST(Partition, SpreadsRowsOverAllPartitions) {
  std::map<uint32_t, int> counts;
  for (int i = 0; i < 64000; ++i) {
    char row[40];
    std::snprintf(row, sizeof(row), "00000000-0000-0000-0000-%012d", i);
    uint32_t p = PartitionOf("contact", row, 64);
    ASSERT_LT(p, 64u);
    counts[p]++;
  }
  ASSERT_EQ(counts.size(), 64u);
  for (const auto& [p, n] : counts) {
    EXPECT_GT(n, 800) << "partition " << p;
    EXPECT_LT(n, 1200) << "partition " << p;
  }
}

// Short keys are hashed in one call, long ones by XXH3's streaming state: both are XXH3-64 of
// "<table>\x1f<row id, lowercase>", on either side of the one-call buffer's 256 bytes.
TEST(Partition, ShortAndLongKeysHashTheSameBytes) {
  for (size_t n : {size_t{1}, size_t{36}, size_t{240}, size_t{247}, size_t{248}, size_t{249},
                   size_t{255}, size_t{256}, size_t{1000}}) {
    std::string row(n, 'Q');
    for (size_t i = 0; i < n; ++i) row[i] = static_cast<char>('A' + i % 26);
    std::string bytes = "contact\x1f";
    for (char c : row) bytes += static_cast<char>(c - 'A' + 'a');
    EXPECT_EQ(RecordHash("contact", row), XXH3_64bits(bytes.data(), bytes.size())) << n;
    EXPECT_EQ(StreamingRecordHash("contact", row), XXH3_64bits(bytes.data(), bytes.size())) << n;
  }
}

TEST(Partition, LongRowIdsAreHashedWhole) {
  std::string a(200, 'a'), b(200, 'a');
  b[150] = 'b';
  EXPECT_NE(RecordHash("t", a), RecordHash("t", b));
  std::string upper(200, 'A');
  EXPECT_EQ(RecordHash("t", a), RecordHash("t", upper));
}

}  // namespace
}  // namespace dvrouter
