// The SQL adapters against real databases: the same semantic tests on SQLite (a file) and on a
// PostgreSQL server the harness starts (tests/support/postgres_server.h). Merge of partial
// updates, Create -> Update -> Delete order, idempotent replay, stale events, hard delete with
// tombstones, typed columns, skipped events and error classes.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <prometheus/registry.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cctype>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "adapters/sql/postgres_adapter.h"
#include "adapters/sql/sql_config.h"
#include "adapters/sql/sqlite_adapter.h"
#include "router/decode/decode.h"
#include "tests/support/delivery_done.h"
#include "tests/support/postgres_server.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::Fixture;
using testing::ReplaceAll;
using testing::TempDir;

using testing::Done;

constexpr const char* kContactId = "6d81597f-0f9f-e711-8122-000d3aa2331c";

// Replaces the value of the InputParameters "Target" with `value` (a JSON object).
std::string WithTarget(const std::string& body, const std::string& value) {
  size_t at = body.find("\"Target\"");
  EXPECT_NE(at, std::string::npos);
  at = body.find('{', body.find("\"value\"", at));
  size_t end = at;
  int depth = 0;
  bool in_string = false;
  for (; end < body.size(); ++end) {
    const char c = body[end];
    if (in_string) {
      if (c == '\\') {
        ++end;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{') {
      ++depth;
    } else if (c == '}' && --depth == 0) {
      break;
    }
  }
  return body.substr(0, at) + value + body.substr(end + 1);
}

// A contact event: message Create/Update/Delete for row `id`; `attributes` (the JSON of the
// Attributes list's entries) replaces the fixture's Target unless empty.
std::string ContactBody(const std::string& message, const std::string& id,
                        const std::string& attributes = "") {
  std::string body = Fixture("update-contact-postop-async.json");
  body = ReplaceAll(body, "\"MessageName\": \"Update\"", "\"MessageName\": \"" + message + "\"");
  if (message == "Delete") {
    body = WithTarget(body,
                      "{\"__type\":\"EntityReference:http://schemas.microsoft.com/xrm/2011/"
                      "Contracts\",\"Id\":\"" +
                          std::string(kContactId) +
                          "\",\"KeyAttributes\":[],\"LogicalName\":\"contact\",\"Name\":null,"
                          "\"RowVersion\":null}");
  } else if (!attributes.empty()) {
    body = WithTarget(body,
                      "{\"__type\":\"Entity:http://schemas.microsoft.com/xrm/2011/Contracts\","
                      "\"Attributes\":[" +
                          attributes + "],\"EntityState\":null,\"FormattedValues\":[],\"Id\":\"" +
                          kContactId +
                          "\",\"KeyAttributes\":[],\"LogicalName\":\"contact\","
                          "\"RelatedEntities\":[],\"RowVersion\":null}");
  }
  return ReplaceAll(body, kContactId, id);
}

// Events built from bodies, decoded as the ingress does.
class Events {
 public:
  void Add(std::string body, uint64_t seq) {
    auto e = std::make_unique<Event>();
    e->body = std::move(body);
    Decoder decoder(1 << 20);
    Status st = decoder.Decode(e->body.data(), e->body.size(), e->body.size(), &e->header);
    EXPECT_TRUE(st.ok()) << st.ToString();
    e->seq = seq;
    events_.push_back(std::move(e));
  }
  std::vector<Delivery> Batch() const {
    std::vector<Delivery> out;
    for (const auto& e : events_) {
      Delivery d;
      d.seq = e->seq;
      d.key = EventKey{e->seq, 7};
      d.header = &e->header;
      d.body = e->body;
      d.received_ms = 1'700'000'000'000;
      out.push_back(d);
    }
    return out;
  }
  void Clear() { events_.clear(); }

 private:
  struct Event {
    std::string body;
    EventHeader header;
    uint64_t seq = 0;
  };
  std::vector<std::unique_ptr<Event>> events_;
};

// One database under test.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual AdapterConfig Config(const std::string& prefix) = 0;
  virtual std::unique_ptr<Adapter> Make(const AdapterConfig& c) = 0;
  // First column of the first row, nullopt for no row or NULL; errors fail the test.
  virtual std::optional<std::string> Value(const std::string& sql) = 0;
  // Runs a statement; errors fail the test.
  virtual void Exec(const std::string& sql) = 0;
  // SQL for attribute `key` of the attributes column, as text.
  virtual std::string Attr(const std::string& key) = 0;
  // The text a true boolean column reads as.
  virtual std::string True() = 0;
};

class SqliteBackend final : public Backend {
 public:
  AdapterConfig Config(const std::string& prefix) override {
    AdapterConfig c;
    c.name = "sql";
    c.type = "sqlite";
    c.Settings<SqlConfig>().path = tmp_.path() + "/db/dvrouter.db";
    c.Settings<SqlConfig>().table_prefix = prefix;
    return c;
  }
  std::unique_ptr<Adapter> Make(const AdapterConfig& c) override {
    return std::make_unique<SqliteAdapter>(c, nullptr);
  }
  std::optional<std::string> Value(const std::string& sql) override {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2((tmp_.path() + "/db/dvrouter.db").c_str(), &db, SQLITE_OPEN_READONLY,
                              nullptr),
              SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    std::optional<std::string> out;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
    } else if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
  }
  void Exec(const std::string& sql) override {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2((tmp_.path() + "/db/dvrouter.db").c_str(), &db, SQLITE_OPEN_READWRITE,
                              nullptr),
              SQLITE_OK);
    char* err = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK)
        << sql << ": " << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }
  std::string Attr(const std::string& key) override {
    return "json_extract(attributes, '$." + key + "')";
  }
  std::string True() override { return "1"; }

 private:
  TempDir tmp_;
};

