// Tests of the SQL and warehouse adapters' configuration (adapters.<name> with type postgres,
// sqlite or clickhouse): the defaults, a full example, secrets, and every malformed form.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <string_view>

#include "adapters/clickhouse/clickhouse_config.h"
#include "adapters/dataverse/dataverse_config.h"
#include "adapters/erp/erp_config.h"
#include "adapters/registry.h"
#include "adapters/sql/sql_config.h"
#include "router/config/config.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using testing::ReplaceAll;
using ::testing::StartsWith;

std::string Adapter(std::string_view body) {
  return "ingress:\n  auth:\n    mode: none\nadapters:\n  db:\n" + std::string(body);
}

Config ParseOk(std::string_view yaml, const std::string& base_dir = ".") {
  Result<Config> c = ParseConfig(yaml, base_dir);
  EXPECT_TRUE(c.ok()) << c.status().ToString() << "\n" << yaml;
  return c.ok() ? *c : Config{};
}

std::string ExpectKeyError(std::string_view yaml, const std::string& key_path) {
  Result<Config> c = ParseConfig(yaml);
  EXPECT_FALSE(c.ok()) << "accepted:\n" << yaml;
  if (c.ok()) return "";
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << yaml;
  const std::string msg(c.status().message());
  EXPECT_THAT(msg, StartsWith(key_path + ": ")) << yaml;
  return msg;
}

