// The admin API the console uses, against a running dvrouter (docs/operations.md, "Admin API"
// and "Console"): the embedded page and its headers, the event search, an event's record, the
// stats, multi-id DLQ replay, and a clear 400 for each malformed parameter.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>

#include "tests/support/http_client.h"
#include "tests/support/router_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::HttpClient;
using testing::HttpReply;

// Change k of row r: an update of msdyn_agentstatus.
std::string Event(int r, int k) {
  static const std::string base = testing::Fixture("update-msdyn_agentstatus-postop-async.json");
  char op[40], row[40];
  std::snprintf(op, sizeof(op), "%08x-2222-4000-8000-%012d", r, k);
  std::snprintf(row, sizeof(row), "3d1feef9-604d-ef11-bfe3-%012d", r);
  return testing::ReplaceAll(testing::ReplaceAll(base, "1a14c3ec-9c50-ef11-bfe3-00224802dbb1", op),
                             "3d1feef9-604d-ef11-bfe3-6045bd03d9d8", row);
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class AdminApiProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::WriteFileOrDie(log_, "");
    testing::WriteFileOrDie(tmp_.path() + "/router.yaml",
                            "ingress:\n"
                            "  auth: {mode: none}\n"
                            "journal:\n"
                            "  partitions: 4\n"
                            "adapters:\n"
                            "  lake:\n"
                            "    type: lake\n"
                            "    roll_interval: 20ms\n"
                            "routes:\n"
                            "  - adapters: [lake]\n");
    router_ = std::make_unique<testing::RouterProcess>(tmp_, log_);
    ASSERT_TRUE(router_->WaitReady(1)) << testing::ReadFileOrDie(log_);
  }
  void TearDown() override {
    router_->child().Kill(SIGTERM);
    router_->child().Wait();
  }
  HttpReply Admin(const std::string& method, const std::string& target) {
    return HttpClient(router_->admin_port).Request(method, target);
  }

  testing::TempDir tmp_;
  std::string log_ = tmp_.path() + "/router.log";
  std::unique_ptr<testing::RouterProcess> router_;
};

TEST_F(AdminApiProcess, TheConsoleIsServedFromTheBinaryWithAStrictPolicy) {
  HttpReply r = Admin("GET", "/ui");
  EXPECT_EQ(r.status, 308);
  EXPECT_EQ(r.headers["location"], "/ui/");
  r = Admin("GET", "/ui/");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"], "text/html; charset=utf-8");
  EXPECT_NE(r.headers["content-security-policy"].find("script-src 'self'"), std::string::npos);
  EXPECT_NE(r.headers["content-security-policy"].find("frame-ancestors 'none'"), std::string::npos);
  EXPECT_EQ(r.headers["x-content-type-options"], "nosniff");
  // Every file the page names is there, with its type.
  EXPECT_NE(r.body.find("src=\"console.js\""), std::string::npos);
  EXPECT_NE(r.body.find("href=\"console.css\""), std::string::npos);
  r = Admin("GET", "/ui/console.js");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.headers["content-type"], "text/javascript; charset=utf-8");
  EXPECT_NE(r.body.find("/events"), std::string::npos);
  EXPECT_EQ(Admin("GET", "/ui/console.css").headers["content-type"], "text/css; charset=utf-8");
  EXPECT_EQ(Admin("GET", "/ui/index.html").status, 200);
  EXPECT_EQ(Admin("GET", "/ui/nope.js").status, 404);
  EXPECT_EQ(Admin("GET", "/ui/../metrics").status, 404);
  EXPECT_EQ(Admin("POST", "/ui/").status, 405);
}