class PostgresBackend final : public Backend {
 public:
  // One server for the whole test program, stopped at exit (and by PR_SET_PDEATHSIG if the
  // program dies).
  static testing::PostgresServer* server() {
    static testing::PostgresServer s;
    return &s;
  }
  AdapterConfig Config(const std::string& prefix) override {
    AdapterConfig c;
    c.name = "sql";
    c.type = "postgres";
    c.Settings<SqlConfig>().host = "127.0.0.1";
    c.Settings<SqlConfig>().port = server()->port();
    c.Settings<SqlConfig>().user = "dvrouter";
    c.Settings<SqlConfig>().dbname = "dvrouter";
    c.Settings<SqlConfig>().sslmode = "disable";
    c.Settings<SqlConfig>().pool_size = 2;
    c.Settings<SqlConfig>().table_prefix = prefix;
    return c;
  }
  std::unique_ptr<Adapter> Make(const AdapterConfig& c) override {
    return std::make_unique<PostgresAdapter>(c, nullptr);
  }
  std::optional<std::string> Value(const std::string& sql) override {
    auto r = server()->Query(sql);
    EXPECT_TRUE(r.ok) << sql << ": " << r.error;
    if (!r.ok || r.rows.empty() || r.rows[0].empty()) return std::nullopt;
    return r.rows[0][0];
  }
  void Exec(const std::string& sql) override {
    auto r = server()->Query(sql);
    EXPECT_TRUE(r.ok) << sql << ": " << r.error;
  }
  std::string Attr(const std::string& key) override { return "attributes->>'" + key + "'"; }
  std::string True() override { return "t"; }
};

class SqlAdapterTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgres") {
      std::string why;
      if (!testing::PostgresServer::Available(&why)) GTEST_SKIP() << why;
      ASSERT_TRUE(PostgresBackend::server()->ok()) << PostgresBackend::server()->error();
      backend_ = std::make_unique<PostgresBackend>();
    } else {
      backend_ = std::make_unique<SqliteBackend>();
    }
    // Each test its own tables (the PostgreSQL server is shared by the suite).
    static int counter = 0;
    prefix_ = "t" + std::to_string(++counter) + "_";
    table_ = prefix_ + "contact";
  }
  void TearDown() override {
    if (adapter_) adapter_->Stop();
  }

  void StartAdapter(const AdapterConfig& c) {
    if (adapter_) adapter_->Stop();
    adapter_ = backend_->Make(c);
    ASSERT_TRUE(adapter_->Start(1).ok());
  }
  void StartAdapter() { StartAdapter(backend_->Config(prefix_)); }

  std::vector<DeliveryResult> Deliver(const Events& ev) {
    Done done;
    const std::vector<Delivery> batch = ev.Batch();
    adapter_->Deliver(batch, &done);
    return done.Wait();
  }
  void DeliverAll(const Events& ev) {
    for (const DeliveryResult& r : Deliver(ev)) {
      EXPECT_EQ(r.outcome, DeliveryOutcome::kDelivered) << r.error;
    }
  }

  std::optional<std::string> Attr(const std::string& id, const std::string& key) {
    return backend_->Value("SELECT " + backend_->Attr(key) + " FROM " + table_ + " WHERE id = '" +
                           id + "'");
  }
  std::optional<std::string> Column(const std::string& id, const std::string& column) {
    return backend_->Value("SELECT " + column + " FROM " + table_ + " WHERE id = '" + id + "'");
  }
  std::string Count() { return backend_->Value("SELECT count(*) FROM " + table_).value_or("?"); }
  // How many tables of that name exist (0 or 1).
  std::string TableCount(const std::string& table) {
    const std::string q = GetParam() == "sqlite"
                              ? "SELECT count(*) FROM sqlite_master WHERE name = '" + table + "'"
                              : "SELECT count(*) FROM information_schema.tables WHERE "
                                "table_name = '" +
                                    table + "'";
    return backend_->Value(q).value_or("?");
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Adapter> adapter_;
  std::string prefix_, table_;
};

const std::string kId1 = "11111111-0f9f-e711-8122-000d3aa2331c";
const std::string kId2 = "22222222-0f9f-e711-8122-000d3aa2331c";

