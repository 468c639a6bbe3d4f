// The monitoring files of deploy/ checked by the real tools (docs/testing.md, "Monitoring
// checked"): promtool checks the alerting rules and runs their unit tests
// (deploy/prometheus/tests/), then a real Prometheus scrapes a real dvrouter with the shipped
// scrape job and rules, and every PromQL expression of the Grafana dashboard and of the alerts
// must parse and return data. Skipped only when /usr/bin/promtool or /usr/bin/prometheus is
// missing (Debian package prometheus, scripts/install-deps.sh).
#include <gtest/gtest.h>
#include <simdjson.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/http_client.h"
#include "tests/support/router_process.h"
#include "tests/support/sim_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::HttpClient;
using testing::HttpReply;

constexpr const char* kPromtool = "/usr/bin/promtool";
constexpr const char* kPrometheus = "/usr/bin/prometheus";

const std::string kSource = DVROUTER_SOURCE_DIR;
const std::string kAlerts = kSource + "/deploy/prometheus/alerts.yml";
const std::string kScrape = kSource + "/deploy/prometheus/scrape.yml";
const std::string kDashboard = kSource + "/deploy/grafana/dvrouter-dashboard.json";

bool ToolsMissing(std::string* why) {
  for (const char* tool : {kPromtool, kPrometheus}) {
    if (::access(tool, X_OK) != 0) {
      *why = std::string(tool) + " is missing (Debian package prometheus, scripts/install-deps.sh)";
      return true;
    }
  }
  return false;
}

// Runs a tool to completion (killed after `timeout`); its exit status and output.
struct ToolRun {
  int status = -1;
  std::string output;
};
ToolRun RunTool(const testing::TempDir& tmp, const std::string& name, const std::string& binary,
                const std::vector<std::string>& args,
                std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
  const std::string log = tmp.path() + "/" + name + ".log";
  testing::WriteFileOrDie(log, "");
  ToolRun run;
  {
    testing::ChildProcess child(binary, args, log);  // SIGKILLed on timeout by its destructor
    const int status = child.Wait(timeout);
    run.status = status == -1 ? -1 : (WIFEXITED(status) ? WEXITSTATUS(status) : 128);
  }
  run.output = testing::ReadFileOrDie(log);
  return run;
}

std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      char hex[4];
      std::snprintf(hex, sizeof(hex), "%%%02X", c);
      out += hex;
    }
  }
  return out;
}

// A real Prometheus on a free loopback port with its TSDB in `tmp`; stopped (SIGTERM, SIGKILL if
// it lingers) when the object goes, also when the test fails midway, and killed by PDEATHSIG if
// the test runner dies. Independent of any prometheus service on :9090.
class PrometheusServer {
 public:
  PrometheusServer(const testing::TempDir& tmp, const std::string& config_yaml)
      : log_(tmp.path() + "/prometheus.log"), port_(testing::FreeLoopbackPort()) {
    const std::string config = tmp.path() + "/prometheus.yml";
    testing::WriteFileOrDie(config, config_yaml);
    testing::WriteFileOrDie(log_, "");
    std::filesystem::create_directories(tmp.path() + "/tsdb");
    child_ = std::make_unique<testing::ChildProcess>(
        kPrometheus,
        std::vector<std::string>{"--config.file=" + config,
                                 "--storage.tsdb.path=" + tmp.path() + "/tsdb",
                                 "--web.listen-address=127.0.0.1:" + std::to_string(port_)},
        log_);
    ready_ = testing::WaitFor([&] { return HttpClient(port_).Get("/-/ready").status == 200; },
                              std::chrono::seconds(60));
  }
  ~PrometheusServer() {
    child_->Kill(SIGTERM);
    if (child_->Wait(std::chrono::seconds(15)) == -1) {
      child_->Kill(SIGKILL);
      child_->Wait();
    }
  }
  PrometheusServer(const PrometheusServer&) = delete;
  PrometheusServer& operator=(const PrometheusServer&) = delete;

  bool ready() const { return ready_; }
  std::string log() const { return testing::ReadFileOrDie(log_); }
  HttpReply Get(const std::string& target) { return HttpClient(port_).Get(target); }
  HttpReply Query(const std::string& promql) {
    return Get("/api/v1/query?query=" + UrlEncode(promql));
  }

 private:
  std::string log_;
  uint16_t port_;
  std::unique_ptr<testing::ChildProcess> child_;
  bool ready_ = false;
};