TEST_F(AdminApiProcess, EventsAreFoundByRowAndShowTheirRecord) {
  HttpClient ingress(router_->port);
  std::string newest;
  for (int k = 0; k < 3; ++k) {
    for (int r = 0; r < 5; ++r) {
      HttpReply reply = ingress.Post("/webhooks/dataverse", Event(r, k));
      ASSERT_EQ(reply.status, 200) << reply.body;
      if (r == 2) newest = testing::JsonStringField(reply.body, "event_id");
    }
  }
  const std::string row = "3d1feef9-604d-ef11-bfe3-000000000002";
  std::string found;
  ASSERT_TRUE(testing::WaitFor([&] {
    found = Admin("GET", "/events?row_id=" + row + "&limit=2").body;
    return found.find("\"completed\"") != std::string::npos;
  })) << found;
  // Newest first, two of three, and where the next page starts.
  EXPECT_EQ(found.find("\"event_id\":\"" + newest + "\""), found.find("\"event_id\"")) << found;
  EXPECT_EQ(Count(found, "\"event_id\""), 2u) << found;
  EXPECT_NE(found.find("\"next_before\":"), std::string::npos);
  EXPECT_EQ(found.find("\"next_before\":null"), std::string::npos) << found;
  const std::string all = Admin("GET", "/events?table=msdyn_agentstatus&message=update").body;
  EXPECT_EQ(Count(all, "\"event_id\""), 15u) << all;
  EXPECT_NE(all.find("\"next_before\":null"), std::string::npos);
  EXPECT_EQ(Count(Admin("GET", "/events?table=account").body, "\"event_id\""), 0u);
  EXPECT_EQ(Count(Admin("GET", "/events?adapter=lake&limit=200").body, "\"event_id\""), 15u);
  EXPECT_EQ(Admin("GET", "/events?adapter=nope").status, 404);

  const std::string event = Admin("GET", "/events/" + newest + "?record=1").body;
  EXPECT_NE(event.find("\"record\":{\"header\":{\"message\":\"Update\""), std::string::npos)
      << event;
  EXPECT_NE(event.find("\"steps\":["), std::string::npos) << event;
  EXPECT_NE(event.find(row), std::string::npos);
  EXPECT_NE(event.find("\"body\":\"{"), std::string::npos) << "the body as received";
  EXPECT_EQ(Admin("GET", "/events/" + newest).body.find("\"record\""), std::string::npos)
      << "the record only when asked for";

  const std::string stats = Admin("GET", "/stats").body;
  EXPECT_NE(stats.find("{\"labels\":{\"outcome\":\"accepted\"},\"value\":15}"), std::string::npos)
      << stats;
  EXPECT_NE(stats.find("\"dvrouter_delivery_lag_events\""), std::string::npos);
}

TEST_F(AdminApiProcess, MalformedParametersAreAnswered400) {
  for (const char* target :
       {"/events?limit=0", "/events?limit=201", "/events?limit=x", "/events?state=done",
        "/events?before=-1", "/dlq?since=yesterday", "/dlq?limit=many"}) {
    HttpReply r = Admin("GET", target);
    EXPECT_EQ(r.status, 400) << target << ": " << r.body;
    EXPECT_NE(r.body.find("\"message\""), std::string::npos) << target;
  }
  for (const char* target : {"/dlq/replay?ids=", "/dlq/replay?ids=1,,2", "/dlq/replay?ids=a",
                             "/dlq/replay?ids=1&id=2", "/dlq/replay?ids=1,2,"}) {
    HttpReply r = Admin("POST", target);
    EXPECT_EQ(r.status, 400) << target << ": " << r.body;
  }
  for (const char* target :
       {"/replay?adapter=lake", "/replay?adapter=lake&from=3", "/replay?adapter=lake&from=0&to=5",
        "/replay?adapter=lake&from_time=yesterday&to_time=1", "/replay?adapter=lake&to_time=x",
        "/replay?adapter=lake&from_time=1",
        "/replay?adapter=lake&from_time=1&to_time=99999999999999999",
        "/replay?from_time=1&to_time=2"}) {
    HttpReply r = Admin("POST", target);
    EXPECT_EQ(r.status, 400) << target << ": " << r.body;
  }
  // A window given as ISO 8601 or ms: from the oldest retained event, cut to the newest.
  HttpReply window = Admin("POST", "/replay?adapter=lake&from_time=2026-01-01T00:00:00Z&to_time=1");
  EXPECT_EQ(window.status, 400) << "to before from: " << window.body;
  std::string many = "/dlq/replay?ids=1";
  for (int i = 2; i <= 1001; ++i) many += "," + std::to_string(i);
  EXPECT_EQ(Admin("POST", many).status, 400) << "at most 1000 ids";
  // Ids that are not (or no longer) in the DLQ are named, the others replayed.
  HttpReply r = Admin("POST", "/dlq/replay?ids=7,9");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, R"({"replayed":0,"not_replayed":[7,9]})");
  EXPECT_EQ(Admin("GET", "/events?state=failed&limit=200").status, 200);
}

}  // namespace
}  // namespace dvrouter