TEST_P(SqlAdapterTest, PartialUpdateMergesIntoTheStoredAttributes) {
  StartAdapter();
  Events ev;
  ev.Add(ContactBody("Create", kId1), 1);
  DeliverAll(ev);
  EXPECT_EQ(Attr(kId1, "firstname"), "James");
  EXPECT_EQ(Attr(kId1, "fullname"), "James Glynn (sample)");
  ev.Clear();
  ev.Add(ContactBody("Update", kId1, R"({"key":"firstname","value":"Jim"})"), 2);
  DeliverAll(ev);
  EXPECT_EQ(Attr(kId1, "firstname"), "Jim");
  EXPECT_EQ(Attr(kId1, "fullname"), "James Glynn (sample)") << "the update erased a column";
  // Converted types as in the lake: an EntityReference becomes {id, logicalname, name}, dates
  // ISO-8601 UTC; a null stays a null member.
  EXPECT_EQ(backend_->Value("SELECT " + backend_->Attr("modifiedby") + " IS NOT NULL FROM " +
                            table_ + " WHERE id = '" + kId1 + "'"),
            backend_->True());
  EXPECT_EQ(Attr(kId1, "modifiedon"), "2017-09-26T00:04:07.000Z");
  EXPECT_EQ(Column(kId1, "version"), "2");
  EXPECT_EQ(Column(kId1, "deleted"), GetParam() == "postgres" ? "f" : "0");
  EXPECT_EQ(Count(), "1");
}

// Several events of one record in one batch (RecordOrdering::kOneBatchInFlight): applied in order,
// so each partial update merges on top of the one before and the row ends at the newest version. A
// merge in any other order, or the upsert of a row twice in one statement, fails this.
TEST_P(SqlAdapterTest, ARecordsEventsInOneBatchAreAppliedInOrder) {
  StartAdapter();
  EXPECT_EQ(adapter_->record_ordering(), RecordOrdering::kOneBatchInFlight);
  Events ev;
  ev.Add(ContactBody("Create", kId1), 1);
  ev.Add(ContactBody("Update", kId1, R"({"key":"firstname","value":"Jim"})"), 2);
  ev.Add(ContactBody("Create", kId2), 3);
  ev.Add(ContactBody("Update", kId1, R"({"key":"lastname","value":"Gray"})"), 4);
  ev.Add(ContactBody("Update", kId1, R"({"key":"firstname","value":"Jimmy"})"), 5);
  const auto results = Deliver(ev);
  ASSERT_EQ(results.size(), 5u);
  for (const DeliveryResult& r : results) {
    EXPECT_EQ(r.outcome, DeliveryOutcome::kDelivered) << r.error;
  }
  EXPECT_EQ(Attr(kId1, "firstname"), "Jimmy");
  EXPECT_EQ(Attr(kId1, "lastname"), "Gray");
  EXPECT_EQ(Attr(kId1, "fullname"), "James Glynn (sample)") << "the create's attributes were lost";
  EXPECT_EQ(Column(kId1, "version"), "5");
  EXPECT_EQ(Column(kId2, "version"), "3");
  EXPECT_EQ(Count(), "2");
  // Then deleted and created again within one batch: the create after the delete wins.
  ev.Clear();
  ev.Add(ContactBody("Delete", kId1), 6);
  ev.Add(ContactBody("Create", kId1), 7);
  for (const DeliveryResult& r : Deliver(ev)) {
    EXPECT_EQ(r.outcome, DeliveryOutcome::kDelivered) << r.error;
  }
  EXPECT_EQ(Column(kId1, "version"), "7");
  EXPECT_EQ(Column(kId1, "deleted"), GetParam() == "postgres" ? "f" : "0");
  EXPECT_EQ(Attr(kId1, "firstname"), "James");
}

TEST_P(SqlAdapterTest, CreateUpdateDeleteLeaveASoftDeletedRowAndOlderEventsChangeNothing) {
  StartAdapter();
  Events ev;
  ev.Add(ContactBody("Create", kId1), 10);
  ev.Add(ContactBody("Create", kId2), 11);
  DeliverAll(ev);
  ev.Clear();
  ev.Add(ContactBody("Update", kId1, R"({"key":"firstname","value":"Jim"})"), 12);
  DeliverAll(ev);
  ev.Clear();
  ev.Add(ContactBody("Delete", kId1), 13);
  DeliverAll(ev);
  EXPECT_EQ(Column(kId1, "deleted"), backend_->True());
  EXPECT_EQ(Column(kId1, "version"), "13");
  EXPECT_EQ(Attr(kId1, "firstname"), "Jim") << "a soft delete keeps the last attributes";
  // The update again (a redelivery after the delete): ignored.
  ev.Clear();
  ev.Add(ContactBody("Update", kId1, R"({"key":"firstname","value":"Late"})"), 12);
  DeliverAll(ev);
  EXPECT_EQ(Column(kId1, "deleted"), backend_->True());
  EXPECT_EQ(Attr(kId1, "firstname"), "Jim");
  EXPECT_EQ(Column(kId2, "deleted"), GetParam() == "postgres" ? "f" : "0");
  // A delete for a row never seen leaves a tombstone row, so an older create cannot revive it.
  const std::string kId3 = "33333333-0f9f-e711-8122-000d3aa2331c";
  ev.Clear();
  ev.Add(ContactBody("Delete", kId3), 20);
  DeliverAll(ev);
  ev.Clear();
  ev.Add(ContactBody("Create", kId3), 19);
  DeliverAll(ev);
  EXPECT_EQ(Column(kId3, "deleted"), backend_->True());
  EXPECT_EQ(Column(kId3, "version"), "20");
}

