// Reconciliation into a PostgreSQL mirror (docs/reconciliation.md): 300 changes over the
// accounts (updates, deletions, new rows) and salesorders made while the router is killed, so
// every webhook fails at the source. One run later PostgreSQL holds the simulator's rows column
// for column, deleted ones marked, and the ERP got each order once: recovered from the failed
// system jobs, or, with failed jobs off, from change tracking alone, where an expired token's
// full resync ends in the same state and a second run journals nothing.
#include "router/common/clock.h"
#include "tests/adapters/dataverse/reconcile_fixture.h"
#include "tests/support/postgres_server.h"

namespace dvrouter {
namespace {

using testing::Account;
using testing::AccountColumns;
using testing::Change;
using testing::Order;

int64_t Field(const std::string& summary, const std::string& key) {
  const size_t at = summary.find("\"" + key + "\":");
  if (at == std::string::npos) return -1;
  return std::strtoll(summary.c_str() + at + key.size() + 3, nullptr, 10);
}

class ReconcilePostgres : public testing::ReconcileFixture {
 protected:
  void SetUp() override {
    std::string why;
    if (!testing::PostgresServer::Available(&why)) GTEST_SKIP() << why;
    pg_ = std::make_unique<testing::PostgresServer>();
    ASSERT_TRUE(pg_->ok()) << pg_->error();
    ReconcileFixture::SetUp();
  }
  std::string ExtraAdapters() const override {
    return pg_->AdapterYaml("pg",
                            "    table_prefix: crm_\n"
                            "    batch: {linger: 5ms}\n");
  }
  std::string Mirrors() const override { return "mirror, pg"; }

  // id|name|revenue|0 per live account, "deleted" per deleted one, as PostgreSQL has them.
  std::map<std::string, std::string> InPostgres() {
    std::map<std::string, std::string> got;
    const auto r = pg_->Query(
        "SELECT id::text, attributes->>'name', (attributes->>'revenue')::bigint, deleted "
        "FROM crm_account");
    if (!r.ok) return got;
    for (const auto& row : r.rows) {
      if (row.size() != 4 || !row[0] || !row[3]) continue;
      got[*row[0]] = *row[3] == "t"
                         ? "deleted"
                         : (row[1] ? *row[1] : "NULL") + "|" + (row[2] ? *row[2] : "NULL") + "|0";
    }
    return got;
  }

  // 100 accounts and 10 orders while the router runs; then, with the router killed, 300
  // changes whose webhooks all fail: 200 updates, 30 deletions, 60 new accounts, 10 orders.
  void LoseThreeHundredChanges() {
    std::vector<std::string> changes;
    for (int n = 0; n < 100; ++n)
      changes.push_back(Change("create", "account", Account(n), AccountColumns(n, 0)));
    for (int n = 0; n < 10; ++n)
      changes.push_back(Change("create", "salesorder", Order(n), R"({"name":"order"})"));
    ASSERT_NE(Changes(changes).find("\"failed_jobs\":0"), std::string::npos);
    ASSERT_TRUE(testing::WaitFor([&] { return InPostgres().size() == 100; }));
    BeforeTheOutage();
    Kill(SIGKILL);
    changes.clear();
    for (int v = 1; v <= 2; ++v) {
      for (int n = 0; n < 100; ++n)
        changes.push_back(Change("update", "account", Account(n), AccountColumns(n, v)));
    }
    for (int n = 0; n < 30; ++n) changes.push_back(Change("delete", "account", Account(n * 3)));
    for (int n = 100; n < 160; ++n)
      changes.push_back(Change("create", "account", Account(n), AccountColumns(n, 0)));
    for (int n = 10; n < 20; ++n)
      changes.push_back(Change("create", "salesorder", Order(n), R"({"name":"late order"})"));
    ASSERT_EQ(changes.size(), 300u);
    ASSERT_NE(Changes(changes).find("\"failed_jobs\":300"), std::string::npos);
    Start();
  }
  virtual void BeforeTheOutage() {}

  // Orders whose ERP status the router wrote back: the rows its application user changed last.
  int WrittenBackOrders() {
    const std::string rows = dataverse_->Get("/_rows?set=salesorders");
    const std::string mark = R"("_modifiedby_value":"9f3c1d2e-0000-4000-8000-00000000a001")";
    int n = 0;
    for (size_t at = rows.find(mark); at != std::string::npos; at = rows.find(mark, at + 1)) ++n;
    return n;
  }

  void ExpectConverged() {
    const std::map<std::string, std::string> want = Expected();
    ASSERT_EQ(want.size(), 160u);
    ASSERT_TRUE(testing::WaitFor([&] { return InPostgres() == want; }))
        << ::testing::PrintToString(InPostgres());
    EXPECT_TRUE(testing::WaitFor([&] { return Mirrored() == want; }));
  }

