// dvrouter-loadgen against a real router: what it reports must match what the router journaled.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <set>
#include <sstream>

#include "router/app/app.h"
#include "router/journal/file_journal.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

double JsonNumber(const std::string& json, const std::string& key) {
  size_t at = json.find("\"" + key + "\":");
  return at == std::string::npos ? -1 : std::stod(json.substr(at + key.size() + 3));
}

// A router on free loopback ports journaling into tmp/data.
Config RouterConfig(const testing::TempDir& tmp) {
  Config c;
  c.ingress.listen = {"127.0.0.1", 0};
  c.admin.listen = {"127.0.0.1", 0};
  c.journal.data_dir = tmp.path() + "/data";
  return c;
}

TEST(Loadgen, ReportsWhatTheRouterJournaled) {
  testing::TempDir tmp;
  Config c = RouterConfig(tmp);
  c.ingress.auth.mode = AuthMode::kWebhookKey;
  c.ingress.auth.secret = "lg";
  App app(c);
  ASSERT_TRUE(app.Start().ok());
  const std::string url =
      "http://127.0.0.1:" + std::to_string(app.ingress_port()) + "/webhooks/dataverse?code=lg";
  const std::string json = tmp.path() + "/result.json";
  const std::string fixtures = DVROUTER_FIXTURES_DIR;
  testing::ChildProcess loadgen(
      DVROUTER_LOADGEN, {"--url",         url,
                         "--body",        fixtures + "/update-contact-postop-async.json",
                         "--body",        fixtures + "/create-msdyn_agentstatus-postop-sync.json",
                         "--requests",    "1500",
                         "--connections", "6",
                         "--duplicates",  "0.2",
                         "--records",     "300",
                         "--hot-share",   "0.5",
                         "--hot-records", "5",
                         "--rate",        "3000",
                         "--duration",    "30",
                         "--json",        json,
                         "--acked",       tmp.path() + "/acked"},
      tmp.path() + "/loadgen.log");
  const int status = loadgen.Wait(std::chrono::seconds(60));
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << testing::ReadFileOrDie(tmp.path() + "/loadgen.log");
  app.Shutdown();

  const std::string result = testing::ReadFileOrDie(json);
  size_t records = 0;
  std::set<std::string> rows;
  ASSERT_TRUE(FileJournal::ScanDirectory(c.journal.data_dir + "/journal", [&](const RecordView& v) {
                ++records;
                rows.insert(v.header->primary_entity_id);
                return true;
              }).ok());
  EXPECT_EQ(JsonNumber(result, "requests"), 1500);
  EXPECT_EQ(JsonNumber(result, "ok"), 1500);
  // Every duplicate the load generator sent was acknowledged as one, and nothing else.
  const double duplicates = JsonNumber(result, "duplicates");
  EXPECT_GT(duplicates, 150);  // ~20% of 1500
  EXPECT_LT(duplicates, 450);
  EXPECT_EQ(static_cast<double>(records), 1500 - duplicates);
  // --acked: one event id per 2xx answer, the journaled events' (duplicates name theirs).
  std::set<std::string> acked;
  size_t acked_lines = 0;
  std::istringstream lines(testing::ReadFileOrDie(tmp.path() + "/acked"));
  for (std::string id; std::getline(lines, id);) {
    ++acked_lines;
    acked.insert(id);
  }
  EXPECT_EQ(acked_lines, 1500u);
  EXPECT_EQ(acked.size(), records);
  EXPECT_LE(rows.size(), 300u);
  EXPECT_GT(rows.size(), 100u);
  EXPECT_NE(result.find("\"mode\":\"open\""), std::string::npos);
  EXPECT_GT(JsonNumber(result, "p99"), 0);
}

// A keep-alive connection the router closes while it is idle (its idle timeout, here 100 ms,
// shorter than the 300 ms between requests) is reconnected for the next request, not written
// into: every request is answered and none is counted as an error.
TEST(Loadgen, ReconnectsWhenTheServerClosedAnIdleConnection) {
  testing::TempDir tmp;
  Config c = RouterConfig(tmp);
  c.ingress.auth.mode = AuthMode::kNone;
  c.ingress.header_timeout_ms = 100;
  App app(c);
  ASSERT_TRUE(app.Start().ok());
  const std::string json = tmp.path() + "/result.json";
  testing::ChildProcess loadgen(
      DVROUTER_LOADGEN,
      {"--url", "http://127.0.0.1:" + std::to_string(app.ingress_port()) + "/webhooks/dataverse",
       "--body", std::string(DVROUTER_FIXTURES_DIR) + "/update-contact-postop-async.json",
       "--requests", "6", "--rate", "3.33", "--connections", "2", "--duration", "30", "--json",
       json},
      tmp.path() + "/loadgen.log");
  const int status = loadgen.Wait(std::chrono::seconds(60));
  app.Shutdown();
  const std::string log = testing::ReadFileOrDie(tmp.path() + "/loadgen.log");
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << log;
  const std::string result = testing::ReadFileOrDie(json);
  EXPECT_EQ(JsonNumber(result, "requests"), 6) << result;
  EXPECT_EQ(JsonNumber(result, "ok"), 6) << result;
  EXPECT_EQ(result.find("\"error\""), std::string::npos) << result;
}

}  // namespace
}  // namespace dvrouter