TEST_P(SqlAdapterTest, ReplayingABatchIsIdempotent) {
  StartAdapter();
  Events ev;
  ev.Add(ContactBody("Create", kId1), 1);
  ev.Add(ContactBody("Create", kId2), 2);
  DeliverAll(ev);
  Events up;
  up.Add(ContactBody("Update", kId1, R"({"key":"firstname","value":"Jim"})"), 3);
  up.Add(ContactBody("Update", kId2, R"({"key":"lastname","value":"Doe"})"), 4);
  DeliverAll(up);
  const std::string snapshot_sql =
      "SELECT " +
      std::string(GetParam() == "postgres" ? "string_agg(id::text || version || "
                                             "attributes::text || updated_at, ',' ORDER "
                                             "BY id)"
                                           : "group_concat(id || version || attributes || "
                                             "updated_at, ',')") +
      " FROM " + table_;
  const auto before = backend_->Value(snapshot_sql);
  ASSERT_TRUE(before.has_value());
  DeliverAll(ev);  // replayed: older than the rows
  DeliverAll(up);  // replayed: equal to the rows
  EXPECT_EQ(backend_->Value(snapshot_sql), before);
  EXPECT_EQ(Attr(kId2, "lastname"), "Doe");
  EXPECT_EQ(Attr(kId2, "firstname"), "James");
}

TEST_P(SqlAdapterTest, AStaleEventIsIgnored) {
  StartAdapter();
  Events ev;
  ev.Add(ContactBody("Update", kId1, R"({"key":"firstname","value":"Newer"})"), 50);
  DeliverAll(ev);
  ev.Clear();
  ev.Add(ContactBody("Update", kId1, R"({"key":"firstname","value":"Older"})"), 40);
  DeliverAll(ev);
  EXPECT_EQ(Attr(kId1, "firstname"), "Newer");
  EXPECT_EQ(Column(kId1, "version"), "50");
}

TEST_P(SqlAdapterTest, HardDeleteRemovesTheRowAndItsTombstoneStopsOlderEvents) {
  AdapterConfig c = backend_->Config(prefix_);
  c.Settings<SqlConfig>().hard_delete = true;
  StartAdapter(c);
  Events ev;
  ev.Add(ContactBody("Create", kId1), 1);
  ev.Add(ContactBody("Create", kId2), 2);
  DeliverAll(ev);
  ev.Clear();
  ev.Add(ContactBody("Delete", kId1), 3);
  DeliverAll(ev);
  EXPECT_EQ(Count(), "1");
  EXPECT_EQ(Column(kId1, "version"), std::nullopt);
  ev.Clear();
  ev.Add(ContactBody("Create", kId1), 1);  // replayed: the tombstone is newer
  DeliverAll(ev);
  EXPECT_EQ(Column(kId1, "version"), std::nullopt);
  ev.Clear();
  ev.Add(ContactBody("Create", kId1), 9);  // restored in the CRM later: newer than the delete
  DeliverAll(ev);
  EXPECT_EQ(Column(kId1, "version"), "9");
}

TEST_P(SqlAdapterTest, TypedColumnsFollowTheMappingAndKeepValuesAPartialUpdateLacks) {
  AdapterConfig c = backend_->Config(prefix_);
  SqlTable t;
  t.entity = "contact";
  t.table = table_;
  t.columns = {{"firstname", "first_name", "text"},
               {"modifiedby", "modified_by", "uuid"},
               {"modifiedon", "modified_on", "timestamptz"},
               {"modifiedon", "modified_day", "date"},
               {"modifiedby", "modified_by_json", "jsonb"}};
  c.Settings<SqlConfig>().tables.push_back(t);
  StartAdapter(c);
  Events ev;
  ev.Add(ContactBody("Create", kId1), 1);
  DeliverAll(ev);
  EXPECT_EQ(Column(kId1, "first_name"), "James");
  EXPECT_EQ(Column(kId1, "modified_by"), "75c2dd85-e89e-e711-8122-000d3aa2331c");
  EXPECT_EQ(Column(kId1, "modified_day"), "2017-09-26");
  const auto json = Column(kId1, "modified_by_json");
  ASSERT_TRUE(json.has_value());
  EXPECT_NE(json->find("75c2dd85-e89e-e711-8122-000d3aa2331c"), std::string::npos) << *json;
  EXPECT_NE(json->find("systemuser"), std::string::npos) << *json;
  EXPECT_EQ(Column(kId1, GetParam() == "postgres" ? "extract(epoch from modified_on)::bigint"
                                                  : "strftime('%s', modified_on)"),
            "1506384247");
  ev.Clear();
  ev.Add(ContactBody("Update", kId1, R"({"key":"firstname","value":"Jim"})"), 2);
  DeliverAll(ev);
  EXPECT_EQ(Column(kId1, "first_name"), "Jim");
  EXPECT_EQ(Column(kId1, "modified_by"), "75c2dd85-e89e-e711-8122-000d3aa2331c");
  EXPECT_EQ(Column(kId1, "modified_day"), "2017-09-26");
}

TEST_P(SqlAdapterTest, EventsWithoutAnEntityTargetAreCompletedWithoutWriting) {
  StartAdapter();
  Events ev;
  ev.Add(Fixture("customaction-context-devkit-isodates.json"), 1);
  ev.Add(ContactBody("Create", kId1), 2);
  DeliverAll(ev);
  EXPECT_EQ(Count(), "1");
}

