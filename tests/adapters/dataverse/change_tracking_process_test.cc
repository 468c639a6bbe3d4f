// Change tracking catch-up end to end (docs/reconciliation.md, "Change tracking"): the Dataverse
// simulator tracks account (whose steps post webhooks) and contact (no step: its changes never
// reach the router as webhooks). A real dvrouter reconciles on demand: the first sync only takes
// the delta link, later runs journal the contact changes and deletions it never got and count the
// account changes its journal already holds, including those failed-jobs reconciliation
// recovered in the same run. Malformed deltas fail only their run, an expired token resyncs the
// table, and a change younger than `settle` waits a run.
#include "router/common/clock.h"
#include "tests/adapters/dataverse/reconcile_fixture.h"

namespace dvrouter {
namespace {

using testing::Account;
using testing::AccountColumns;
using testing::Change;
using testing::HttpClient;

std::string Contact(int n) { return testing::Guid(0xc0, n); }
std::string ContactColumns(int n, int version) {
  return R"({"name":"contact )" + std::to_string(n) + " v" + std::to_string(version) +
         R"(","revenue":)" + std::to_string(100 * n + version) + "}";
}

// The number after "key": in a run's summary (-1 when absent).
int64_t Field(const std::string& summary, const std::string& key) {
  const size_t at = summary.find("\"" + key + "\":");
  if (at == std::string::npos) return -1;
  return std::strtoll(summary.c_str() + at + key.size() + 3, nullptr, 10);
}

class ChangeTrackingProcess : public testing::ReconcileFixture {
 protected:
  std::vector<std::string> SimArgs() const override {
    std::vector<std::string> args = ReconcileFixture::SimArgs();
    for (const char* a :
         {"--tables", "contact", "--change-tracking", "account", "--change-tracking", "contact"}) {
      args.push_back(a);
    }
    return args;
  }
  std::string ChangeTrackingSection() const override {
    return "  change_tracking:\n"
           "    tables: [{table: account}, {table: contact, columns: [name, revenue]}]\n"
           "    settle: 0s\n";
  }

  // The mirror's contacts equal the simulator's for every contact it holds, and it holds
  // `count` of them.
  bool ContactsMirrored(size_t count) {
    const std::map<std::string, std::string> want = Expected("contact", "contacts");
    const std::map<std::string, std::string> got = Mirrored("contact");
    if (got.size() != count) return false;
    for (const auto& [id, row] : got) {
      auto it = want.find(id);
      if (it == want.end() || it->second != row) return false;
    }
    return true;
  }
};

