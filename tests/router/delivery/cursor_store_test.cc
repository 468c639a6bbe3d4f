// The cursor file: round trips and every malformed form of it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "router/delivery/cursor_store.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using ::dvrouter::testing::DirectoryEntries;
using ::dvrouter::testing::ReadFileOrDie;
using ::dvrouter::testing::TempDir;
using ::dvrouter::testing::WriteFileOrDie;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Msg(const Status& st) { return std::string(st.message()); }

// ---------------------------------------------------------------------------------------------
// CursorStore, WriteFileAtomically, MakeDirectories

using CursorMap = std::map<std::string, std::vector<uint64_t>>;

Status LoadError(const std::string& path, const std::string& contents, uint32_t partitions) {
  WriteFileOrDie(path, contents);
  Result<CursorMap> r = FileCursorStore(path).Load(partitions);
  EXPECT_FALSE(r.ok()) << "accepted:\n" << contents;
  return r.ok() ? Status::Ok() : r.status();
}

TEST(CursorStore, MissingFileGivesAnEmptyMap) {
  TempDir dir;
  FileCursorStore store(dir.path() + "/cursors");
  Result<CursorMap> r = store.Load(8);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(store.path(), dir.path() + "/cursors");
}

TEST(CursorStore, SaveThenLoadRoundTrips) {
  TempDir dir;
  const std::string path = dir.path() + "/cursors";
  constexpr uint32_t kPartitions = 16;
  CursorMap cursors;
  for (uint32_t p = 0; p < kPartitions; ++p) {
    cursors["lake"].push_back(p * 1000 + 7);
    cursors["audit-hook_2"].push_back(p == 3 ? UINT64_MAX : p);
  }
  FileCursorStore store(path);
  ASSERT_TRUE(store.Save(cursors).ok());
  Result<CursorMap> r = store.Load(kPartitions);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, cursors);
  EXPECT_THAT(DirectoryEntries(dir.path()), ElementsAre("cursors")) << "no .tmp left behind";
  EXPECT_EQ(ReadFileOrDie(path).substr(0, 19), "dvrouter-cursors 1\n");

  // A second Save replaces the first whole.
  CursorMap fewer{{"lake", std::vector<uint64_t>(kPartitions, 99)}};
  ASSERT_TRUE(store.Save(fewer).ok());
  Result<CursorMap> again = FileCursorStore(path).Load(kPartitions);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, fewer);
  EXPECT_THAT(DirectoryEntries(dir.path()), ElementsAre("cursors"));
}

TEST(CursorStore, MissingPartitionsLoadAsZero) {
  TempDir dir;
  const std::string path = dir.path() + "/cursors";
  WriteFileOrDie(path, "dvrouter-cursors 1\nlake 2 50\n\nlake 0 10\n");
  Result<CursorMap> r = FileCursorStore(path).Load(4);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, (CursorMap{{"lake", {10, 0, 50, 0}}}));
}

TEST(CursorStore, BadMagicLineIsInvalidArgumentNamingThePath) {
  TempDir dir;
  const std::string path = dir.path() + "/cursors";
  for (const std::string& contents :
       {std::string("lake 0 5\n"), std::string("dvrouter-cursors 2\nlake 0 5\n"),
        std::string("")}) {
    Status st = LoadError(path, contents, 4);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << contents;
    EXPECT_THAT(Msg(st), HasSubstr(path)) << contents;
    EXPECT_THAT(Msg(st), HasSubstr("first line")) << contents;
  }
}

TEST(CursorStore, MalformedLinesNameThePathAndLineNumber) {
  TempDir dir;
  const std::string path = dir.path() + "/cursors";
  const std::string head = "dvrouter-cursors 1\nlake 0 1\n";  // the bad line is line 3
  const std::vector<std::string> bad_lines = {
      "lake 1\n",                          // too few fields
      "lake 1 5 6\n",                      // too many fields
      "lake\n",                            //
      "lake x 5\n",                        // partition not a number
      "lake 1 five\n",                     // cursor not a number
      "lake 1 5x\n",                       // trailing garbage
      "lake 1 1.5\n",                      //
      "lake 1 99999999999999999999999\n",  // overflows uint64
  };
  for (const std::string& line : bad_lines) {
    Status st = LoadError(path, head + line, 4);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << line;
    EXPECT_THAT(Msg(st), HasSubstr(path + ":3:")) << line;
  }
}

TEST(CursorStore, PartitionOutOfRangeIsInvalidArgument) {
  TempDir dir;
  const std::string path = dir.path() + "/cursors";
  Status st = LoadError(path, "dvrouter-cursors 1\nlake 0 1\nlake 3 1\nlake 4 1\n", 4);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(st), HasSubstr(path + ":4:"));
  EXPECT_THAT(Msg(st), HasSubstr("partition 4 is out of range (4 partitions)"));
}

// A cursor is a seq: a negative one is not a number the file can hold. Read as unsigned it
// would wrap to ~2^64 and mark every event of the partition as delivered.
TEST(CursorStore, NegativeNumbersAreRejected) {
  TempDir dir;
  const std::string path = dir.path() + "/cursors";
  Status st = LoadError(path, "dvrouter-cursors 1\nlake 0 -5\n", 4);
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(st), HasSubstr(path + ":2:"));
  Status partition = LoadError(path, "dvrouter-cursors 1\nlake -1 5\n", 4);
  EXPECT_EQ(partition.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(partition), HasSubstr(path + ":2:"));
}

TEST(CursorStore, SaveFailsWhenTheDirectoryIsMissing) {
  TempDir dir;
  FileCursorStore store(dir.path() + "/missing/cursors");
  Status st = store.Save({{"lake", {1, 2}}});
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(Msg(st), HasSubstr(dir.path() + "/missing/cursors.tmp"));
}

}  // namespace
}  // namespace dvrouter