TEST_P(SqlAdapterTest, AMissingTableWithCreateTablesOffIsAPermanentErrorWithTheServersMessage) {
  AdapterConfig c = backend_->Config(prefix_);
  c.Settings<SqlConfig>().create_tables = false;
  StartAdapter(c);
  Events ev;
  ev.Add(ContactBody("Create", kId1), 1);
  ev.Add(ContactBody("Create", kId2), 2);
  const auto results = Deliver(ev);
  ASSERT_EQ(results.size(), 2u);
  for (const DeliveryResult& r : results) {
    EXPECT_EQ(r.outcome, DeliveryOutcome::kPermanent);
    EXPECT_NE(r.error.find(table_), std::string::npos) << r.error;
  }
}

// The same contact event for another table.
std::string TableBody(const std::string& table, const std::string& id) {
  return ReplaceAll(ContactBody("Create", id), "\"contact\"", "\"" + table + "\"");
}

TEST_P(SqlAdapterTest, ATableOutsideTablesAllowedGoesToTheDlqAndCreatesNothing) {
  AdapterConfig c = backend_->Config(prefix_);
  c.Settings<SqlConfig>().tables_allowed = {"contact"};
  c.Settings<SqlConfig>().any_table = false;
  StartAdapter(c);
  Events ev;
  ev.Add(ContactBody("Create", kId1), 1);
  ev.Add(TableBody("account", kId2), 2);
  const auto results = Deliver(ev);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].outcome, DeliveryOutcome::kDelivered) << results[0].error;
  EXPECT_EQ(results[1].outcome, DeliveryOutcome::kPermanent);
  EXPECT_NE(results[1].error.find("'account' is not one this adapter writes"), std::string::npos)
      << results[1].error;
  EXPECT_EQ(Count(), "1");
  EXPECT_EQ(TableCount(prefix_ + "account"), "0") << "a table was created for a refused event";
}

TEST_P(SqlAdapterTest, CreateTablesLimitBoundsTheTablesEventsCanCreate) {
  AdapterConfig c = backend_->Config(prefix_);
  c.Settings<SqlConfig>().create_tables_limit = 2;
  StartAdapter(c);
  Events ev;
  ev.Add(ContactBody("Create", kId1), 1);
  ev.Add(TableBody("account", kId1), 2);
  ev.Add(TableBody("lead", kId1), 3);
  ev.Add(TableBody("account", kId2), 4);  // a table already taken stays open
  const auto results = Deliver(ev);
  ASSERT_EQ(results.size(), 4u);
  EXPECT_EQ(results[0].outcome, DeliveryOutcome::kDelivered) << results[0].error;
  EXPECT_EQ(results[1].outcome, DeliveryOutcome::kDelivered) << results[1].error;
  EXPECT_EQ(results[2].outcome, DeliveryOutcome::kPermanent);
  EXPECT_NE(results[2].error.find("create_tables_limit is 2"), std::string::npos)
      << results[2].error;
  EXPECT_EQ(results[3].outcome, DeliveryOutcome::kDelivered) << results[3].error;
  EXPECT_EQ(TableCount(prefix_ + "lead"), "0");
}

// With an empty prefix, a Dataverse table named like the router's own table maps onto it: refused.
TEST_P(SqlAdapterTest, AnEventForTheTombstoneTableNeverTouchesIt) {
  StartAdapter(backend_->Config(""));
  Events ev;
  ev.Add(TableBody("dvrouter_tombstones", kId1), 1);
  const auto results = Deliver(ev);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].outcome, DeliveryOutcome::kPermanent);
  EXPECT_NE(results[0].error.find("reserved"), std::string::npos) << results[0].error;
  if (GetParam() == "sqlite") {
    EXPECT_EQ(TableCount("dvrouter_tombstones"), "0");
  }
}

TEST_P(SqlAdapterTest, AnEventTheDatabaseRefusesFailsAloneAndTheOthersOfItsBatchLand) {
  // A table created by someone else with a rule the second event breaks.
  const std::string ddl =
      GetParam() == "postgres"
          ? "CREATE TABLE " + table_ +
                " (id uuid PRIMARY KEY, attributes jsonb NOT NULL, version bigint NOT NULL "
                "CHECK (version <> 2), deleted boolean NOT NULL DEFAULT false, updated_at "
                "timestamptz NOT NULL)"
          : "CREATE TABLE " + table_ +
                " (id TEXT PRIMARY KEY, attributes TEXT NOT NULL, version INTEGER NOT NULL "
                "CHECK (version <> 2), deleted INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT "
                "NULL)";
  AdapterConfig c = backend_->Config(prefix_);
  StartAdapter(c);  // creates the database file (SQLite) before the DDL below
  backend_->Exec(ddl);
  const std::string kId3 = "33333333-0f9f-e711-8122-000d3aa2331c";
  Events ev;
  ev.Add(ContactBody("Create", kId1), 1);
  ev.Add(ContactBody("Create", kId2), 2);
  ev.Add(ContactBody("Create", kId3), 3);
  const auto results = Deliver(ev);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0].outcome, DeliveryOutcome::kDelivered) << results[0].error;
  EXPECT_EQ(results[1].outcome, DeliveryOutcome::kPermanent);
  std::string lower = results[1].error;
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  EXPECT_NE(lower.find("check constraint"), std::string::npos) << results[1].error;
  EXPECT_EQ(results[2].outcome, DeliveryOutcome::kDelivered) << results[2].error;
  EXPECT_EQ(Count(), "2");
  EXPECT_EQ(Column(kId2, "version"), std::nullopt);
}