// A string member of a JSON object, or "" if absent.
std::string_view StringField(simdjson::dom::element object, const char* key) {
  std::string_view value;
  if (object[key].get(value) != simdjson::SUCCESS) return {};
  return value;
}

// An instant query's outcome: whether it parsed and ran (status success) and how many series
// it returned.
struct QueryResult {
  bool ok = false;
  size_t series = 0;
  std::string error;  // Prometheus's error, or what was wrong with the answer
};
QueryResult Evaluate(PrometheusServer& prometheus, const std::string& promql) {
  QueryResult r;
  const HttpReply reply = prometheus.Query(promql);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(reply.body).get(doc) != simdjson::SUCCESS) {
    r.error = "HTTP " + std::to_string(reply.status) + ", not JSON: " + reply.body.substr(0, 300);
    return r;
  }
  std::string_view status;
  if (doc["status"].get(status) != simdjson::SUCCESS || status != "success") {
    r.error = "status " + std::string(status) + ": " + std::string(StringField(doc, "error"));
    return r;
  }
  std::string_view type;
  simdjson::dom::array result;
  if (doc["data"]["resultType"].get(type) != simdjson::SUCCESS ||
      doc["data"]["result"].get(result) != simdjson::SUCCESS) {
    r.error = "no data.result in " + reply.body.substr(0, 300);
    return r;
  }
  r.ok = true;
  // A scalar answers [time, "value"]: one value.
  r.series = type == "scalar" ? 1 : result.size();
  return r;
}

// Sum of the values of an instant query's vector (0 if none or on error).
double Sum(PrometheusServer& prometheus, const std::string& promql) {
  const HttpReply reply = prometheus.Query(promql);
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  simdjson::dom::array result;
  if (parser.parse(reply.body).get(doc) != simdjson::SUCCESS ||
      doc["data"]["result"].get(result) != simdjson::SUCCESS) {
    return 0;
  }
  double sum = 0;
  for (simdjson::dom::element series : result) {
    std::string_view value;
    if (series["value"].at(1).get(value) == simdjson::SUCCESS) sum += std::stod(std::string(value));
  }
  return sum;
}

// The Grafana variables in a panel expression replaced by concrete values: the interval
// variables by durations that fit a 1 s scrape (Grafana's $__rate_interval is at least four scrape
// intervals), a dashboard variable (templating) by `.*` (the "All" of a regex matcher). An
// unknown variable is left in place and fails the query.
std::string ExpandGrafanaVariables(std::string expr, const std::vector<std::string>& variables) {
  const std::vector<std::pair<std::string, std::string>> builtin = {
      {"__rate_interval", "1m"}, {"__interval_ms", "15000"}, {"__interval", "15s"},
      {"__range_ms", "300000"},  {"__range_s", "300"},       {"__range", "5m"}};
  auto expand = [&](const std::string& name, const std::string& value) {
    expr = testing::ReplaceAll(expr, "${" + name + "}", value);
    expr = testing::ReplaceAll(expr, "$" + name, value);
  };
  for (const auto& [name, value] : builtin) expand(name, value);  // longest names first
  for (const auto& name : variables) expand(name, ".*");
  return expr;
}

// The rule for alert expressions (docs/testing.md, "Monitoring checked"): an alert's expression
// returns nothing while all is well, so each comparison outside label matchers and strings is
// made a `bool` comparison (`a > 0.8 * b` becomes `a > bool 0.8 * b`, also before `on (...)`
// modifiers). Every series it compares is then returned with 0 or 1, and an `and`/`unless`
// between two comparisons still has to match its label sets: a comparison of a series the
// router does not export, or an `and` whose sides never match, returns nothing.
std::string BoolComparisons(const std::string& expr) {
  std::string out;
  int braces = 0;
  char quote = 0;
  for (size_t i = 0; i < expr.size(); ++i) {
    const char c = expr[i];
    out += c;
    if (quote != 0) {
      if (c == '\\' && i + 1 < expr.size()) {
        out += expr[++i];
      } else if (c == quote) {
        quote = 0;
      }
      continue;
    }
    if (c == '"' || c == '\'' || c == '`') {
      quote = c;
      continue;
    }
    if (c == '{') ++braces;
    if (c == '}') --braces;
    if (braces > 0) continue;  // label matchers: =, !=, =~, !~
    const bool two =
        i + 1 < expr.size() && expr[i + 1] == '=' && (c == '=' || c == '!' || c == '<' || c == '>');
    if (!two && c != '<' && c != '>') continue;
    if (two) out += expr[++i];
    size_t next = i + 1;
    while (next < expr.size() && std::isspace(static_cast<unsigned char>(expr[next]))) ++next;
    if (expr.compare(next, 4, "bool") != 0) out += " bool";
  }
  return out;
}