TEST_F(ChangeTrackingProcess, ChangesWithoutAWebhookAreJournaledAndSeenOnesAreNot) {
  std::vector<std::string> changes;
  for (int n = 0; n < 20; ++n)
    changes.push_back(Change("create", "account", Account(n), AccountColumns(n, 0)));
  for (int n = 0; n < 10; ++n)
    changes.push_back(Change("create", "contact", Contact(n), ContactColumns(n, 0)));
  EXPECT_NE(Changes(changes).find("\"failed_jobs\":0"), std::string::npos);

  // The first sync (initial: from_now) takes the delta links and journals nothing.
  auto [rc, first] = Reconcile();
  ASSERT_EQ(rc, 0) << first << testing::ReadFileOrDie(log_);
  EXPECT_EQ(Field(first, "tables"), 2) << first;
  EXPECT_EQ(Field(first, "full_syncs"), 2) << first;
  EXPECT_EQ(Field(first, "changes_found"), 30) << first;
  EXPECT_EQ(Field(first, "tracked_journaled"), 0) << first;

  // Accounts change through their webhooks; contacts only in Dataverse.
  changes.clear();
  for (int n = 0; n < 10; ++n)
    changes.push_back(Change("update", "account", Account(n), AccountColumns(n, 1)));
  for (int n = 0; n < 5; ++n)
    changes.push_back(Change("update", "contact", Contact(n), ContactColumns(n, 1)));
  for (int n = 10; n < 13; ++n)
    changes.push_back(Change("create", "contact", Contact(n), ContactColumns(n, 0)));
  changes.push_back(Change("delete", "contact", Contact(8)));
  changes.push_back(Change("delete", "contact", Contact(9)));
  EXPECT_NE(Changes(changes).find("\"failed_jobs\":0"), std::string::npos);
  auto [rc2, second] = Reconcile();
  ASSERT_EQ(rc2, 0) << second << testing::ReadFileOrDie(log_);
  EXPECT_EQ(Field(second, "changes_found"), 20) << second;
  EXPECT_EQ(Field(second, "tracked_seen"), 10) << "the accounts' webhooks: " << second;
  EXPECT_EQ(Field(second, "tracked_journaled"), 10) << second;
  EXPECT_EQ(Field(second, "tracked_deletes"), 2) << second;
  EXPECT_NE(second.find("reconcile: change tracking of contact: 10 changes, 10 journaled, 0 "
                        "already seen, 0 own, 0 settling\n"),
            std::string::npos)
      << "the progress line, on stderr: " << second;
  // The changed contacts reach the mirror: 5 updated, 3 created and the 2 deleted ones.
  ASSERT_TRUE(testing::WaitFor([&] { return ContactsMirrored(10); }))
      << ::testing::PrintToString(Mirrored("contact"));
  EXPECT_EQ(Mirrored("contact")[Contact(8)], "deleted");

  // Nothing changed: nothing found.
  auto [rc3, third] = Reconcile();
  EXPECT_EQ(rc3, 0) << third;
  EXPECT_EQ(Field(third, "changes_found"), 0) << third;

  const std::string metrics = HttpClient(router_->admin_port).Get("/metrics").body;
  EXPECT_NE(metrics.find("dvrouter_reconcile_events_total{outcome=\"journaled\",source=\"change_"
                         "tracking\"} 10"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("dvrouter_reconcile_full_syncs_total{reason=\"initial\"} 2"),
            std::string::npos)
      << metrics;

  // Webhooks lost while the router is down: failed-jobs reconciliation journals them, and
  // change tracking, in the same run, finds those rows already journaled.
  Kill(SIGKILL);
  changes.clear();
  for (int n = 0; n < 6; ++n)
    changes.push_back(Change("update", "account", Account(n), AccountColumns(n, 2)));
  EXPECT_NE(Changes(changes).find("\"failed_jobs\":6"), std::string::npos);
  Start();
  auto [rc4, fourth] = Reconcile();
  ASSERT_EQ(rc4, 0) << fourth;
  EXPECT_EQ(Field(fourth, "failed_jobs_found"), 6) << fourth;
  EXPECT_EQ(Field(fourth, "events_journaled"), 6) << "the failed jobs' only: " << fourth;
  EXPECT_EQ(Field(fourth, "tracked_seen"), 6) << fourth;
  EXPECT_EQ(Field(fourth, "tracked_journaled"), 0) << fourth;
  std::map<std::string, std::string> want = Expected();
  ASSERT_TRUE(testing::WaitFor([&] { return Mirrored() == want; }))
      << ::testing::PrintToString(Mirrored());

  // --since reads the failed jobs again (duplicates of their events); --table limits the run.
  auto [rc5, again] = Reconcile({"--since", "1h", "--table", "account"});
  EXPECT_EQ(rc5, 0) << again;
  EXPECT_EQ(Field(again, "tables"), 1) << again;
  EXPECT_EQ(Field(again, "failed_jobs_found"), 6) << again;
  EXPECT_EQ(Field(again, "already_seen"), 6) << again;
  EXPECT_EQ(Field(again, "events_journaled"), 0) << again;

  // A run longer than --timeout: the command gives up waiting (exit 1), the run goes on.
  dataverse_->Control("throttle=1&retry_after=3");
  auto [rc6, late] = Reconcile({"--timeout", "1"});
  EXPECT_EQ(rc6, 1) << late;
  EXPECT_NE(late.find("still running after --timeout 1s"), std::string::npos) << late;
  EXPECT_TRUE(testing::WaitFor([&] {
    return HttpClient(router_->admin_port).Get("/reconcile").body.find("\"running\":false") !=
           std::string::npos;
  }));
}

TEST_F(ChangeTrackingProcess, MalformedDeltasFailTheirRunAndAnExpiredTokenResyncs) {
  std::vector<std::string> changes;
  for (int n = 0; n < 6; ++n)
    changes.push_back(Change("create", "contact", Contact(n), ContactColumns(n, 0)));
  Changes(changes);
  auto [rc, first] = Reconcile({"--table", "contact"});
  ASSERT_EQ(rc, 0) << first;
  EXPECT_EQ(Field(first, "tables"), 1) << first;

  changes.clear();
  for (int n = 0; n < 3; ++n)
    changes.push_back(Change("update", "contact", Contact(n), ContactColumns(n, 1)));
  Changes(changes);
  for (const char* kind : {"not_json", "truncated", "status_500", "missing_field", "bad_guid"}) {
    SCOPED_TRACE(kind);
    dataverse_->Control(std::string("malform=delta:") + kind + "&count=1");
    auto [bad_rc, bad] = Reconcile({"--table", "contact"});
    EXPECT_EQ(bad_rc, 1) << bad;
    EXPECT_EQ(Field(bad, "tracked_journaled"), 0) << bad;
  }
  // The delta link did not move: the next run gets the same changes.
  auto [rc2, second] = Reconcile({"--table", "contact"});
  ASSERT_EQ(rc2, 0) << second;
  EXPECT_EQ(Field(second, "tracked_journaled"), 3) << second;
  ASSERT_TRUE(testing::WaitFor([&] { return ContactsMirrored(3); }))
      << ::testing::PrintToString(Mirrored("contact"));

  // Dataverse forgets the token: the table is synced again in the same run, and only the rows
  // the journal does not hold as new are journaled (the three never changed).
  dataverse_->Control("expire_delta_tokens=1");
  auto [rc3, third] = Reconcile({"--table", "contact"});
  ASSERT_EQ(rc3, 0) << third << testing::ReadFileOrDie(log_);
  EXPECT_EQ(Field(third, "expired_tokens"), 1) << third;
  EXPECT_EQ(Field(third, "full_syncs"), 1) << third;
  EXPECT_EQ(Field(third, "tracked_seen"), 3) << third;
  EXPECT_EQ(Field(third, "tracked_journaled"), 3) << third;
  ASSERT_TRUE(testing::WaitFor([&] { return ContactsMirrored(6); }))
      << ::testing::PrintToString(Mirrored("contact"));
  EXPECT_EQ(Mirrored("contact"), Expected("contact", "contacts"));
  const std::string metrics = HttpClient(router_->admin_port).Get("/metrics").body;
  EXPECT_NE(metrics.find("dvrouter_reconcile_full_syncs_total{reason=\"expired\"} 1"),
            std::string::npos)
      << metrics;
}

// A change younger than settle waits a run for its webhook; once older it is journaled.
class ChangeTrackingSettle : public ChangeTrackingProcess {
 protected:
  // contact first: its failure comes before account's state is saved.
  std::string ChangeTrackingSection() const override {
    return "  change_tracking:\n"
           "    tables: [{table: contact, columns: [name, revenue]}, {table: account}]\n"
           "    settle: 2s\n";
  }
};

TEST_F(ChangeTrackingSettle, AYoungUnseenChangeWaitsForTheNextRun) {
  Changes({Change("create", "contact", Contact(0), ContactColumns(0, 0))});
  auto [rc, first] = Reconcile({"--table", "contact"});
  ASSERT_EQ(rc, 0) << first;
  // A row created after the second the read began is a lost Create (docs/reconciliation.md).
  const int64_t read_second = WallNowMs() / 1000;
  ASSERT_TRUE(testing::WaitFor([&] { return WallNowMs() / 1000 > read_second; }));
  Changes({Change("update", "contact", Contact(0), ContactColumns(0, 1)),
           Change("create", "contact", Contact(1), ContactColumns(1, 0)),
           Change("delete", "contact", Contact(1)),
           Change("create", "contact", Contact(2), ContactColumns(2, 0))});
  auto [rc2, second] = Reconcile({"--table", "contact"});
  ASSERT_EQ(rc2, 0) << second;
  EXPECT_EQ(Field(second, "settling"), 3) << "the update, the deletion, the new row: " << second;
  EXPECT_EQ(Field(second, "tracked_journaled"), 0) << second;
  // A run in which contact fails and account is saved keeps the settling changes intact.
  dataverse_->Control("malform=delta:not_json&count=1");
  auto [rc3, failed] = Reconcile();
  EXPECT_EQ(rc3, 1) << failed;
  EXPECT_EQ(Field(failed, "tables"), 2) << failed;
  // Later runs journal them once settle has passed (a deletion after one run).
  int64_t journaled = 0;
  ASSERT_TRUE(testing::WaitFor([&] {
    auto [r, s] = Reconcile({"--table", "contact"});
    journaled += std::max<int64_t>(Field(s, "tracked_journaled"), 0);
    return r == 0 && journaled == 3;
  })) << journaled;
  ASSERT_TRUE(testing::WaitFor([&] { return ContactsMirrored(3); }))
      << ::testing::PrintToString(Mirrored("contact"));
  EXPECT_EQ(Mirrored("contact")[Contact(1)], "deleted");
  // The row that settled is still a Create when it is journaled a run later; the updated one an
  // Update.
  HttpClient admin(router_->admin_port);
  EXPECT_NE(admin.Get("/events?message=Create&row_id=" + Contact(2)).body.find(Contact(2)),
            std::string::npos);
  EXPECT_EQ(admin.Get("/events?message=Create&row_id=" + Contact(0)).body.find(Contact(0)),
            std::string::npos);
}

}  // namespace
}  // namespace dvrouter