INSTANTIATE_TEST_SUITE_P(Databases, SqlAdapterTest, ::testing::Values("sqlite", "postgres"),
                         [](const auto& info) { return info.param; });

// PostgreSQL only: type errors come from the server (SQLite stores what it is given).
class PostgresAdapterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!testing::PostgresServer::Available(&why)) GTEST_SKIP() << why;
    ASSERT_TRUE(PostgresBackend::server()->ok()) << PostgresBackend::server()->error();
  }
  // An adapter on one connection whose statements give up after 200 ms (behind another
  // session's lock); its tables start with `prefix`. Null (and a failure) if it cannot start.
  std::unique_ptr<PostgresAdapter> StartTimingOut(const std::string& prefix,
                                                  prometheus::Registry* registry) {
    AdapterConfig c = backend_.Config(prefix);
    c.Settings<SqlConfig>().statement_timeout_ms = 200;
    c.Settings<SqlConfig>().pool_size = 1;
    auto adapter = std::make_unique<PostgresAdapter>(c, registry);
    const Status st = adapter->Start(1);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return st.ok() ? std::move(adapter) : nullptr;
  }
  static std::vector<DeliveryResult> DeliverTo(Adapter& adapter, const Events& ev) {
    Done done;
    const std::vector<Delivery> batch = ev.Batch();
    adapter.Deliver(batch, &done);
    return done.Wait();
  }
  // Another session that runs `sql` (BEGIN and a lock) and holds it until Release. Null (and a
  // failure) if the statement does not give `expected`.
  static PGconn* Hold(const std::string& sql, ExecStatusType expected) {
    PGconn* locker = PQconnectdb(PostgresBackend::server()->ConnInfo().c_str());
    EXPECT_EQ(PQstatus(locker), CONNECTION_OK) << PQerrorMessage(locker);
    PGresult* res = PQexec(locker, sql.c_str());
    const bool ok = PQresultStatus(res) == expected;
    EXPECT_TRUE(ok) << PQerrorMessage(locker);
    PQclear(res);
    if (!ok) PQfinish(locker);
    return ok ? locker : nullptr;
  }
  static void Release(PGconn* locker) {
    PQclear(PQexec(locker, "COMMIT"));
    PQfinish(locker);
  }
  PostgresBackend backend_;
};

TEST_F(PostgresAdapterTest, ABadValueInABatchSendsOnlyItsEventToTheDlq) {
  const std::string prefix = "bad" + std::to_string(::getpid()) + "_";
  AdapterConfig c = backend_.Config(prefix);
  SqlTable t;
  t.entity = "contact";
  t.table = prefix + "contact";
  t.columns = {{"firstname", "first_name", "integer"}};  // "James" is no integer
  c.Settings<SqlConfig>().tables.push_back(t);
  PostgresAdapter adapter(c, nullptr);
  ASSERT_TRUE(adapter.Start(1).ok());
  Events ev;
  ev.Add(ContactBody("Create", kId1, R"({"key":"firstname","value":"42"})"), 1);
  ev.Add(ContactBody("Create", kId2), 2);
  Done done;
  const std::vector<Delivery> batch = ev.Batch();
  adapter.Deliver(batch, &done);
  const auto results = done.Wait();
  adapter.Stop();
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].outcome, DeliveryOutcome::kDelivered) << results[0].error;
  EXPECT_EQ(results[1].outcome, DeliveryOutcome::kPermanent);
  EXPECT_NE(results[1].error.find("22P02"), std::string::npos) << results[1].error;
  EXPECT_NE(results[1].error.find("James"), std::string::npos) << results[1].error;
  EXPECT_EQ(backend_.Value("SELECT first_name FROM " + t.table + " WHERE id = '" + kId1 + "'"),
            "42");
  EXPECT_EQ(backend_.Value("SELECT count(*) FROM " + t.table), "1");
}

TEST_F(PostgresAdapterTest, ADatabaseThatIsDownIsRetryableAndDoesNotFailStart) {
  AdapterConfig c = backend_.Config("down_");
  c.Settings<SqlConfig>().port = 1;  // nothing listens on port 1
  c.Settings<SqlConfig>().connect_timeout_ms = 1000;
  PostgresAdapter adapter(c, nullptr);
  ASSERT_TRUE(adapter.Start(1).ok()) << "a database that is down must not stop the router";
  Events ev;
  ev.Add(ContactBody("Create", kId1), 1);
  Done done;
  const std::vector<Delivery> batch = ev.Batch();
  adapter.Deliver(batch, &done);
  const auto results = done.Wait();
  adapter.Stop();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].outcome, DeliveryOutcome::kRetryable);
  EXPECT_NE(results[0].error.find("connect"), std::string::npos) << results[0].error;
}

