// The files a running router creates hold CRM data: they are the owner's only, whatever the umask
// the router was started with.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <filesystem>
#include <string>

#include "tests/support/http_client.h"
#include "tests/support/router_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

TEST(DataFilesProcess, EveryFileAndDirectoryTheRouterCreatesIsTheOwnersOnly) {
  testing::TempDir tmp;
  testing::WriteFileOrDie(tmp.path() + "/router.yaml",
                          "ingress:\n  auth: {mode: none}\n"
                          "journal:\n  partitions: 4\n"
                          "delivery:\n  cursor_flush_interval: 10ms\n"
                          "adapters:\n  lake: {type: lake, roll_interval: 10ms}\n"
                          "  mirror: {type: sqlite}\n"
                          "routes:\n  - {adapters: [lake, mirror]}\n");
  testing::WriteFileOrDie(tmp.path() + "/router.log", "");
  const mode_t old_mask = ::umask(0022);  // the usual default: files 0644 unless the router says
  testing::RouterProcess router(tmp, tmp.path() + "/router.log");
  ::umask(old_mask);
  ASSERT_TRUE(router.WaitReady(1)) << testing::ReadFileOrDie(tmp.path() + "/router.log");
  testing::HttpClient client(router.port);
  const testing::HttpReply r =
      client.Post("/webhooks/dataverse", testing::Fixture("update-contact-postop-async.json"));
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string data = tmp.path() + "/data";
  // Delivered to both, and the cursors persisted.
  ASSERT_TRUE(testing::WaitFor([&] {
    return testing::MetricSum(router.admin_port, "dvrouter_delivery_lag_events") == 0 &&
           std::filesystem::exists(data + "/sqlite/dvrouter.db") &&
           std::filesystem::exists(data + "/lake/contact");
  })) << testing::ReadFileOrDie(tmp.path() + "/router.log");
  size_t files = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(data)) {
    struct stat st {};
    ASSERT_EQ(::lstat(entry.path().c_str(), &st), 0) << entry.path();
    EXPECT_EQ(st.st_mode & 0077, 0u)
        << entry.path() << " is readable by others: mode " << std::oct << (st.st_mode & 0777);
    if (S_ISREG(st.st_mode)) ++files;
  }
  EXPECT_GE(files, 4u);  // journal segment and META, lake rows, SQLite database, cursors
  router.child().Kill(SIGTERM);
  const int status = router.child().Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

}  // namespace
}  // namespace dvrouter
