// Files replaced atomically and directories made.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "router/common/fs.h"
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

TEST(FsWriteFileAtomically, ReplacesContentsAndLeavesNoTemporary) {
  TempDir dir;
  ASSERT_TRUE(WriteFileAtomically(dir.path(), "state", "one").ok());
  EXPECT_EQ(ReadFileOrDie(dir.path() + "/state"), "one");
  ASSERT_TRUE(WriteFileAtomically(dir.path(), "state", std::string("t\0o", 3)).ok());
  EXPECT_EQ(ReadFileOrDie(dir.path() + "/state"), std::string("t\0o", 3));
  ASSERT_TRUE(WriteFileAtomically(dir.path(), "state", "").ok());
  EXPECT_EQ(ReadFileOrDie(dir.path() + "/state"), "");
  EXPECT_THAT(DirectoryEntries(dir.path()), ElementsAre("state"));
  EXPECT_TRUE(SyncDirectory(dir.path()).ok());
  EXPECT_FALSE(SyncDirectory(dir.path() + "/state").ok());
}

TEST(FsMakeDirectories, CreatesNestedDirectoriesIdempotently) {
  TempDir dir;
  const std::string deep = dir.path() + "/a/b/c";
  Status st = MakeDirectories(deep);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(std::filesystem::is_directory(deep));
  EXPECT_TRUE(MakeDirectories(deep).ok()) << "existing directories are fine";
  EXPECT_TRUE(MakeDirectories(dir.path() + "/a/b/d/").ok()) << "a trailing slash is fine";
  EXPECT_TRUE(std::filesystem::is_directory(dir.path() + "/a/b/d"));
  EXPECT_TRUE(MakeDirectories("").ok());
}

TEST(FsMakeDirectories, FailsWhenAComponentIsARegularFile) {
  TempDir dir;
  const std::string file = dir.path() + "/plain";
  WriteFileOrDie(file, "x");
  Status below = MakeDirectories(file + "/sub/dir");
  EXPECT_FALSE(below.ok());
  EXPECT_THAT(Msg(below), HasSubstr(file + "/sub"));
  EXPECT_FALSE(std::filesystem::exists(file + "/sub"));

  Status itself = MakeDirectories(file);
  EXPECT_FALSE(itself.ok());
  EXPECT_EQ(itself.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(itself), HasSubstr(file + " is not a directory"));
}

}  // namespace
}  // namespace dvrouter