// The value of the series `name` with (at least) `labels`; -1 if absent.
double Series(prometheus::Registry& registry, const std::string& name,
              const std::map<std::string, std::string>& labels) {
  for (const auto& family : registry.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      bool match = true;
      for (const auto& [k, v] : labels) {
        bool found = false;
        for (const auto& l : m.label) found = found || (l.name == k && l.value == v);
        match = match && found;
      }
      if (match) {
        return family.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
      }
    }
  }
  return -1;
}

TEST_F(PostgresAdapterTest, AStatementTimeoutBehindALockIsRetryableAndTheMetricsShowIt) {
  prometheus::Registry registry;
  const std::string table = "lock" + std::to_string(::getpid()) + "_contact";
  auto adapter = StartTimingOut("lock" + std::to_string(::getpid()) + "_", &registry);
  ASSERT_NE(adapter, nullptr);
  Events create;
  create.Add(ContactBody("Create", kId1), 1);
  ASSERT_EQ(DeliverTo(*adapter, create)[0].outcome, DeliveryOutcome::kDelivered);
  EXPECT_EQ(Series(registry, "dvrouter_sql_connections", {{"state", "idle"}}), 1);
  EXPECT_EQ(Series(registry, "dvrouter_sql_connections", {{"state", "down"}}), 0);

  // Another session holds the table: the adapter's statement times out.
  PGconn* locker =
      Hold("BEGIN; LOCK TABLE " + table + " IN ACCESS EXCLUSIVE MODE", PGRES_COMMAND_OK);
  ASSERT_NE(locker, nullptr);
  Events update;
  update.Add(ContactBody("Update", kId1, R"({"key":"firstname","value":"Jim"})"), 2);
  const auto timed_out = DeliverTo(*adapter, update);
  EXPECT_EQ(timed_out[0].outcome, DeliveryOutcome::kRetryable);
  EXPECT_NE(timed_out[0].error.find("57014"), std::string::npos) << timed_out[0].error;
  Release(locker);

  // The connection is still good: the retry goes through.
  EXPECT_EQ(DeliverTo(*adapter, update)[0].outcome, DeliveryOutcome::kDelivered);
  adapter->Stop();
  EXPECT_EQ(backend_.Value("SELECT attributes->>'firstname' FROM " + table), "Jim");
  EXPECT_EQ(Series(registry, "dvrouter_sql_errors_total", {{"class", "timeout"}}), 1);
  EXPECT_EQ(Series(registry, "dvrouter_sql_rows_total", {{"result", "written"}}), 2);
  EXPECT_EQ(Series(registry, "dvrouter_sql_connections", {{"state", "busy"}}), 0);
}

// A batch whose record events go in rounds: when a round is retried, the later rounds are not
// written. Otherwise a record's second event would land before its first, and the version
// guard would then refuse the first (and its attributes) for good.
TEST_F(PostgresAdapterTest, AfterARetriedRoundTheLaterRoundsWaitForIt) {
  prometheus::Registry registry;
  const std::string table = "rounds" + std::to_string(::getpid()) + "_contact";
  auto adapter = StartTimingOut("rounds" + std::to_string(::getpid()) + "_", &registry);
  ASSERT_NE(adapter, nullptr);
  Events create;
  create.Add(ContactBody("Create", kId2), 1);
  ASSERT_EQ(DeliverTo(*adapter, create)[0].outcome, DeliveryOutcome::kDelivered);
  // Another session holds kId2's row: the first round (kId2's update, kId1's create) times out.
  PGconn* locker = Hold("BEGIN; SELECT id FROM " + table + " WHERE id = '" + kId2 + "' FOR UPDATE",
                        PGRES_TUPLES_OK);
  ASSERT_NE(locker, nullptr);
  Events batch;
  batch.Add(ContactBody("Update", kId2, R"({"key":"firstname","value":"Ann"})"), 2);
  batch.Add(ContactBody("Create", kId1), 3);
  batch.Add(ContactBody("Update", kId1, R"({"key":"firstname","value":"Jim"})"), 4);
  const auto held = DeliverTo(*adapter, batch);
  ASSERT_EQ(held.size(), 3u);
  EXPECT_EQ(held[0].outcome, DeliveryOutcome::kRetryable);
  EXPECT_EQ(held[1].outcome, DeliveryOutcome::kRetryable);
  EXPECT_EQ(held[2].outcome, DeliveryOutcome::kRetryable) << "the second round was written";
  EXPECT_NE(held[2].error.find("earlier event of this record (seq 3)"), std::string::npos)
      << held[2].error;
  EXPECT_EQ(backend_.Value("SELECT count(*) FROM " + table + " WHERE id = '" + kId1 + "'"), "0");
  Release(locker);
  // The retry writes all three, in order.
  for (const DeliveryResult& r : DeliverTo(*adapter, batch)) {
    EXPECT_EQ(r.outcome, DeliveryOutcome::kDelivered) << r.error;
  }
  adapter->Stop();
  EXPECT_EQ(backend_.Value("SELECT attributes->>'firstname' FROM " + table + " WHERE id = '" +
                           kId1 + "'"),
            "Jim");
  EXPECT_EQ(
      backend_.Value("SELECT attributes->>'fullname' FROM " + table + " WHERE id = '" + kId1 + "'"),
      "James Glynn (sample)");
  EXPECT_EQ(backend_.Value("SELECT version FROM " + table + " WHERE id = '" + kId1 + "'"), "4");
}

