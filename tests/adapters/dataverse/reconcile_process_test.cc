// Reconciliation end to end (docs/reconciliation.md): the Dataverse simulator posts every change
// to a real dvrouter the way Dataverse does (one retry on 502-504 only, a failed system job for
// an asynchronous step's lost webhook); the router is killed while changes keep coming, restarted,
// and one reconciliation later its SQLite mirror equals the simulator's rows, deleted rows are
// marked deleted, and the ERP simulator got each salesorder Create exactly once. Plus: a change
// the router did receive whose job failed anyway is not delivered twice, a second run journals
// nothing, 429 storms slow a run without failing it, and malformed answers fail a run that the
// next one recovers from.
#include "tests/adapters/dataverse/reconcile_fixture.h"

namespace dvrouter {
namespace {

using testing::Account;
using testing::Change;
using testing::HttpClient;
using testing::Order;

using Reconciliation = testing::ReconcileFixture;

TEST_F(Reconciliation, WhatAKilledRouterMissedIsRecoveredFromTheFailedJobs) {
  // 40 accounts and 10 orders while the router runs: all delivered.
  std::vector<std::string> changes;
  for (int n = 0; n < 40; ++n)
    changes.push_back(Change("create", "account", Account(n), testing::AccountColumns(n, 0)));
  for (int n = 0; n < 10; ++n) {
    changes.push_back(Change("create", "salesorder", Order(n), R"({"name":"order"})"));
  }
  EXPECT_NE(Changes(changes).find("\"failed_jobs\":0"), std::string::npos);

  // kill -9; meanwhile updates (several per row), deletes, new accounts and 10 more orders.
  Kill(SIGKILL);
  changes.clear();
  for (int v = 1; v <= 3; ++v) {
    for (int n = 0; n < 40; n += 2)
      changes.push_back(Change("update", "account", Account(n), testing::AccountColumns(n, v)));
  }
  for (int n = 1; n < 40; n += 8) changes.push_back(Change("delete", "account", Account(n)));
  for (int n = 0; n < 4; n += 2) changes.push_back(Change("delete", "account", Account(n)));
  for (int n = 40; n < 50; ++n)
    changes.push_back(Change("create", "account", Account(n), testing::AccountColumns(n, 0)));
  for (int n = 10; n < 20; ++n) {
    changes.push_back(Change("create", "salesorder", Order(n), R"({"name":"late order"})"));
  }
  const size_t lost = changes.size();
  const std::string answer = Changes(changes);
  ASSERT_NE(answer.find("\"failed_jobs\":" + std::to_string(lost)), std::string::npos) << answer;

  Start();
  const auto [rc, summary] = Reconcile();
  ASSERT_EQ(rc, 0) << summary << testing::ReadFileOrDie(log_);
  EXPECT_NE(summary.find("\"failed_jobs_found\":" + std::to_string(lost)), std::string::npos)
      << summary;
  EXPECT_NE(summary.find("\"events_journaled\":" + std::to_string(lost)), std::string::npos)
      << summary;
  EXPECT_NE(summary.find("\"errors\":0"), std::string::npos) << summary;

  // The mirror converges to the simulator's rows, deleted ones marked.
  std::map<std::string, std::string> want = Expected();
  ASSERT_EQ(want.size(), 50u);
  ASSERT_TRUE(testing::WaitFor([&] { return Mirrored() == want; }))
      << ::testing::PrintToString(Mirrored()) << "\nwant " << ::testing::PrintToString(want);
  // Every order was created at the ERP exactly once, the late ones through reconciliation (a
  // call resent after a timeout carries the same Idempotency-Key: a duplicate, not an order).
  ASSERT_TRUE(testing::WaitFor([&] { return erp_->Stat("created") == 20; })) << erp_->Stats();
  EXPECT_TRUE(testing::WaitFor([&] {
    return Mirror("SELECT count(*) FROM crm_salesorder WHERE deleted = 0") ==
           std::vector<std::string>{"20"};
  }));

  // A second run finds nothing new.
  const auto [rc2, again] = Reconcile();
  EXPECT_EQ(rc2, 0) << again;
  EXPECT_NE(again.find("\"failed_jobs_found\":0,"), std::string::npos) << again;
  EXPECT_NE(again.find("\"events_journaled\":0,"), std::string::npos) << again;

  // A webhook the router got though Dataverse saw it fail: a duplicate, not a second order.
  dataverse_->Control("ack_lost=1");
  EXPECT_NE(Changes({Change("create", "salesorder", Order(99), R"({"name":"acked"})")})
                .find("\"failed_jobs\":1"),
            std::string::npos);
  ASSERT_TRUE(testing::WaitFor([&] { return erp_->Stat("created") == 21; })) << erp_->Stats();
  const int64_t created = erp_->Stat("created");
  const auto [rc3, dup] = Reconcile();
  EXPECT_EQ(rc3, 0) << dup;
  EXPECT_NE(dup.find("\"failed_jobs_found\":1,"), std::string::npos) << dup;
  EXPECT_NE(dup.find("\"already_seen\":1,"), std::string::npos) << dup;
  EXPECT_NE(dup.find("\"events_journaled\":0,"), std::string::npos) << dup;
  EXPECT_EQ(erp_->Stat("created"), created) << "no second order";
  EXPECT_TRUE(testing::WaitFor([&] {
    return Mirror("SELECT count(*) FROM crm_salesorder WHERE deleted = 0") ==
           std::vector<std::string>{"21"};
  }));
  const std::string metrics = HttpClient(router_->admin_port).Get("/metrics").body;
  EXPECT_NE(metrics.find("dvrouter_reconcile_events_total{outcome=\"already_seen\",source=\"failed_"
                         "jobs\"} 1"),
            std::string::npos)
      << metrics;
}

TEST_F(Reconciliation, ThrottlingSlowsARunAndMalformedAnswersFailOnlyThatRun) {
  Kill(SIGKILL);
  std::vector<std::string> changes;
  for (int n = 0; n < 30; ++n)
    changes.push_back(Change("create", "account", Account(n), testing::AccountColumns(n, 0)));
  ASSERT_NE(Changes(changes).find("\"failed_jobs\":30"), std::string::npos);
  Start();

  // Malformed answers: the run reports the error and journals nothing wrong.
  for (const char* kind : {"not_json", "truncated", "status_500", "missing_field", "bad_guid"}) {
    SCOPED_TRACE(kind);
    dataverse_->Control(std::string("malform=asyncoperations:") + kind + "&count=1");
    const auto [rc, summary] = Reconcile();
    EXPECT_EQ(rc, 1) << summary;
    EXPECT_EQ(summary.find("\"errors\":0"), std::string::npos) << summary;
  }
  // A row read that fails stops the step there.
  dataverse_->Control("malform=rows:not_json&count=1");
  const auto [rc_row, row_summary] = Reconcile();
  EXPECT_EQ(rc_row, 1) << row_summary;

  // A 429 storm: waited out, the run succeeds, and everything left is recovered.
  dataverse_->Control("throttle=5&retry_after=1");
  const auto [rc, summary] = Reconcile();
  ASSERT_EQ(rc, 0) << summary << testing::ReadFileOrDie(log_);
  EXPECT_EQ(summary.find("\"throttled\":0,"), std::string::npos) << summary;
  std::map<std::string, std::string> want = Expected();
  ASSERT_EQ(want.size(), 30u);
  ASSERT_TRUE(testing::WaitFor([&] { return Mirrored() == want; }))
      << ::testing::PrintToString(Mirrored());
  // Service protection as Dataverse enforces it (a sliding window per user): the run waits each
  // Retry-After out, never asks early, and still recovers everything.
  Kill(SIGKILL);
  changes.clear();
  for (int n = 30; n < 45; ++n)
    changes.push_back(Change("create", "account", Account(n), testing::AccountColumns(n, 0)));
  ASSERT_NE(Changes(changes).find("\"failed_jobs\":15"), std::string::npos);
  Start();
  dataverse_->Control("limit=4&window_ms=1000");
  const auto [rc_limited, limited] = Reconcile();
  ASSERT_EQ(rc_limited, 0) << limited;
  EXPECT_EQ(limited.find("\"throttled\":0,"), std::string::npos) << limited;
  EXPECT_EQ(dataverse_->Stat("early_after_429"), 0) << dataverse_->Stats();
  dataverse_->Control("limit=0");
  want = Expected();
  ASSERT_EQ(want.size(), 45u);
  ASSERT_TRUE(testing::WaitFor([&] { return Mirrored() == want; }))
      << ::testing::PrintToString(Mirrored());

  // Nothing was journaled twice or wrongly: one event per failed job in all runs together.
  const std::string metrics = HttpClient(router_->admin_port).Get("/metrics").body;
  EXPECT_EQ(testing::MetricSum(router_->admin_port,
                               "dvrouter_reconcile_events_total{outcome=\"journaled\""),
            15)
      << metrics;
}

// A user's change whose webhook was lost, then a change by the router's own write-back user: the
// row's last modifier is the router, but the event is the user's (the system job says so), so
// the loop guard lets it through and the mirror gets the user's change.
TEST_F(Reconciliation, AUsersLostChangeIsNotTakenForTheRoutersEcho) {
  Changes({Change("create", "account", Account(1), testing::AccountColumns(1, 0))});
  ASSERT_TRUE(testing::WaitFor([&] { return Mirrored().size() == 1; }));
  dataverse_->Control("webhooks=0");
  Changes({Change("update", "account", Account(1), testing::AccountColumns(1, 1))});
  // The write-back's user (the fixture's loop_guard.user_ids) changes another column.
  Changes({R"({"op":"update","table":"account","id":")" + Account(1) +
           R"(","user":"9f3c1d2e-0000-4000-8000-00000000a001","columns":{"new_status":1}})"});
  dataverse_->Control("webhooks=1");
  const auto [rc, summary] = Reconcile();
  ASSERT_EQ(rc, 0) << summary;
  std::map<std::string, std::string> want = Expected();
  ASSERT_TRUE(testing::WaitFor([&] { return Mirrored() == want; }))
      << ::testing::PrintToString(Mirrored()) << " want " << ::testing::PrintToString(want);
  EXPECT_EQ(want[Account(1)], "account 1 v1|1001|0");
}

}  // namespace
}  // namespace dvrouter