TEST(Monitoring, BoolComparisonsLeaveLabelMatchersAlone) {
  EXPECT_EQ(BoolComparisons(R"(rate(x{a="b",c!="d",e=~"f>g"}[5m]) > 0)"),
            R"(rate(x{a="b",c!="d",e=~"f>g"}[5m]) > bool 0)");
  EXPECT_EQ(BoolComparisons("a > on (i) group_left 0.8 * b"), "a > bool on (i) group_left 0.8 * b");
  EXPECT_EQ(BoolComparisons("a < 4 and on (x) b >= 0 and c == bool 1 and d != 2"),
            "a < bool 4 and on (x) b >= bool 0 and c == bool 1 and d != bool 2");
}

// The shipped rules: `promtool check rules` and every unit test file of deploy/prometheus/tests.
TEST(MonitoringProcess, PromtoolChecksAndTestsTheShippedRules) {
  std::string why;
  if (ToolsMissing(&why)) GTEST_SKIP() << why;
  testing::TempDir tmp;
  const ToolRun check = RunTool(tmp, "check", kPromtool, {"check", "rules", kAlerts});
  EXPECT_EQ(check.status, 0) << check.output;
  std::vector<std::string> tests;
  for (const std::string& name : testing::DirectoryEntries(kSource + "/deploy/prometheus/tests")) {
    if (name.ends_with(".yml") || name.ends_with(".yaml")) {
      tests.push_back(kSource + "/deploy/prometheus/tests/" + name);
    }
  }
  ASSERT_FALSE(tests.empty()) << "no rule unit tests in deploy/prometheus/tests";
  std::vector<std::string> args = {"test", "rules"};
  args.insert(args.end(), tests.begin(), tests.end());
  const ToolRun test = RunTool(tmp, "test", kPromtool, args);
  EXPECT_EQ(test.status, 0) << test.output;
  // Every alert has a unit test.
  std::string test_text;
  for (const auto& t : tests) test_text += testing::ReadFileOrDie(t);
  for (const auto& group : YAML::LoadFile(kAlerts)["groups"]) {
    for (const auto& rule : group["rules"]) {
      if (!rule["alert"]) continue;
      const std::string alert = rule["alert"].as<std::string>();
      EXPECT_NE(test_text.find("alertname: " + alert + "\n"), std::string::npos)
          << alert << " has no unit test in deploy/prometheus/tests";
    }
  }
}

// A Prometheus scrape config from deploy/prometheus/scrape.yml: its job(s) aimed at the router's
// admin port every second, the shipped alerts as rule file, evaluated every second.
std::string PrometheusConfig(uint16_t admin_port) {
  YAML::Node shipped = YAML::LoadFile(kScrape);
  YAML::Node config;
  config["global"]["scrape_interval"] = "1s";
  config["global"]["evaluation_interval"] = "1s";
  config["rule_files"].push_back(kAlerts);
  for (YAML::Node job : shipped["scrape_configs"]) {
    job["scrape_interval"] = "1s";
    for (YAML::Node sc : job["static_configs"]) {
      YAML::Node targets;
      targets.push_back("127.0.0.1:" + std::to_string(admin_port));
      sc["targets"] = targets;
    }
    config["scrape_configs"].push_back(job);
  }
  YAML::Emitter out;
  out << config;
  return out.c_str();
}