// TLS to PostgreSQL: verify-full against the test's CA works; another CA is refused.
TEST(PostgresTls, VerifyFullConnectsWithTheRightCaAndRefusesAnother) {
  std::string why;
  if (!testing::PostgresServer::Available(&why)) GTEST_SKIP() << why;
  TempDir tmp;
  std::string error;
  ASSERT_TRUE(testing::MakeSelfSignedCert(tmp.path(), "server", &error)) << error;
  ASSERT_TRUE(testing::MakeSelfSignedCert(tmp.path(), "other", &error)) << error;
  testing::PostgresServer pg(false, testing::ReadFileOrDie(tmp.path() + "/server.crt"),
                             testing::ReadFileOrDie(tmp.path() + "/server.key"));
  ASSERT_TRUE(pg.ok()) << pg.error();
  AdapterConfig c;
  c.name = "tls";
  c.type = "postgres";
  c.Settings<SqlConfig>().port = pg.port();
  c.Settings<SqlConfig>().sslmode = "verify-full";
  c.Settings<SqlConfig>().sslrootcert = tmp.path() + "/server.crt";
  c.Settings<SqlConfig>().pool_size = 1;
  Events ev;
  ev.Add(ContactBody("Create", kId1), 1);
  auto deliver = [&](const AdapterConfig& config) {
    PostgresAdapter adapter(config, nullptr);
    EXPECT_TRUE(adapter.Start(1).ok());
    Done done;
    const std::vector<Delivery> batch = ev.Batch();
    adapter.Deliver(batch, &done);
    auto results = done.Wait();
    adapter.Stop();
    return results[0];
  };
  const DeliveryResult ok = deliver(c);
  EXPECT_EQ(ok.outcome, DeliveryOutcome::kDelivered) << ok.error;
  c.Settings<SqlConfig>().sslrootcert = tmp.path() + "/other.crt";
  const DeliveryResult refused = deliver(c);
  EXPECT_EQ(refused.outcome, DeliveryOutcome::kRetryable);
  EXPECT_NE(refused.error.find("certificate verify failed"), std::string::npos) << refused.error;
  EXPECT_EQ(pg.Query("SELECT count(*) FROM crm_contact").rows[0][0], "1");
}

TEST(SqlErrorClasses, SqlStatesAndSqliteCodesMapToRetryableOrPermanent) {
  for (const char* s : {"08006", "08001", "40001", "40P01", "57P01", "57014", "53100", ""}) {
    EXPECT_TRUE(SqlErrorRetryable(ClassifySqlState(s))) << s;
  }
  for (const char* s : {"23505", "23502", "22P02", "42601", "42P01", "42703", "XX000"}) {
    EXPECT_FALSE(SqlErrorRetryable(ClassifySqlState(s))) << s;
  }
  EXPECT_EQ(ClassifySqlState("40P01"), SqlErrorClass::kDeadlock);
  EXPECT_EQ(ClassifySqlState("57P01"), SqlErrorClass::kShutdown);
  for (int code : {SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN}) {
    EXPECT_TRUE(SqlErrorRetryable(ClassifySqliteCode(code))) << code;
  }
  for (int code : {SQLITE_CONSTRAINT, SQLITE_MISMATCH, SQLITE_ERROR}) {
    EXPECT_FALSE(SqlErrorRetryable(ClassifySqliteCode(code))) << code;
  }
}

TEST(MergeJsonObjects, OverlaysMembersKeepsOrderAndRefusesNonObjects) {
  std::string out;
  ASSERT_TRUE(MergeJsonObjects(R"({"a":1,"b":{"id":"x"},"c":"s"})",
                               R"({"b":null,"d":[1,2],"a":true})", &out)
                  .ok());
  EXPECT_EQ(out, R"({"a":true,"b":null,"c":"s","d":[1,2]})");
  // Numbers keep their exact text (Money and decimals are not re-printed).
  ASSERT_TRUE(
      MergeJsonObjects(R"({"amount":100.00,"big":922337203685477.5807})", R"({"rate":1.50})", &out)
          .ok());
  EXPECT_EQ(out, R"({"amount":100.00,"big":922337203685477.5807,"rate":1.50})");
  EXPECT_FALSE(MergeJsonObjects("[1]", "{}", &out).ok());
  EXPECT_FALSE(MergeJsonObjects("{}", "{\"a\":", &out).ok());
}

TEST(PostgresSql, UpsertGuardsByVersionAndMergesAttributes) {
  const std::string sql = PostgresAdapter::UpsertSql("crm_contact", nullptr, 2, false);
  EXPECT_NE(sql.find("($1,$2,$3,$4),($5,$6,$7,$8)"), std::string::npos) << sql;
  EXPECT_NE(sql.find("t.attributes || EXCLUDED.attributes"), std::string::npos) << sql;
  EXPECT_NE(sql.find("WHERE t.version < EXCLUDED.version"), std::string::npos) << sql;
  EXPECT_EQ(sql.find("dvrouter_tombstones"), std::string::npos);
  EXPECT_NE(PostgresAdapter::UpsertSql("crm_contact", nullptr, 1, true).find("dvrouter_tombstones"),
            std::string::npos);
}

}  // namespace
}  // namespace dvrouter
