// The route table and the loop guard.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "router/config/config.h"
#include "router/decode/attributes.h"
#include "router/decode/event.h"
#include "router/delivery/routing.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

// ---------------------------------------------------------------------------------------------
// RouteTable

constexpr char kContactUpdate[] = "update-contact-postop-async.json";
constexpr char kAgentCreate[] = "create-msdyn_agentstatus-postop-sync.json";
constexpr char kContactUser[] = "75c2dd85-e89e-e711-8122-000d3aa2331c";

const std::vector<std::string> kAdapters = {"lake", "hook", "audit"};
constexpr uint64_t kLake = 1, kHook = 2, kAudit = 4;

EventHeader Header(const std::string& message, const std::string& table, int32_t stage = 40,
                   const std::string& user = kContactUser) {
  EventHeader h;
  h.message_name = message;
  h.primary_entity_name = table;
  h.stage = stage;
  h.initiating_user_id = user;
  return h;
}

RouteConfig Route(std::vector<std::string> adapters) {
  RouteConfig r;
  r.adapters = std::move(adapters);
  return r;
}

class RouteTableTest : public ::testing::Test {
 protected:
  // Match with the body of fixture `fixture`.
  RouteVerdict MatchBody(const RouteTable& table, const EventHeader& h, const std::string& fixture,
                         uint64_t* mask) {
    body_ = testing::Fixture(fixture);
    *mask = 0xdead;  // Match must overwrite it
    return table.Match(h, body_, &extractor_, mask);
  }

  AttributeExtractor extractor_{1 << 20};
  std::string body_;
};

using RouteMatch = RouteTableTest;