  std::unique_ptr<testing::PostgresServer> pg_;
};

TEST_F(ReconcilePostgres, ThreeHundredLostChangesEndInPostgresColumnForColumn) {
  LoseThreeHundredChanges();
  auto [rc, summary] = Reconcile();
  ASSERT_EQ(rc, 0) << summary << testing::ReadFileOrDie(log_);
  EXPECT_EQ(Field(summary, "failed_jobs_found"), 300) << summary;
  EXPECT_EQ(Field(summary, "events_journaled"), 300) << summary;
  ExpectConverged();
  ASSERT_TRUE(testing::WaitFor([&] { return erp_->Stat("created") == 20; })) << erp_->Stats();
  auto [rc2, again] = Reconcile();
  EXPECT_EQ(rc2, 0) << again;
  EXPECT_EQ(Field(again, "events_journaled"), 0) << again;
  EXPECT_EQ(erp_->Stat("created"), 20);
}

// The same outage with failed jobs off: change tracking recovers it alone.
class ReconcilePostgresTracking : public ReconcilePostgres {
 protected:
  std::string FailedJobsSection() const override { return "  failed_jobs: {enabled: false}\n"; }
  std::string ChangeTrackingSection() const override {
    return "  change_tracking:\n"
           "    tables: [{table: account}, {table: salesorder}]\n"
           "    settle: 0s\n";
  }
  std::vector<std::string> SimArgs() const override {
    std::vector<std::string> args = ReconcilePostgres::SimArgs();
    for (const char* a : {"--change-tracking", "account", "--change-tracking", "salesorder"}) {
      args.push_back(a);
    }
    return args;
  }
  // The first sync (from_now) before the outage: its delta links are where recovery starts.
  void BeforeTheOutage() override {
    ASSERT_TRUE(testing::WaitFor([&] { return WrittenBackOrders() == 10; }));
    auto [rc, first] = Reconcile();
    ASSERT_EQ(rc, 0) << first;
    ASSERT_EQ(Field(first, "full_syncs"), 2) << first;
    ASSERT_EQ(Field(first, "tracked_journaled"), 0) << first;
    // Rows created in the second the read began count as existing (docs/reconciliation.md,
    // "Change tracking"): the outage's new orders come after it.
    const int64_t read_second = WallNowMs() / 1000;
    ASSERT_TRUE(testing::WaitFor([&] { return WallNowMs() / 1000 > read_second; }));
  }
};

TEST_F(ReconcilePostgresTracking, ChangeTrackingAloneRecoversThemAndAResyncChangesNothing) {
  LoseThreeHundredChanges();
  auto [rc, summary] = Reconcile();
  ASSERT_EQ(rc, 0) << summary << testing::ReadFileOrDie(log_);
  EXPECT_EQ(Field(summary, "failed_jobs_found"), 0) << summary;
  // One event per changed row (its latest state) and per deletion: 70 updated accounts, 30
  // deleted, 60 new, 10 new orders.
  EXPECT_EQ(Field(summary, "tracked_journaled"), 170) << summary;
  EXPECT_EQ(Field(summary, "tracked_deletes"), 30) << summary;
  ExpectConverged();
  ASSERT_TRUE(testing::WaitFor([&] { return erp_->Stat("created") == 20; })) << erp_->Stats();

  // An expired token: the whole tables again, compared with the whole journal: nothing new.
  // The orders were changed last by the write-back of their ERP status.
  ASSERT_TRUE(testing::WaitFor([&] { return WrittenBackOrders() == 20; }));
  dataverse_->Control("expire_delta_tokens=1");
  auto [rc2, resync] = Reconcile();
  ASSERT_EQ(rc2, 0) << resync;
  EXPECT_EQ(Field(resync, "expired_tokens"), 2) << resync;
  EXPECT_EQ(Field(resync, "tracked_journaled"), 0) << resync;
  // An order is seen when its write-back fell in the second of its journaled Create (modifiedon
  // decides without versions), else it is the router's own change.
  EXPECT_EQ(Field(resync, "tracked_seen") + Field(resync, "own_changes"), 150) << resync;
  EXPECT_GE(Field(resync, "tracked_seen"), 130) << resync;
  auto [rc3, again] = Reconcile();
  EXPECT_EQ(rc3, 0) << again;
  EXPECT_EQ(Field(again, "changes_found"), 0) << again;
  EXPECT_EQ(Field(again, "events_journaled"), 0) << again;
  ExpectConverged();
  EXPECT_EQ(erp_->Stat("created"), 20) << "no order twice";
}

}  // namespace
}  // namespace dvrouter