TEST(SqlConfig, PostgresDefaults) {
  Config c = ParseOk(Adapter("    type: postgres\n"));
  ASSERT_EQ(c.adapters.size(), 1u);
  const SqlConfig& s = c.adapters[0].Settings<SqlConfig>();
  EXPECT_EQ(s.host, "127.0.0.1");
  EXPECT_EQ(s.port, 5432);
  EXPECT_EQ(s.dbname, "dvrouter");
  EXPECT_EQ(s.user, "dvrouter");
  EXPECT_EQ(s.password, "");
  EXPECT_EQ(s.sslmode, "prefer");
  EXPECT_EQ(s.pool_size, 4u);
  EXPECT_EQ(s.statement_timeout_ms, 30'000u);
  EXPECT_EQ(s.application_name, "dvrouter");
  EXPECT_EQ(s.table_prefix, "crm_");
  EXPECT_TRUE(s.create_tables);
  EXPECT_FALSE(s.hard_delete);
  EXPECT_TRUE(s.tables.empty());
}

TEST(SqlConfig, SqliteDefaultsFollowTheDataDir) {
  Config c = ParseOk(Adapter("    type: sqlite\n") + "journal:\n  data_dir: /srv/dv\n");
  ASSERT_EQ(c.adapters.size(), 1u);
  EXPECT_EQ(c.adapters[0].Settings<SqlConfig>().path, "/srv/dv/sqlite/dvrouter.db");
  SetDataDir(&c, "/elsewhere");
  EXPECT_EQ(c.adapters[0].Settings<SqlConfig>().path, "/elsewhere/sqlite/dvrouter.db");
  Config fixed = ParseOk(Adapter("    type: sqlite\n    path: /var/lib/x.db\n"));
  SetDataDir(&fixed, "/elsewhere");
  EXPECT_EQ(fixed.adapters[0].Settings<SqlConfig>().path, "/var/lib/x.db");
}

TEST(SqlConfig, FullPostgresExampleWithPasswordFromTheEnvironmentAndAMapping) {
  ::setenv("DVROUTER_TEST_PGPASSWORD", "s3cret", 1);
  testing::TempDir tmp;
  testing::WriteFileOrDie(tmp.path() + "/ca.pem", "-----BEGIN CERTIFICATE-----\n");
  Config c = ParseOk(Adapter("    type: postgres\n"
                             "    host: db.internal\n"
                             "    port: 6432\n"
                             "    dbname: erp_mirror\n"
                             "    user: router\n"
                             "    password: ${DVROUTER_TEST_PGPASSWORD}\n"
                             "    sslmode: verify-full\n"
                             "    sslrootcert: ca.pem\n"
                             "    application_name: dvrouter-prod\n"
                             "    connect_timeout: 3s\n"
                             "    statement_timeout: 10s\n"
                             "    pool_size: 8\n"
                             "    table_prefix: dv_\n"
                             "    create_tables: false\n"
                             "    delete: hard\n"
                             "    tables:\n"
                             "      account:\n"
                             "        table: accounts\n"
                             "        columns:\n"
                             "          - {attribute: name, type: text}\n"
                             "          - {attribute: revenue, column: revenue_amount, type: "
                             "numeric}\n"
                             "          - {attribute: PrimaryContactId, column: contact_id, "
                             "type: UUID}\n"
                             "      contact: {}\n"),
                     tmp.path());
  ASSERT_EQ(c.adapters.size(), 1u);
  const SqlConfig& s = c.adapters[0].Settings<SqlConfig>();
  EXPECT_EQ(s.host, "db.internal");
  EXPECT_EQ(s.port, 6432);
  EXPECT_EQ(s.password, "s3cret");
  EXPECT_EQ(s.sslrootcert, tmp.path() + "/ca.pem");
  EXPECT_EQ(s.connect_timeout_ms, 3000u);
  EXPECT_EQ(s.statement_timeout_ms, 10'000u);
  EXPECT_EQ(s.pool_size, 8u);
  EXPECT_FALSE(s.create_tables);
  EXPECT_TRUE(s.hard_delete);
  ASSERT_EQ(s.tables.size(), 2u);
  const SqlTable* account = s.FindTable("account");
  ASSERT_NE(account, nullptr);
  EXPECT_EQ(account->table, "accounts");
  ASSERT_EQ(account->columns.size(), 3u);
  EXPECT_EQ(account->columns[0].column, "name");
  EXPECT_EQ(account->columns[1].column, "revenue_amount");
  EXPECT_EQ(account->columns[2].attribute, "primarycontactid");
  EXPECT_EQ(account->columns[2].type, "uuid");
  ASSERT_NE(s.FindTable("contact"), nullptr);
  EXPECT_EQ(s.FindTable("contact")->table, "dv_contact");
  // The password never appears in check-config's output.
  const std::string described = DescribeConfig(c);
  EXPECT_THAT(described, HasSubstr("password ***"));
  EXPECT_EQ(described.find("s3cret"), std::string::npos);
  EXPECT_THAT(described, HasSubstr("revenue->revenue_amount:numeric"));
  ::unsetenv("DVROUTER_TEST_PGPASSWORD");
}

TEST(SqlConfig, ConnectionSettingsErrors) {
  ExpectKeyError(Adapter("    type: postgres\n    port: 70000\n"), "adapters.db.port");
  ExpectKeyError(Adapter("    type: postgres\n    host: ''\n"), "adapters.db.host");
  ExpectKeyError(Adapter("    type: postgres\n    sslmode: maybe\n"), "adapters.db.sslmode");
  EXPECT_THAT(ExpectKeyError(Adapter("    type: postgres\n    sslmode: verify-full\n"),
                             "adapters.db.sslrootcert"),
              HasSubstr("CA certificate"));
  ExpectKeyError(Adapter("    type: postgres\n    sslrootcert: /nonexistent/ca.pem\n"),
                 "adapters.db.sslrootcert");
  EXPECT_THAT(ExpectKeyError(Adapter("    type: postgres\n    password: hunter2\n"),
                             "adapters.db.password"),
              HasSubstr("environment reference"));
  ::unsetenv("DVROUTER_TEST_UNSET_PW");
  EXPECT_THAT(
      ExpectKeyError(Adapter("    type: postgres\n    password: ${DVROUTER_TEST_UNSET_PW}\n"),
                     "adapters.db.password"),
      HasSubstr("is not set"));
  ExpectKeyError(Adapter("    type: postgres\n    password_file: /nonexistent/pw\n"),
                 "adapters.db.password_file");
  ExpectKeyError(Adapter("    type: postgres\n    pool_size: 0\n"), "adapters.db.pool_size");
  ExpectKeyError(Adapter("    type: postgres\n    statement_timeout: soon\n"),
                 "adapters.db.statement_timeout");
  // Keys of the other SQL type are unknown here.
  ExpectKeyError(Adapter("    type: postgres\n    path: /x.db\n"), "adapters.db.path");
  ExpectKeyError(Adapter("    type: sqlite\n    host: db\n"), "adapters.db.host");
  ExpectKeyError(Adapter("    type: sqlite\n    path: ''\n"), "adapters.db.path");
}

TEST(SqlConfig, MappingErrorsNameTheKeyAndTheProblem) {
  EXPECT_THAT(
      ExpectKeyError(Adapter("    type: sqlite\n    delete: sometimes\n"), "adapters.db.delete"),
      HasSubstr("soft or hard"));
  ExpectKeyError(Adapter("    type: sqlite\n    table_prefix: 9x\n"), "adapters.db.table_prefix");
  ExpectKeyError(Adapter("    type: sqlite\n    table_prefix: a-b\n"), "adapters.db.table_prefix");
  ExpectKeyError(Adapter("    type: sqlite\n    tables: [account]\n"), "adapters.db.tables");
  ExpectKeyError(Adapter("    type: sqlite\n    tables:\n      Account: {}\n"),
                 "adapters.db.tables.Account");
  EXPECT_THAT(ExpectKeyError(Adapter("    type: sqlite\n    tables:\n      account:\n"
                                     "        table: \"accounts; drop table x\"\n"),
                             "adapters.db.tables.account.table"),
              HasSubstr("not a SQL identifier"));
  ExpectKeyError(Adapter("    type: sqlite\n    tables:\n      account:\n        columns: name\n"),
                 "adapters.db.tables.account.columns");
  ExpectKeyError(
      Adapter("    type: sqlite\n    tables:\n      account:\n        columns: [name]\n"),
      "adapters.db.tables.account.columns[0]");
  EXPECT_THAT(ExpectKeyError(Adapter("    type: sqlite\n    tables:\n      account:\n"
                                     "        columns:\n          - {type: text}\n"),
                             "adapters.db.tables.account.columns[0].attribute"),
              HasSubstr("missing"));
  EXPECT_THAT(ExpectKeyError(Adapter("    type: sqlite\n    tables:\n      account:\n"
                                     "        columns:\n          - {attribute: name, type: "
                                     "varchar}\n"),
                             "adapters.db.tables.account.columns[0].type"),
              HasSubstr("got 'varchar'"));
  ExpectKeyError(Adapter("    type: sqlite\n    tables:\n      account:\n"
                         "        columns:\n          - {attribute: name}\n"),
                 "adapters.db.tables.account.columns[0].type");
  EXPECT_THAT(ExpectKeyError(Adapter("    type: sqlite\n    tables:\n      account:\n"
                                     "        columns:\n          - {attribute: accountid, "
                                     "column: id, type: uuid}\n"),
                             "adapters.db.tables.account.columns[0].column"),
              HasSubstr("columns dvrouter manages"));
  EXPECT_THAT(ExpectKeyError(Adapter("    type: sqlite\n    tables:\n      account:\n"
                                     "        columns:\n"
                                     "          - {attribute: name, type: text}\n"
                                     "          - {attribute: name, type: text}\n"),
                             "adapters.db.tables.account.columns[1].column"),
              HasSubstr("appears twice"));
  ExpectKeyError(Adapter("    type: sqlite\n    tables:\n      account:\n"
                         "        columns:\n          - {attribute: name, type: text, size: 5}\n"),
                 "adapters.db.tables.account.columns[0].size");
  ExpectKeyError(Adapter("    type: sqlite\n    tables:\n      account:\n        tabel: a\n"),
                 "adapters.db.tables.account.tabel");
  EXPECT_THAT(ExpectKeyError(Adapter("    type: sqlite\n    tables:\n      account:\n"
                                     "        table: same\n      contact:\n        table: same\n"),
                             "adapters.db.tables.contact.table"),
              HasSubstr("mapped twice"));
}

TEST(ClickHouseConfig, DefaultsWantFewLargeInserts) {
  Config c = ParseOk(Adapter("    type: clickhouse\n"));
  ASSERT_EQ(c.adapters.size(), 1u);
  const AdapterConfig& a = c.adapters[0];
  EXPECT_EQ(a.max_batch_events, 10'000u);
  EXPECT_EQ(a.linger_ms, 1000u);
  EXPECT_EQ(a.Settings<ClickHouseConfig>().url, "http://127.0.0.1:8123");
  EXPECT_EQ(a.Settings<ClickHouseConfig>().database, "default");
  EXPECT_EQ(a.Settings<ClickHouseConfig>().table, "dvrouter_events");
  EXPECT_TRUE(a.Settings<ClickHouseConfig>().gzip);
  EXPECT_TRUE(a.Settings<ClickHouseConfig>().create_table);
  // An explicit batch section still wins.
  Config small =
      ParseOk(Adapter("    type: clickhouse\n    batch: {max_events: 100, linger: 5ms}\n"));
  EXPECT_EQ(small.adapters[0].max_batch_events, 100u);
  EXPECT_EQ(small.adapters[0].linger_ms, 5u);
}

TEST(ClickHouseConfig, FullExample) {
  ::setenv("DVROUTER_TEST_CHPASSWORD", "ch-secret", 1);
  Config c =
      ParseOk(Adapter("    type: clickhouse\n"
                      "    url: https://ch.internal:8443\n"
                      "    database: crm\n"
                      "    table: changes\n"
                      "    user: router\n"
                      "    password: ${DVROUTER_TEST_CHPASSWORD}\n"
                      "    compression: none\n"
                      "    max_insert_bytes: 8MiB\n"
                      "    connections: 4\n"
                      "    request_timeout: 2m\n"
                      "    columns:\n"
                      "      - {attribute: Revenue, type: Float64}\n"
                      "      - {attribute: modifiedon, column: modified, type: DateTime}\n"));
  const ClickHouseConfig& ch = c.adapters[0].Settings<ClickHouseConfig>();
  EXPECT_EQ(ch.url, "https://ch.internal:8443");
  EXPECT_EQ(ch.database, "crm");
  EXPECT_EQ(ch.table, "changes");
  EXPECT_EQ(ch.password, "ch-secret");
  EXPECT_FALSE(ch.gzip);
  EXPECT_EQ(ch.max_insert_bytes, 8u << 20);
  EXPECT_EQ(ch.connections, 4u);
  EXPECT_EQ(ch.request_timeout_ms, 120'000u);
  ASSERT_EQ(ch.columns.size(), 2u);
  EXPECT_EQ(ch.columns[0].attribute, "revenue");
  EXPECT_EQ(ch.columns[0].column, "revenue");
  EXPECT_EQ(ch.columns[1].column, "modified");
  EXPECT_EQ(DescribeConfig(c).find("ch-secret"), std::string::npos);
  ::unsetenv("DVROUTER_TEST_CHPASSWORD");
}

TEST(ClickHouseConfig, Errors) {
  for (const char* url : {"ch:8123", "http://ch:8123/path", "http://ch:8123?x=1",
                          "http://u:p@ch:8123", "http://", "ftp://ch"}) {
    ExpectKeyError(Adapter("    type: clickhouse\n    url: \"" + std::string(url) + "\"\n"),
                   "adapters.db.url");
  }
  ExpectKeyError(Adapter("    type: clickhouse\n    table: \"x; DROP\"\n"), "adapters.db.table");
  ExpectKeyError(Adapter("    type: clickhouse\n    database: 1db\n"), "adapters.db.database");
  EXPECT_THAT(ExpectKeyError(Adapter("    type: clickhouse\n    compression: lz4\n"),
                             "adapters.db.compression"),
              HasSubstr("gzip or none"));
  ExpectKeyError(Adapter("    type: clickhouse\n    password: plain\n"), "adapters.db.password");
  ExpectKeyError(Adapter("    type: clickhouse\n    connections: 0\n"), "adapters.db.connections");
  ExpectKeyError(Adapter("    type: clickhouse\n    max_insert_bytes: 1KiB\n"),
                 "adapters.db.max_insert_bytes");
  EXPECT_THAT(ExpectKeyError(Adapter("    type: clickhouse\n    columns:\n"
                                     "      - {attribute: a, type: Decimal}\n"),
                             "adapters.db.columns[0].type"),
              HasSubstr("got 'Decimal'"));
  EXPECT_THAT(ExpectKeyError(Adapter("    type: clickhouse\n    columns:\n"
                                     "      - {attribute: a, column: seq, type: Int64}\n"),
                             "adapters.db.columns[0].column"),
              HasSubstr("columns dvrouter manages"));
  ExpectKeyError(Adapter("    type: clickhouse\n    columns:\n      - {type: Int64}\n"),
                 "adapters.db.columns[0].attribute");
  ExpectKeyError(Adapter("    type: clickhouse\n    columns: revenue\n"), "adapters.db.columns");
  ExpectKeyError(Adapter("    type: clickhouse\n    path: /x\n"), "adapters.db.path");
}

std::string Erp(std::string_view body) {
  return "ingress:\n  auth:\n    mode: none\nadapters:\n  erp:\n    type: erp\n" +
         std::string(body);
}
constexpr const char* kRequest =
    "    requests:\n"
    "      - path: /api/orders\n"
    "        body: '{\"id\": {{header.row_id}}}'\n";

TEST(ErpConfig, AFullExample) {
  ::setenv("DVROUTER_TEST_ERP_SECRET", "erp-secret", 1);
  Config c =
      ParseOk(Erp("    base_url: https://erp.example.com/sap/opu/odata/\n"
                  "    request_timeout: 10s\n"
                  "    concurrency: {max: 200, adaptive: false}\n"
                  "    auth:\n"
                  "      mode: oauth2\n"
                  "      token_url: https://login.example.com/token\n"
                  "      client_id: dvrouter\n"
                  "      client_secret: ${DVROUTER_TEST_ERP_SECRET}\n"
                  "      scope: api://erp/.default\n"
                  "    requests:\n"
                  "      - name: orders\n"
                  "        tables: [SalesOrder]\n"
                  "        messages: [Create]\n"
                  "        method: PUT\n"
                  "        path: /orders/{{header.row_id}}\n"
                  "        headers: {X-Source: dvrouter}\n"
                  "        body: '{\"customer\": {{target.customerid.id}}, \"lines\": "
                  "{{target}}}'\n"
                  "        capture: {order_number: /d/SalesOrder}\n"));
  const ErpConfig& e = c.adapters[0].Settings<ErpConfig>();
  EXPECT_EQ(e.base_url, "https://erp.example.com/sap/opu/odata");
  EXPECT_EQ(e.request_timeout_ms, 10'000u);
  EXPECT_EQ(e.max_concurrency, 200u);
  EXPECT_FALSE(e.adaptive);
  EXPECT_EQ(e.auth.client_secret, "erp-secret");
  ASSERT_EQ(e.requests.size(), 1u);
  EXPECT_EQ(e.requests[0].tables, std::vector<std::string>{"salesorder"});
  EXPECT_EQ(e.requests[0].messages, std::vector<std::string>{"create"});
  EXPECT_EQ(e.requests[0].method, "PUT");
  ASSERT_EQ(e.requests[0].capture.size(), 1u);
  EXPECT_EQ(e.requests[0].capture[0].second, "/d/SalesOrder");
  EXPECT_EQ(DescribeConfig(c).find("erp-secret"), std::string::npos);
  ::unsetenv("DVROUTER_TEST_ERP_SECRET");
}

TEST(ErpConfig, Errors) {
  ExpectKeyError(Erp(kRequest), "adapters.erp.base_url");
  ExpectKeyError(Erp("    base_url: erp.example.com\n" + std::string(kRequest)),
                 "adapters.erp.base_url");
  ExpectKeyError(Erp("    base_url: http://erp\n"), "adapters.erp.requests");
  ExpectKeyError(Erp("    base_url: http://erp\n    requests: []\n"), "adapters.erp.requests");
  const std::string base = "    base_url: http://erp\n    requests:\n      - ";
  ExpectKeyError(Erp(base + "path: api\n"), "adapters.erp.requests[0].path");
  EXPECT_THAT(ExpectKeyError(Erp(base + "path: /x\n        method: GET\n"),
                             "adapters.erp.requests[0].method"),
              HasSubstr("POST, PUT, PATCH or DELETE"));
  EXPECT_THAT(ExpectKeyError(Erp(base + "path: /x\n        body: '{\"a\": {{target.name}'\n"),
                             "adapters.erp.requests[0].body"),
              HasSubstr("unclosed"));
  EXPECT_THAT(ExpectKeyError(Erp(base + "path: /x\n        body: '{\"a\": {{secret.key}}}'\n"),
                             "adapters.erp.requests[0].body"),
              HasSubstr("unknown placeholder"));
  EXPECT_THAT(ExpectKeyError(Erp(base + "path: /x\n        body: '{\"a\": \"{{target.name}}\"}'\n"),
                             "adapters.erp.requests[0].body"),
              HasSubstr("without quotes"));
  ExpectKeyError(Erp(base + "path: /x\n        body: '{\"a\": 1'\n"),
                 "adapters.erp.requests[0].body");
  ExpectKeyError(Erp(base + "path: /x\n        capture: {n: orderNumber}\n"),
                 "adapters.erp.requests[0].capture.n");
  ExpectKeyError(Erp(base + "path: /x/{{header.nope}}\n"), "adapters.erp.requests[0].path");
  ExpectKeyError(Erp(base + "path: /x\n        headers: [a]\n"),
                 "adapters.erp.requests[0].headers");
  ExpectKeyError(Erp(base + "path: /x\n        retries: 3\n"), "adapters.erp.requests[0].retries");
  const std::string req = std::string(kRequest);
  ExpectKeyError(Erp("    base_url: http://erp\n    auth: {mode: kerberos}\n" + req),
                 "adapters.erp.auth.mode");
  ExpectKeyError(Erp("    base_url: http://erp\n    auth: {mode: basic}\n" + req),
                 "adapters.erp.auth.user");
  ExpectKeyError(
      Erp("    base_url: http://erp\n    auth: {mode: basic, user: u, password: pw}\n" + req),
      "adapters.erp.auth.password");
  ExpectKeyError(Erp("    base_url: http://erp\n    auth: {mode: api_key}\n" + req),
                 "adapters.erp.auth.key");
  ExpectKeyError(Erp("    base_url: http://erp\n    auth: {mode: oauth2, client_id: x}\n" + req),
                 "adapters.erp.auth.token_url");
  ExpectKeyError(Erp("    base_url: http://erp\n    concurrency: {max: 0}\n" + req),
                 "adapters.erp.concurrency.max");
}

// A dataverse write-back adapter named crm, reporting the ERP adapter; `body` adds its keys.
std::string Writeback(std::string_view body, std::string_view routes = "") {
  return Erp("    base_url: http://erp\n" + std::string(kRequest)) +
         "  crm:\n    type: dataverse\n" + std::string(body) + std::string(routes);
}
constexpr const char* kWriteback =
    "    source: erp\n"
    "    url: https://contoso.crm.dynamics.com\n"
    "    auth:\n"
    "      token_url: https://login.example.com/t/oauth2/v2.0/token\n"
    "      client_id: app\n"
    "      client_secret: ${DVROUTER_TEST_DV_SECRET}\n"
    "    status_column: new_integrationstatus\n";
constexpr const char* kValues = "    status_values: {completed: 3, failed: 4}\n";

TEST(DataverseConfig, AFullExample) {
  ::setenv("DVROUTER_TEST_DV_SECRET", "dv-secret\n", 1);
  Config c = ParseOk(Writeback(std::string(kWriteback) +
                               "    status_values: {pending: 0, submitted: 1, processing: 2, "
                               "completed: 3, failed: 4}\n"
                               "    error_column: new_integrationerror\n"
                               "    answer_columns: {new_erpordernumber: order_number}\n"
                               "    entity_sets: {SalesOrder: salesorders}\n"
                               "    max_concurrency: 4\n"
                               "    max_requests_per_second: 10\n"));
  const DataverseConfig& dv = c.FindAdapter("crm")->Settings<DataverseConfig>();
  EXPECT_EQ(dv.source, "erp");
  EXPECT_EQ(dv.client_secret, "dv-secret");
  EXPECT_EQ(dv.scope, "https://contoso.crm.dynamics.com/.default");
  EXPECT_EQ(dv.api_path, "/api/data/v9.2");
  ASSERT_EQ(dv.status_values.size(), 5u);
  EXPECT_EQ(dv.status_values[3], (std::pair<std::string, int64_t>{"completed", 3}));
  EXPECT_EQ(dv.entity_sets[0].first, "salesorder");
  EXPECT_EQ(dv.answer_columns[0].second, "order_number");
  EXPECT_EQ(dv.max_concurrency, 4u);
  EXPECT_THAT(DescribeConfig(c), HasSubstr("client_secret ***"));
  EXPECT_THAT(DescribeConfig(c), Not(HasSubstr("dv-secret")));
}

TEST(DataverseConfig, Errors) {
  ::setenv("DVROUTER_TEST_DV_SECRET", "dv-secret", 1);
  const std::string ok = std::string(kWriteback) + kValues;
  ParseOk(Writeback(ok));
  ExpectKeyError(Writeback(ReplaceAll(ok, "    source: erp\n", "")), "adapters.crm.source");
  ExpectKeyError(Writeback(ReplaceAll(ok, "source: erp", "source: nope")), "adapters.crm.source");
  ExpectKeyError(Writeback(ReplaceAll(ok, "source: erp", "source: crm")), "adapters.crm.source");
  ExpectKeyError(Writeback(ReplaceAll(ok, "https://contoso.crm.dynamics.com", "contoso")),
                 "adapters.crm.url");
  ExpectKeyError(
      Writeback(ReplaceAll(ok, "https://contoso.crm.dynamics.com", "https://c.example/api")),
      "adapters.crm.url");
  ExpectKeyError(Writeback(ReplaceAll(ok, "      client_id: app\n", "")),
                 "adapters.crm.auth.client_id");
  ExpectKeyError(Writeback(ReplaceAll(ok, "client_secret: ${DVROUTER_TEST_DV_SECRET}",
                                      "client_secret: plain")),
                 "adapters.crm.auth.client_secret");
  ExpectKeyError(
      Writeback(ReplaceAll(ok, "status_column: new_integrationstatus", "status_column: 'a b'")),
      "adapters.crm.status_column");
  ExpectKeyError(Writeback(std::string(kWriteback) + "    status_values: {completed: 3}\n"),
                 "adapters.crm.status_values.failed");
  ExpectKeyError(Writeback(std::string(kWriteback) + "    status_values: {done: 3, failed: 4}\n"),
                 "adapters.crm.status_values.done");
  EXPECT_THAT(ExpectKeyError(Writeback(std::string(kWriteback) +
                                       "    status_values: {completed: x, failed: 4}\n"),
                             "adapters.crm.status_values.completed"),
              HasSubstr("option-set value"));
  ExpectKeyError(Writeback(ok + "    entity_sets: {salesorder: 'sales orders'}\n"),
                 "adapters.crm.entity_sets.salesorder");
  ExpectKeyError(Writeback(ok + "    max_concurrency: 100\n"), "adapters.crm.max_concurrency");
  ExpectKeyError(Writeback(ok + "    status: x\n"), "adapters.crm.status");
  // Routed events never go to a write-back adapter: it takes its source's statuses.
  EXPECT_THAT(
      ExpectKeyError(Writeback(ok, "routes:\n  - adapters: [erp, crm]\n"), "routes[0].adapters"),
      HasSubstr("write-back"));
}

TEST(RegistrationConfig, AFullExampleAndErrors) {
  ::setenv("DVROUTER_TEST_DV_SECRET", "dv-secret", 1);
  const std::string base = Writeback(std::string(kWriteback) + kValues);
  const std::string ok =
      "registration:\n"
      "  dataverse: crm\n"
      "  webhook_url: https://router.example.com/webhooks/dataverse\n"
      "  steps:\n"
      "    - table: SalesOrder\n"
      "      messages: [Create, Update]\n"
      "      filtering_attributes: [StatusCode]\n"
      "      images: [{name: post, type: post, attributes: [name]}]\n";
  // Erp() has ingress.auth mode none: registration needs a secret to give Dataverse.
  ExpectKeyError(base + ok, "registration.webhook_url");
  ::setenv("DVROUTER_TEST_HOOK_SECRET", "hook", 1);
  auto with_auth = [&](const std::string& yaml) {
    return ReplaceAll(yaml, "auth:\n    mode: none\n",
                      "auth:\n    mode: webhook_key\n    secret: ${DVROUTER_TEST_HOOK_SECRET}\n");
  };
  Config c = ParseOk(with_auth(base + ok));
  ASSERT_TRUE(c.registration.present);
  ASSERT_EQ(c.registration.steps.size(), 1u);
  const RegistrationStep& st = c.registration.steps[0];
  EXPECT_EQ(st.table, "salesorder");
  EXPECT_EQ(st.stage, 40);
  EXPECT_TRUE(st.async);
  EXPECT_EQ(st.filtering_attributes, std::vector<std::string>{"statuscode"});
  EXPECT_EQ(c.registration.endpoint_name, "dvrouter");
  auto bad = [&](const std::string& from, const std::string& to, const std::string& key) {
    ExpectKeyError(with_auth(base + ReplaceAll(ok, from, to)), key);
  };
  bad("dataverse: crm", "dataverse: erp", "registration.dataverse");
  bad("webhook_url: https://router.example.com/webhooks/dataverse", "webhook_url: router",
      "registration.webhook_url");
  bad("    - table: SalesOrder\n", "    - table: 'sales order'\n", "registration.steps[0].table");
  bad("messages: [Create, Update]", "messages: []", "registration.steps[0].messages");
  bad("messages: [Create, Update]", "messages: ['Create; drop']", "registration.steps[0].messages");
  bad("      filtering_attributes", "      stage: 30\n      filtering_attributes",
      "registration.steps[0].stage");
  bad("      filtering_attributes", "      stage: 20\n      filtering_attributes",
      "registration.steps[0].mode");
  bad("      filtering_attributes", "      mode: later\n      filtering_attributes",
      "registration.steps[0].mode");
  bad("type: post", "type: pre", "registration.steps[0].images[0].type");
  bad("type: post", "type: side", "registration.steps[0].images[0].type");
  bad("{name: post, ", "{", "registration.steps[0].images[0].name");
  bad("      filtering_attributes", "      filter: x\n      filtering_attributes",
      "registration.steps[0].filter");
  ExpectKeyError(with_auth(base + "registration:\n  dataverse: crm\n  webhook_url: https://r\n"),
                 "registration.steps");
}

TEST(ErpConfig, AsyncJobs) {
  ::setenv("DVROUTER_TEST_CB_SECRET", "cb", 1);
  const std::string req = std::string(kRequest);
  Config c =
      ParseOk(Erp("    base_url: http://erp\n    async:\n      status_pointer: /state\n"
                  "      completed: [OK]\n      failed: [KO]\n"
                  "      callback: {secret: '${DVROUTER_TEST_CB_SECRET}', "
                  "public_url: 'https://router.example.com/'}\n"
                  "      poll: {interval: 2s, timeout: 1h,\n"
                  "             allowed_origins: [https://Jobs.Example.com, 'http://[::1]:81']}\n" +
                  req));
  const ErpAsync& as = c.adapters[0].Settings<ErpConfig>().async;
  EXPECT_EQ(as.status_pointer, "/state");
  EXPECT_EQ(as.completed, std::vector<std::string>{"OK"});
  EXPECT_EQ(as.callback_secret, "cb");
  EXPECT_EQ(as.public_url, "https://router.example.com");
  EXPECT_EQ(as.poll_interval_ms, 2000u);
  EXPECT_EQ(as.poll_allowed_origins,
            (std::vector<std::string>{"https://jobs.example.com:443", "http://[::1]:81"}));
  EXPECT_EQ(ParseOk(Erp("    base_url: http://erp\n" + req))
                .adapters[0]
                .Settings<ErpConfig>()
                .async.poll_interval_ms,
            0u);  // no polling unless asked for
  auto bad = [&](const std::string& async, const std::string& key) {
    ExpectKeyError(Erp("    base_url: http://erp\n    async:\n" + async + req), key);
  };
  bad("      status_pointer: state\n", "adapters.erp.async.status_pointer");
  bad("      completed: []\n", "adapters.erp.async.completed");
  bad("      callback: {public_url: 'https://r'}\n", "adapters.erp.async.callback.secret");
  bad("      callback: {secret: plain}\n", "adapters.erp.async.callback.secret");
  bad("      callback: {secret: '${DVROUTER_TEST_CB_SECRET}', public_url: router}\n",
      "adapters.erp.async.callback.public_url");
  bad("      poll: {interval: 1ms}\n", "adapters.erp.async.poll.interval");
  bad("      poll: {url_pointer: statusUrl}\n", "adapters.erp.async.poll.url_pointer");
  for (const char* origin : {"ftp://jobs", "https://jobs/path", "https://user@jobs", "jobs"}) {
    bad(std::string("      poll: {allowed_origins: ['") + origin + "']}\n",
        "adapters.erp.async.poll.allowed_origins");
  }
  bad("      webhook: x\n", "adapters.erp.async.webhook");
  ExpectKeyError(Erp("    base_url: http://erp\n    profile: sap\n" + req), "adapters.erp.profile");
  ExpectKeyError(Erp("    base_url: http://erp\n    profile: sap_odata\n    csrf_path: x\n" + req),
                 "adapters.erp.csrf_path");
}

// Which tables an SQL adapter writes: an explicit list, else what its routes and mappings name,
// else (a catch-all route) any, bounded by create_tables_limit.
TEST(SqlConfig, TablesAllowedIsTheListOrFollowsTheRoutes) {
  Config listed = ParseOk(Adapter("    type: sqlite\n    tables_allowed: [Contact, account]\n"));
  const SqlConfig& l = listed.adapters[0].Settings<SqlConfig>();
  EXPECT_FALSE(l.any_table);
  EXPECT_TRUE(l.Allows("contact"));
  EXPECT_TRUE(l.Allows("account"));
  EXPECT_FALSE(l.Allows("lead"));

  Config routed =
      ParseOk(Adapter("    type: sqlite\n    tables:\n      lead: {}\n"
                      "  lake: {type: lake}\nroutes:\n"
                      "  - {tables: [contact], adapters: [db]}\n"
                      "  - {adapters: [lake]}\n"));
  const SqlConfig& r = routed.adapters[0].Settings<SqlConfig>();
  EXPECT_FALSE(r.any_table);
  EXPECT_TRUE(r.Allows("contact"));
  EXPECT_TRUE(r.Allows("lead")) << "mapped tables are allowed";
  EXPECT_FALSE(r.Allows("account")) << "no route sends account here";

  Config catch_all =
      ParseOk(Adapter("    type: sqlite\n    create_tables_limit: 3\n"
                      "routes:\n  - {adapters: [db]}\n"));
  const SqlConfig& a = catch_all.adapters[0].Settings<SqlConfig>();
  EXPECT_TRUE(a.any_table);
  EXPECT_TRUE(a.Allows("anything"));
  EXPECT_EQ(a.create_tables_limit, 3u);

  ExpectKeyError(Adapter("    type: sqlite\n    tables_allowed: [\"a b\"]\n"),
                 "adapters.db.tables_allowed");
  ExpectKeyError(Adapter("    type: sqlite\n    create_tables_limit: 0\n"),
                 "adapters.db.create_tables_limit");
}

// The router's own tables (dvrouter_...) cannot be reached through a mapping or a prefix, and hard
// deletes need a prefix.
TEST(SqlConfig, TheRoutersTableNamesAreReserved) {
  EXPECT_THAT(ExpectKeyError(Adapter("    type: sqlite\n    table_prefix: dvrouter_\n"),
                             "adapters.db.table_prefix"),
              HasSubstr("reserved"));
  EXPECT_THAT(ExpectKeyError(Adapter("    type: sqlite\n    tables:\n      contact:\n"
                                     "        table: dvrouter_tombstones\n"),
                             "adapters.db.tables.contact.table"),
              HasSubstr("reserved"));
  EXPECT_THAT(ExpectKeyError(Adapter("    type: sqlite\n    table_prefix: ''\n    delete: hard\n"),
                             "adapters.db.delete"),
              HasSubstr("table_prefix"));
  ParseOk(Adapter("    type: sqlite\n    table_prefix: ''\n"));
}

}  // namespace
}  // namespace dvrouter