// A router with an adapter of every kind, so that every series the dashboard and the alerts name
// exists: the lake and SQLite (local files), the ERP simulator with a Dataverse write-back to the
// Dataverse simulator, and a ClickHouse adapter aimed at a closed port (its inserts fail and are
// retried: retries and an open breaker to show).
std::string RouterConfig(const std::string& erp_url, const std::string& dataverse_url,
                         uint16_t closed_port) {
  return "ingress:\n"
         "  auth: {mode: webhook_key, secret: \"${DVROUTER_MONITORING_TEST_SECRET}\"}\n"
         "journal:\n"
         "  partitions: 4\n"
         "adapters:\n"
         "  lake:\n"
         "    type: lake\n"
         "    roll_interval: 50ms\n"
         "  sql:\n"
         "    type: sqlite\n"
         "  ch:\n"
         "    type: clickhouse\n"
         "    url: http://127.0.0.1:" +
         std::to_string(closed_port) +
         "\n"
         "    batch: {linger: 20ms}\n"
         "    retry: {initial_backoff: 50ms, max_backoff: 200ms}\n"
         "    breaker: {failures: 2, open_for: 200ms}\n"
         "  erp:\n"
         "    type: erp\n"
         "    base_url: " +
         erp_url +
         "\n"
         "    requests:\n"
         "      - path: /api/orders\n"
         "        body: '{\"crm_id\": {{header.row_id}}, \"seq\": {{event.seq}}}'\n"
         "        capture: {order_number: /orderNumber}\n"
         "  crm:\n"
         "    type: dataverse\n"
         "    source: erp\n"
         "    url: " +
         dataverse_url +
         "\n"
         "    auth:\n"
         "      token_url: " +
         dataverse_url +
         "/contoso.onmicrosoft.com/oauth2/v2.0/token\n"
         "      client_id: dvrouter\n"
         "      client_secret: ${DVROUTER_MONITORING_TEST_SECRET}\n"
         "    status_column: new_integrationstatus\n"
         "    status_values: {pending: 1, submitted: 2, processing: 3, completed: 4, failed: 5}\n"
         "routes:\n"
         "  - adapters: [lake, sql, ch, erp]\n"
         // Reconciliation's series; runs only when asked, so nothing needs registering.
         "registration:\n"
         "  dataverse: crm\n"
         "  webhook_url: http://127.0.0.1:1/webhooks/dataverse\n"
         "  steps: [{table: account, messages: [Update]}]\n"
         "reconcile:\n"
         "  interval: 0s\n";
}