TEST_F(RouteMatch, OnTablesCaseInsensitively) {
  RouteConfig contacts = Route({"lake"});
  contacts.tables = {"contact"};
  RouteConfig accounts = Route({"hook"});
  accounts.tables = {"account", "lead"};
  RouteTable table({contacts, accounts}, LoopGuardConfig{}, kAdapters);
  EXPECT_FALSE(table.needs_columns());
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake);
  EXPECT_EQ(MatchBody(table, Header("Update", "Contact"), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake);
  EXPECT_EQ(MatchBody(table, Header("Update", "lead"), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kHook);
  EXPECT_EQ(MatchBody(table, Header("Create", "msdyn_agentstatus"), kAgentCreate, &mask),
            RouteVerdict::kUnrouted);
  EXPECT_EQ(mask, 0u);
  EXPECT_EQ(MatchBody(table, Header("Update", "contacts"), kContactUpdate, &mask),
            RouteVerdict::kUnrouted)
      << "no prefix matching";
}

TEST_F(RouteMatch, OnMessagesCaseInsensitively) {
  RouteConfig updates = Route({"hook"});
  updates.messages = {"update", "delete"};
  RouteTable table({updates}, LoopGuardConfig{}, kAdapters);
  uint64_t mask = 0;
  for (const char* message : {"Update", "update", "UPDATE", "Delete"}) {
    EXPECT_EQ(MatchBody(table, Header(message, "contact"), kContactUpdate, &mask),
              RouteVerdict::kRouted)
        << message;
    EXPECT_EQ(mask, kHook) << message;
  }
  EXPECT_EQ(MatchBody(table, Header("Create", "contact"), kContactUpdate, &mask),
            RouteVerdict::kUnrouted);
  EXPECT_EQ(mask, 0u);
}

TEST_F(RouteMatch, OnStages) {
  RouteConfig post = Route({"audit"});
  post.stages = {40};
  RouteConfig pre = Route({"hook"});
  pre.stages = {10, 20};
  RouteTable table({post, pre}, LoopGuardConfig{}, kAdapters);
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Update", "contact", 40), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kAudit);
  EXPECT_EQ(MatchBody(table, Header("Update", "contact", 20), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kHook);
  EXPECT_EQ(MatchBody(table, Header("Update", "contact", 30), kContactUpdate, &mask),
            RouteVerdict::kUnrouted);
}

TEST_F(RouteMatch, OnChangedColumns) {
  // update-contact's Target: firstname, contactid, fullname, yomifullname, modifiedon, ...
  RouteConfig names = Route({"lake"});
  names.changed_columns = {"emailaddress1", "FirstName"};
  RouteConfig email = Route({"hook"});
  email.changed_columns = {"emailaddress1"};
  RouteConfig id_only = Route({"audit"});
  id_only.changed_columns = {"contactid"};
  RouteTable table({names, email, id_only}, LoopGuardConfig{}, kAdapters);
  EXPECT_TRUE(table.needs_columns());
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake) << "the primary id column never counts as changed";

  // The Create's Target has msdyn_agentstatusid, statecode, ...: none of the columns above.
  EXPECT_EQ(MatchBody(table, Header("Create", "msdyn_agentstatus"), kAgentCreate, &mask),
            RouteVerdict::kUnrouted);
  EXPECT_EQ(mask, 0u);

  RouteConfig state = Route({"audit"});
  state.changed_columns = {"statecode"};
  RouteTable by_state({state}, LoopGuardConfig{}, kAdapters);
  EXPECT_EQ(MatchBody(by_state, Header("Create", "msdyn_agentstatus"), kAgentCreate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kAudit);
  EXPECT_EQ(MatchBody(by_state, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kUnrouted);
}

TEST_F(RouteMatch, UnionOfEveryMatchingRoute) {
  RouteConfig contacts = Route({"lake"});
  contacts.tables = {"contact"};
  RouteConfig updates = Route({"hook"});
  updates.messages = {"update"};
  RouteConfig pre = Route({"audit"});
  pre.stages = {20};
  RouteConfig everything = Route({"lake"});
  RouteTable table({contacts, updates, pre}, LoopGuardConfig{}, kAdapters);
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Update", "contact", 40), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake | kHook);
  EXPECT_EQ(MatchBody(table, Header("Update", "contact", 20), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake | kHook | kAudit);
  EXPECT_EQ(MatchBody(table, Header("Create", "msdyn_agentstatus", 40), kAgentCreate, &mask),
            RouteVerdict::kUnrouted);

  RouteConfig two = Route({"hook", "audit"});
  two.tables = {"msdyn_agentstatus"};
  RouteTable with_all({everything, two}, LoopGuardConfig{}, kAdapters);
  EXPECT_EQ(MatchBody(with_all, Header("Create", "msdyn_agentstatus"), kAgentCreate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake | kHook | kAudit);
  EXPECT_EQ(MatchBody(with_all, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake);
}

TEST_F(RouteMatch, NoRoutesLeavesEverythingUnrouted) {
  RouteTable table({}, LoopGuardConfig{}, kAdapters);
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kUnrouted);
  EXPECT_EQ(mask, 0u);
}

TEST_F(RouteMatch, LoopGuardSkipsTheRoutersOwnUserCaseInsensitively) {
  LoopGuardConfig guard;
  guard.user_ids = {"00000000-0000-0000-0000-000000000001", "75C2DD85-E89E-E711-8122-000D3AA2331C"};
  RouteTable table({Route({"lake"})}, guard, kAdapters);
  EXPECT_FALSE(table.needs_columns());
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kLoopUser);
  EXPECT_EQ(mask, 0u);
  EXPECT_EQ(
      MatchBody(table, Header("Update", "contact", 40, "00000000-0000-0000-0000-000000000002"),
                kContactUpdate, &mask),
      RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake);
  EXPECT_EQ(MatchBody(table, Header("Update", "contact", 40, ""), kContactUpdate, &mask),
            RouteVerdict::kRouted)
      << "an event without an initiating user is not the router's";
  EXPECT_EQ(mask, kLake);
}

TEST_F(RouteMatch, IgnoreColumnsSkipsUpdatesChangingOnlyThoseColumns) {
  // Every column of update-contact's Target except the primary id (contactid).
  const std::vector<std::string> all_but_id = {"firstname",  "FullName",   "yomifullname",
                                               "modifiedon", "modifiedby", "modifiedonbehalfby"};
  LoopGuardConfig guard;
  guard.ignore_columns = all_but_id;
  RouteTable table({Route({"lake"})}, guard, kAdapters);
  EXPECT_TRUE(table.needs_columns());
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kIgnoredColumns);
  EXPECT_EQ(mask, 0u);
  EXPECT_EQ(MatchBody(table, Header("update", "Contact"), kContactUpdate, &mask),
            RouteVerdict::kIgnoredColumns);

  // The same change reported as a Create is never skipped for its columns.
  EXPECT_EQ(MatchBody(table, Header("Create", "contact"), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake);

  // One more changed column (firstname) outside the list: routed.
  LoopGuardConfig partial;
  partial.ignore_columns = {"fullname", "yomifullname", "modifiedon", "modifiedby",
                            "modifiedonbehalfby"};
  RouteTable routed({Route({"lake"})}, partial, kAdapters);
  EXPECT_EQ(MatchBody(routed, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake);
}

TEST_F(RouteMatch, IgnoreColumnsNeverSkipsACreate) {
  const std::vector<std::string> agent_columns = {"msdyn_capacitymodifiedon",
                                                  "owningbusinessunit",
                                                  "modifiedon",
                                                  "modifiedonbehalfby",
                                                  "msdyn_presencemodifiedby",
                                                  "msdyn_currentpresenceid",
                                                  "msdyn_presencemodifiedon",
                                                  "statecode",
                                                  "statuscode",
                                                  "msdyn_isagentloggedin",
                                                  "createdby",
                                                  "timezoneruleversionnumber",
                                                  "msdyn_agentid",
                                                  "ownerid",
                                                  "msdyn_availableunitscapacity",
                                                  "msdyn_isblockedbysomeprofile",
                                                  "owninguser",
                                                  "modifiedby",
                                                  "createdon"};
  LoopGuardConfig guard;
  guard.ignore_columns = agent_columns;
  RouteTable table({Route({"audit"})}, guard, kAdapters);
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Create", "msdyn_agentstatus"), kAgentCreate, &mask),
            RouteVerdict::kRouted);
  EXPECT_EQ(mask, kAudit);
  // The same body as an Update: every changed column is ignored.
  EXPECT_EQ(MatchBody(table, Header("Update", "msdyn_agentstatus"), kAgentCreate, &mask),
            RouteVerdict::kIgnoredColumns);
  EXPECT_EQ(mask, 0u);
}

TEST_F(RouteMatch, LoopUserIsCheckedBeforeColumns) {
  LoopGuardConfig guard;
  guard.user_ids = {kContactUser};
  guard.ignore_columns = {"emailaddress1"};
  RouteTable table({Route({"lake"})}, guard, kAdapters);
  uint64_t mask = 0;
  EXPECT_EQ(MatchBody(table, Header("Update", "contact"), kContactUpdate, &mask),
            RouteVerdict::kLoopUser);
  EXPECT_EQ(
      MatchBody(table, Header("Update", "contact", 40, "someone-else"), kContactUpdate, &mask),
      RouteVerdict::kRouted);
  EXPECT_EQ(mask, kLake);
}

}  // namespace
}  // namespace dvrouter