TEST(MonitoringProcess, EveryDashboardAndAlertExpressionReturnsDataFromARealScrape) {
  std::string why;
  if (ToolsMissing(&why)) GTEST_SKIP() << why;
  testing::TempDir tmp;
  testing::ScopedEnv secret("DVROUTER_MONITORING_TEST_SECRET", "s3cret");
  testing::SimProcess erp(DVROUTER_ERP_SIM, "erp-sim", tmp, {});
  testing::SimProcess dataverse(DVROUTER_DATAVERSE_SIM, "dataverse-sim", tmp,
                                {"--client", "dvrouter:s3cret"});
  ASSERT_TRUE(erp.ready()) << erp.log();
  ASSERT_TRUE(dataverse.ready()) << dataverse.log();
  const std::string router_log = tmp.path() + "/router.log";
  testing::WriteFileOrDie(router_log, "");
  testing::WriteFileOrDie(tmp.path() + "/router.yaml",
                          RouterConfig(erp.url(), dataverse.url(), testing::FreeLoopbackPort()));
  testing::RouterProcess router(tmp, router_log);
  struct StopRouter {  // SIGTERM first, so that a failing test still leaves a clean shutdown
    testing::RouterProcess& r;
    ~StopRouter() {
      r.child().Kill(SIGTERM);
      r.child().Wait();
    }
  } stop_router{router};
  ASSERT_TRUE(router.WaitReady(1)) << testing::ReadFileOrDie(router_log);

  PrometheusServer prometheus(tmp, PrometheusConfig(router.admin_port));
  ASSERT_TRUE(prometheus.ready()) << prometheus.log();

  // Webhooks so that counters move: every fixture twice (the second time a duplicate), and a
  // request to a wrong path (404).
  {
    HttpClient client(router.port);
    for (int round = 0; round < 2; ++round) {
      for (const std::string& name : testing::FixtureNames()) {
        const HttpReply r = client.Post("/webhooks/dataverse?code=s3cret", testing::Fixture(name));
        EXPECT_TRUE(r.status == 200 || r.status == 400) << name << ": " << r.status << r.body;
      }
    }
    EXPECT_EQ(client.Post("/no-webhook-here", "{}").status, 404);
  }
  // Prometheus has seen the webhooks and the lake's rows, and has scraped the router at least
  // five times (a rate() needs two samples in its window).
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        return Sum(prometheus, "sum(dvrouter_requests_total{outcome=\"duplicate\"})") > 0 &&
               Sum(prometheus, "sum(dvrouter_lake_rows_total)") > 0 &&
               Sum(prometheus, "count_over_time(up{job=\"dvrouter\"}[1m])") >= 5 &&
               Sum(prometheus, "sum(up{job=\"dvrouter\"})") == 1;
      },
      std::chrono::seconds(60)))
      << prometheus.log() << "\n"
      << testing::ReadFileOrDie(router_log);

  // The dashboard: every target's expression.
  simdjson::dom::parser parser;
  simdjson::dom::element dashboard;
  const simdjson::padded_string json = simdjson::padded_string(testing::ReadFileOrDie(kDashboard));
  ASSERT_EQ(parser.parse(json).get(dashboard), simdjson::SUCCESS);
  std::vector<std::string> variables;
  simdjson::dom::array templating;
  if (dashboard["templating"]["list"].get(templating) == simdjson::SUCCESS) {
    for (simdjson::dom::element v : templating) {
      std::string_view name;
      if (v["name"].get(name) == simdjson::SUCCESS) variables.emplace_back(name);
    }
  }
  std::vector<std::pair<std::string, std::string>> exprs;  // where, expression
  std::function<void(simdjson::dom::array)> collect = [&](simdjson::dom::array panels) {
    for (simdjson::dom::element panel : panels) {
      const std::string_view title = StringField(panel, "title");
      simdjson::dom::array targets, nested;
      if (panel["targets"].get(targets) == simdjson::SUCCESS) {
        for (simdjson::dom::element target : targets) {
          std::string_view expr;
          if (target["expr"].get(expr) == simdjson::SUCCESS) {
            exprs.emplace_back("panel \"" + std::string(title) + "\"", std::string(expr));
          }
        }
      }
      if (panel["panels"].get(nested) == simdjson::SUCCESS) collect(nested);  // collapsed rows
    }
  };
  simdjson::dom::array panels;
  ASSERT_EQ(dashboard["panels"].get(panels), simdjson::SUCCESS);
  collect(panels);
  EXPECT_GE(exprs.size(), 40u);
  size_t panel_exprs = exprs.size();
  for (auto& [where, expr] : exprs) expr = ExpandGrafanaVariables(expr, variables);

  // The alerts: each expression by the bool rule above.
  size_t alerts = 0;
  for (const auto& group : YAML::LoadFile(kAlerts)["groups"]) {
    for (const auto& rule : group["rules"]) {
      const std::string name =
          rule["alert"] ? rule["alert"].as<std::string>() : rule["record"].as<std::string>();
      exprs.emplace_back("alert " + name, BoolComparisons(rule["expr"].as<std::string>()));
      ++alerts;
    }
  }
  EXPECT_GE(alerts, 15u);

  for (const auto& [where, expr] : exprs) {
    const QueryResult r = Evaluate(prometheus, expr);
    EXPECT_TRUE(r.ok) << where << ": " << expr << "\n  " << r.error;
    EXPECT_GT(r.series, 0u) << where << " returns no data: " << expr;
  }
  std::cout << "[ INFO     ] " << panel_exprs << " dashboard and " << alerts
            << " alert expressions evaluated\n";

  // Prometheus evaluated every rule without an error (e.g. many-to-many matching).
  std::string rules_json;
  ASSERT_TRUE(testing::WaitFor(
      [&] {
        rules_json = prometheus.Get("/api/v1/rules?type=alert").body;
        return rules_json.find("\"health\":\"unknown\"") == std::string::npos &&
               rules_json.find("\"health\":\"ok\"") != std::string::npos;
      },
      std::chrono::seconds(30)))
      << rules_json;
  simdjson::dom::element rules_doc;
  simdjson::dom::array groups;
  ASSERT_EQ(parser.parse(rules_json).get(rules_doc), simdjson::SUCCESS) << rules_json;
  ASSERT_EQ(rules_doc["data"]["groups"].get(groups), simdjson::SUCCESS) << rules_json;
  size_t evaluated = 0;
  for (simdjson::dom::element group : groups) {
    simdjson::dom::array rules;
    ASSERT_EQ(group["rules"].get(rules), simdjson::SUCCESS);
    for (simdjson::dom::element rule : rules) {
      EXPECT_EQ(StringField(rule, "health"), "ok")
          << StringField(rule, "name") << ": " << StringField(rule, "lastError");
      ++evaluated;
    }
  }
  EXPECT_EQ(evaluated, alerts);
}

}  // namespace
}  // namespace dvrouter
