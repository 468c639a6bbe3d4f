// The ERP adapter end to end: webhooks posted to a dvrouter child process, delivered to the ERP
// simulator (tests/simulators/erp_simulator.cc, a separate process speaking HTTP), with the
// simulator's faults switched on and off: an outage, a 429 storm, a record the ERP refuses,
// answers slower than the adapter's timeout, OAuth tokens. Plus unit tests of Retry-After
// parsing, answer capture and the configuration's malformed forms.
#include "adapters/erp/callback_token.h"
#include "adapters/erp/erp_adapter.h"
#include "adapters/erp/erp_config.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <sys/wait.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "tests/support/http_client.h"
#include "tests/support/router_process.h"
#include "tests/support/sim_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::HttpClient;

// The simulator as a child process on a free port.
class ErpSim : public testing::SimProcess {
 public:
  explicit ErpSim(const testing::TempDir& tmp, const std::vector<std::string>& flags = {})
      : SimProcess(DVROUTER_ERP_SIM, "erp-sim", tmp, flags) {}
};

// Event k of record r: an update of msdyn_agentstatus row r.
std::string Event(int r, int k) {
  static const std::string base = testing::Fixture("update-msdyn_agentstatus-postop-async.json");
  char op[40], row[40];
  std::snprintf(op, sizeof(op), "%08x-4444-4000-8000-%012d", r, k);
  std::snprintf(row, sizeof(row), "3d1feef9-604d-ef11-bfe3-%012d", r);
  return testing::ReplaceAll(testing::ReplaceAll(base, "1a14c3ec-9c50-ef11-bfe3-00224802dbb1", op),
                             "3d1feef9-604d-ef11-bfe3-6045bd03d9d8", row);
}
std::string Row(int r) {
  char row[40];
  std::snprintf(row, sizeof(row), "3d1feef9-604d-ef11-bfe3-%012d", r);
  return row;
}

// A router delivering everything to the simulator; `auth` holds YAML lines of the adapter
// (indented by four).
class ErpRouter {
 public:
  ErpRouter(const testing::TempDir& tmp, const ErpSim& sim, const std::string& auth = "",
            const std::string& request_timeout = "2s")
      : ErpRouter(tmp, sim.url(), auth, request_timeout) {}
  ErpRouter(const testing::TempDir& tmp, const std::string& base_url, const std::string& auth = "",
            const std::string& request_timeout = "2s")
      : log_(tmp.path() + "/router.log") {
    testing::WriteFileOrDie(log_, "");
    testing::WriteFileOrDie(tmp.path() + "/router.yaml",
                            "ingress:\n"
                            "  auth: {mode: none}\n"
                            "journal:\n"
                            "  partitions: 16\n"
                            "adapters:\n"
                            "  erp:\n"
                            "    type: erp\n"
                            "    base_url: " +
                                base_url +
                                "\n"
                                "    request_timeout: " +
                                request_timeout +
                                "\n"
                                "    retry: {initial_backoff: 20ms, max_backoff: 300ms}\n"
                                "    breaker: {failures: 5, open_for: 100ms}\n" +
                                auth +
                                "    requests:\n"
                                "      - name: orders\n"
                                "        tables: [msdyn_agentstatus]\n"
                                "        path: /api/orders\n"
                                "        body: '{\"crm_id\": {{header.row_id}}, \"seq\": "
                                "{{event.seq}}, \"capacity\": "
                                "{{target.msdyn_availableunitscapacity}}, \"agent\": "
                                "{{target.msdyn_agentid.id}}}'\n"
                                "        capture: {order_number: /orderNumber}\n"
                                "routes:\n"
                                "  - adapters: [erp]\n");
    router_ = std::make_unique<testing::RouterProcess>(tmp, log_);
    ready_ = router_->WaitReady(1);
  }
  ~ErpRouter() {
    router_->child().Kill(SIGTERM);
    router_->child().Wait();
  }
  bool ready() const { return ready_; }
  std::string log() const { return testing::ReadFileOrDie(log_); }
  // Posts and returns the event id (empty if not accepted).
  std::string Post(const std::string& body) {
    testing::HttpReply r = client().Post("/webhooks/dataverse", body);
    EXPECT_EQ(r.status, 200) << r.body;
    return testing::JsonStringField(r.body, "event_id");
  }
  std::string Status(const std::string& id) {
    return HttpClient(router_->admin_port).Get("/events/" + id).body;
  }
  std::string Admin(const std::string& method, const std::string& target) {
    return HttpClient(router_->admin_port).Request(method, target).body;
  }
  double Metric(const std::string& prefix) {
    return testing::MetricSum(router_->admin_port, prefix);
  }

 private:
  HttpClient& client() {
    if (!client_) client_ = std::make_unique<HttpClient>(router_->port);
    return *client_;
  }
  std::string log_;
  std::unique_ptr<testing::RouterProcess> router_;
  std::unique_ptr<HttpClient> client_;
  bool ready_ = false;
};

TEST(ErpEndToEnd, OrdersAreCreatedInPerRecordOrderAndTheOrderNumberIsCaptured) {
  testing::TempDir tmp;
  ErpSim sim(tmp, {"--latency-ms", "5"});
  ASSERT_TRUE(sim.ready()) << sim.log();
  ErpRouter router(tmp, sim);
  ASSERT_TRUE(router.ready()) << router.log();
  constexpr int kRecords = 20, kEach = 5;
  std::string last_id;
  for (int k = 0; k < kEach; ++k) {
    for (int r = 0; r < kRecords; ++r) last_id = router.Post(Event(r, k));
  }
  ASSERT_TRUE(testing::WaitFor([&] { return sim.Stat("created") == kRecords * kEach; }))
      << sim.Stats() << "\n"
      << router.log();
  EXPECT_EQ(sim.Stat("order_violations"), 0);
  EXPECT_EQ(sim.Stat("duplicates"), 0);
  EXPECT_TRUE(testing::WaitFor([&] {
    return router.Status(last_id).find("\"completed\"") != std::string::npos;
  })) << router.Status(last_id);
  const std::string status = router.Status(last_id);
  EXPECT_NE(status.find("order_number"), std::string::npos) << status;
  EXPECT_NE(status.find("SO-"), std::string::npos) << status;
  // The simulator counts an order when it takes the call, the router when the answer arrives.
  EXPECT_TRUE(testing::WaitFor([&] {
    return router.Metric("dvrouter_erp_requests_total{adapter=\"erp\",answer=\"2xx\"}") ==
           kRecords * kEach;
  }));
}

TEST(ErpEndToEnd, AnOutageLeavesEventsPendingThenEverythingCompletesInOrder) {
  testing::TempDir tmp;
  ErpSim sim(tmp);
  ASSERT_TRUE(sim.ready()) << sim.log();
  ErpRouter router(tmp, sim);
  ASSERT_TRUE(router.ready()) << router.log();
  sim.Control("outage=1");
  constexpr int kRecords = 10, kEach = 4;
  std::string first_id;
  for (int k = 0; k < kEach; ++k) {
    for (int r = 0; r < kRecords; ++r) {
      const std::string id = router.Post(Event(r, k));
      if (first_id.empty()) first_id = id;
    }
  }
  // The ERP is down: the CRM still got its acknowledgements; events wait, retried.
  ASSERT_TRUE(testing::WaitFor([&] { return sim.Stat("errors_5xx") >= 20; })) << sim.Stats();
  // Its status at the ERP shows it waiting (pending between attempts, submitted during one)
  // after an attempt, with the ERP's 503 as its last error and as the error of a step after
  // the routing's.
  const std::string pending = router.Status(first_id);
  constexpr std::string_view kOutageError = "erp HTTP 503: ";
  simdjson::dom::parser parser;
  simdjson::dom::element erp;
  ASSERT_EQ(parser.parse(pending)["adapters"]["erp"].get(erp), simdjson::SUCCESS) << pending;
  std::string_view state, last_error;
  int64_t attempts = 0;
  ASSERT_EQ(erp["state"].get(state), simdjson::SUCCESS) << pending;
  EXPECT_TRUE(state == "pending" || state == "submitted") << pending;
  ASSERT_EQ(erp["attempts"].get(attempts), simdjson::SUCCESS) << pending;
  EXPECT_GE(attempts, 1) << pending;
  ASSERT_EQ(erp["last_error"].get(last_error), simdjson::SUCCESS) << pending;
  EXPECT_TRUE(last_error.starts_with(kOutageError)) << pending;
  simdjson::dom::array steps;
  ASSERT_EQ(erp["steps"].get(steps), simdjson::SUCCESS) << pending;
  bool failed_step = false;
  for (simdjson::dom::element step : steps) {
    std::string_view error;
    failed_step |= step["error"].get(error) == simdjson::SUCCESS && error.starts_with(kOutageError);
  }
  EXPECT_TRUE(failed_step) << pending;
  EXPECT_EQ(sim.Stat("created"), 0);
  sim.Control("outage=0");
  ASSERT_TRUE(testing::WaitFor([&] { return sim.Stat("created") == kRecords * kEach; },
                               std::chrono::seconds(30)))
      << sim.Stats();
  EXPECT_EQ(sim.Stat("order_violations"), 0);
  EXPECT_GT(router.Metric("dvrouter_delivery_retries_total{adapter=\"erp\"}"), 0);
}

TEST(ErpEndToEnd, A429StormIsHonouredWithRetryAfter) {
  testing::TempDir tmp;
  ErpSim sim(tmp);
  ASSERT_TRUE(sim.ready()) << sim.log();
  ErpRouter router(tmp, sim);
  ASSERT_TRUE(router.ready()) << router.log();
  sim.Control("ratelimit=15&retry_after=1");
  for (int r = 0; r < 15; ++r) router.Post(Event(r, 0));
  ASSERT_TRUE(testing::WaitFor([&] { return sim.Stat("created") == 15; }, std::chrono::seconds(30)))
      << sim.Stats();
  EXPECT_EQ(sim.Stat("rate_limited"), 15);
  // No event came back sooner than the 1 s the ERP asked for.
  EXPECT_GE(sim.Stat("min_gap_after_429_ms"), 1000) << sim.Stats();
}

TEST(ErpEndToEnd, ARefusedOrderGoesToTheDlqAndCompletesAfterAReplay) {
  testing::TempDir tmp;
  ErpSim sim(tmp);
  ASSERT_TRUE(sim.ready()) << sim.log();
  ErpRouter router(tmp, sim);
  ASSERT_TRUE(router.ready()) << router.log();
  sim.Control("reject=" + Row(1));
  const std::string refused = router.Post(Event(1, 0));
  router.Post(Event(2, 0));
  ASSERT_TRUE(testing::WaitFor([&] {
    return router.Status(refused).find("\"failed\"") != std::string::npos;
  })) << router.Status(refused);
  const std::string status = router.Status(refused);
  EXPECT_NE(status.find("400"), std::string::npos) << status;
  EXPECT_NE(status.find("customer blocked"), std::string::npos) << status;
  // The status says failed before the DLQ entry is written (the same pass, later).
  std::string dlq;
  EXPECT_TRUE(testing::WaitFor([&] {
    dlq = router.Admin("GET", "/dlq?adapter=erp");
    return dlq.find(refused) != std::string::npos;
  })) << dlq;
  // The other record's order, which may still be on its way.
  EXPECT_TRUE(testing::WaitFor([&] { return sim.Stat("created") == 1; })) << sim.Stats();
  sim.Control("unreject=" + Row(1));
  EXPECT_NE(router.Admin("POST", "/dlq/replay?adapter=erp").find("\"replayed\":1"),
            std::string::npos);
  ASSERT_TRUE(testing::WaitFor([&] {
    return router.Status(refused).find("\"completed\"") != std::string::npos;
  })) << router.Status(refused);
  EXPECT_EQ(sim.Stat("created"), 2);
  // One order per record, the refused one's made by the replay.
  const std::string orders = sim.Get("/_orders");
  EXPECT_NE(orders.find("\"" + Row(1) + "\":[\"SO-"), std::string::npos) << orders;
  EXPECT_NE(orders.find("\"" + Row(2) + "\":[\"SO-"), std::string::npos) << orders;
  EXPECT_EQ(orders.find("\",\"SO-"), std::string::npos) << "a record with two orders: " << orders;
}

TEST(ErpEndToEnd, AnAnswerLostToATimeoutIsAbsorbedByTheIdempotencyKey) {
  testing::TempDir tmp;
  ErpSim sim(tmp);
  ASSERT_TRUE(sim.ready()) << sim.log();
  // Each key's first call is answered after 1.5 s; the adapter gives up after 0.5 s and sends
  // it again: the ERP has already created the order, and answers the resend with it.
  sim.Control("slow_first_ms=1500");
  ErpRouter router(tmp, sim, "", "500ms");
  ASSERT_TRUE(router.ready()) << router.log();
  std::vector<std::string> ids;
  for (int r = 0; r < 5; ++r) ids.push_back(router.Post(Event(r, 0)));
  for (const std::string& id : ids) {
    EXPECT_TRUE(testing::WaitFor(
        [&] { return router.Status(id).find("\"completed\"") != std::string::npos; },
        std::chrono::seconds(30)))
        << router.Status(id);
  }
  EXPECT_EQ(sim.Stat("created"), 5);
  EXPECT_GE(sim.Stat("duplicates"), 5) << sim.Stats();
}

TEST(ErpEndToEnd, OAuthClientCredentialsTokensAreFetchedCachedAndRenewed) {
  testing::TempDir tmp;
  ErpSim sim(tmp, {"--auth", "oauth2:dvrouter:s3cret", "--token-ttl-s", "1"});
  ASSERT_TRUE(sim.ready()) << sim.log();
  ::setenv("DVROUTER_ERP_TEST_SECRET", "s3cret", 1);
  ErpRouter router(tmp, sim,
                   "    auth:\n"
                   "      mode: oauth2\n"
                   "      token_url: " +
                       sim.url() +
                       "/oauth/token\n"
                       "      client_id: dvrouter\n"
                       "      client_secret: ${DVROUTER_ERP_TEST_SECRET}\n");
  ASSERT_TRUE(router.ready()) << router.log();
  for (int r = 0; r < 10; ++r) router.Post(Event(r, 0));
  ASSERT_TRUE(testing::WaitFor([&] { return sim.Stat("created") == 10; })) << sim.Stats();
  EXPECT_EQ(sim.Stat("unauthorized"), 0) << sim.Stats();
  const int64_t first_tokens = sim.Stat("tokens_issued");
  EXPECT_GE(first_tokens, 1);
  EXPECT_LE(first_tokens, 2) << "a token per call instead of a cached one";
  // Keep the orders coming until the token's lifetime (1 s) runs out: a new token is fetched
  // before the old one expires, so no call is refused.
  int posted = 10;
  ASSERT_TRUE(testing::WaitFor([&] {
    router.Post(Event(posted++, 0));
    return sim.Stat("tokens_issued") > first_tokens;
  }));
  ASSERT_TRUE(testing::WaitFor([&] { return sim.Stat("created") == posted; })) << sim.Stats();
  EXPECT_EQ(sim.Stat("unauthorized"), 0) << sim.Stats();
}

TEST(ErpEndToEnd, WrongCredentialsAreRetriedNotDeadLettered) {
  testing::TempDir tmp;
  ErpSim sim(tmp, {"--auth", "basic:dvrouter:right"});
  ASSERT_TRUE(sim.ready()) << sim.log();
  ::setenv("DVROUTER_ERP_TEST_PASSWORD", "wrong", 1);
  ErpRouter router(tmp, sim,
                   "    auth:\n"
                   "      mode: basic\n"
                   "      user: dvrouter\n"
                   "      password: ${DVROUTER_ERP_TEST_PASSWORD}\n");
  ASSERT_TRUE(router.ready()) << router.log();
  const std::string id = router.Post(Event(1, 0));
  // Credentials are configuration to fix: the event waits (401 shown) instead of filling the DLQ.
  ASSERT_TRUE(testing::WaitFor([&] { return sim.Stat("unauthorized") >= 3; })) << sim.Stats();
  const std::string status = router.Status(id);
  EXPECT_NE(status.find("401"), std::string::npos) << status;
  EXPECT_EQ(status.find("\"failed\""), std::string::npos) << status;
  EXPECT_EQ(router.Admin("GET", "/dlq?adapter=erp").find(id), std::string::npos);
  EXPECT_EQ(sim.Stat("created"), 0);
}

TEST(ErpEndToEnd, SapGatewayCsrfTokensAreFetchedKeptAndRenewedOnce) {
  testing::TempDir tmp;
  ErpSim sim(tmp);
  ASSERT_TRUE(sim.ready()) << sim.log();
  sim.Control("csrf=1");
  ErpRouter router(tmp, sim, "    profile: sap_odata\n    csrf_path: /api/\n");
  ASSERT_TRUE(router.ready()) << router.log();
  for (int r = 0; r < 5; ++r) router.Post(Event(r, 0));
  ASSERT_TRUE(testing::WaitFor([&] { return sim.Stat("created") == 5; })) << sim.Stats();
  EXPECT_EQ(sim.Stat("csrf_fetches"), 1);  // one token (and session) for every call
  EXPECT_EQ(sim.Stat("csrf_refused"), 0);
  sim.Control("csrf_rotate=1");  // the session ends: the next call is refused, once
  for (int r = 5; r < 10; ++r) router.Post(Event(r, 0));
  ASSERT_TRUE(testing::WaitFor([&] { return sim.Stat("created") == 10; })) << sim.Stats();
  EXPECT_EQ(sim.Stat("csrf_fetches"), 2);
  EXPECT_GE(sim.Stat("csrf_refused"), 1);
  EXPECT_EQ(router.Metric("dvrouter_erp_csrf_fetches_total"), 2);
  EXPECT_EQ(router.Metric("dvrouter_delivery_retries_total{adapter=\"erp\"}"), 0)
      << "a refused token is fetched again within the same call";
  EXPECT_EQ(router.Admin("GET", "/dlq?adapter=erp"), "[]");
}

// The ERP behind HTTPS with a private CA: verified against `ca_file`, calls go through; without
// it (the system's CAs) the certificate is refused, the calls are retried, none dead-lettered.
TEST(ErpEndToEnd, HttpsWithAPrivateCaIsVerified) {
  testing::TempDir tmp;
  std::string error;
  ASSERT_TRUE(testing::MakeSelfSignedCert(tmp.path(), "erp", &error)) << error;
  ErpSim sim(tmp, {"--tls-cert", tmp.path() + "/erp.crt", "--tls-key", tmp.path() + "/erp.key"});
  ASSERT_TRUE(sim.ready()) << sim.log();
  const std::string https = "https://127.0.0.1:" + std::to_string(sim.port());
  {
    testing::TempDir run;
    ErpRouter router(run, https, "    ca_file: " + tmp.path() + "/erp.crt\n");
    ASSERT_TRUE(router.ready()) << router.log();
    for (int r = 0; r < 3; ++r) router.Post(Event(r, 0));
    ASSERT_TRUE(testing::WaitFor([&] {
      return router.Metric("dvrouter_deliveries_total{adapter=\"erp\",outcome=\"delivered\"}") == 3;
    })) << router.log();
  }
  testing::TempDir run;
  ErpRouter untrusted(run, https);
  ASSERT_TRUE(untrusted.ready()) << untrusted.log();
  const std::string id = untrusted.Post(Event(7, 0));
  ASSERT_TRUE(testing::WaitFor([&] {
    return untrusted.Metric("dvrouter_deliveries_total{adapter=\"erp\",outcome=\"retryable\"}") >=
           2;
  }));
  EXPECT_NE(untrusted.Status(id).find("certificate"), std::string::npos) << untrusted.Status(id);
  EXPECT_EQ(untrusted.Metric("dvrouter_deliveries_total{adapter=\"erp\",outcome=\"delivered\"}"),
            0);
  EXPECT_EQ(untrusted.Admin("GET", "/dlq?adapter=erp"), "[]");
}

// Also a value holding a separator or "..": the ERP may decode %2F and %5C, and the request would
// reach another resource than the template names.
// The simulator stopped while answers wait for their latency exits cleanly: its handler (and the
// thread holding those answers) goes before the I/O runtime they are posted to. The other order
// crashed it on SIGTERM in chaos runs (a use after free under ASan).
TEST(ErpSimulator, StopsCleanlyWithAnswersStillWaitingForTheirLatency) {
  testing::TempDir tmp;
  ErpSim sim(tmp, {"--latency-ms", "30000"});
  ASSERT_TRUE(sim.ready());
  std::vector<std::unique_ptr<HttpClient>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<HttpClient>(sim.port()));
    ASSERT_TRUE(clients.back()->Connect());
    const std::string body = R"({"crm_id":"c)" + std::to_string(i) + R"(","seq":1})";
    ASSERT_TRUE(clients.back()->SendRaw(
        "POST /api/orders HTTP/1.1\r\nHost: erp\r\nContent-Type: application/json\r\n"
        "Idempotency-Key: k" +
        std::to_string(i) + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
        body));
  }
  ASSERT_TRUE(testing::WaitFor([&] { return sim.Stat("requests") == 3; }));
  const int status = sim.Stop();
  ASSERT_TRUE(WIFEXITED(status)) << "wait status " << status
                                 << (WIFSIGNALED(status) ? " (killed by a signal)" : "");
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(ErpAdapterUnit, APathPlaceholderThatIsEmptyADotSegmentOrHoldsASeparatorIsPermanent) {
  AdapterConfig c;
  c.name = "erp";
  c.type = "erp";
  c.Settings<ErpConfig>().base_url = "http://127.0.0.1:1";
  ErpRequest q;
  q.name = "orders";
  q.path = "/api/orders/{{header.row_id}}";
  q.body = "{}";
  c.Settings<ErpConfig>().requests = {q};
  ErpAdapter erp(c, nullptr);
  struct Results final : DeliveryDone {
    std::vector<DeliveryResult> got;
    void OnDelivered(std::span<const DeliveryResult> r) override { got.assign(r.begin(), r.end()); }
  };
  const std::string body = testing::Fixture("update-msdyn_agentstatus-postop-async.json");
  for (const char* row : {"", ".", "..", "a/b", "..%2f", "a\\b", "x..y", "../admin"}) {
    EventHeader h;
    h.message_name = "Update";
    h.primary_entity_name = "msdyn_agentstatus";
    h.primary_entity_id = row;
    Delivery d;
    d.header = &h;
    d.body = body;
    Results results;
    erp.Deliver(std::span<const Delivery>(&d, 1), &results);  // refused before any call
    ASSERT_EQ(results.got.size(), 1u) << row;
    EXPECT_EQ(results.got[0].outcome, DeliveryOutcome::kPermanent) << row;
    EXPECT_NE(results.got[0].error.find("dot segment"), std::string::npos) << results.got[0].error;
  }
}

TEST(ErpCallbackToken, IsHmacSha256OfAdapterSlashEventIdInHex) {
  // RFC 4231, test cases 1 and 2.
  EXPECT_EQ(HmacSha256Hex(std::string(20, '\x0b'), "Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(HmacSha256Hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(CallbackToken("s3cret", "erp", "0123"), HmacSha256Hex("s3cret", "erp/0123"));
  EXPECT_EQ(CallbackToken("s3cret", "erp", "0123").size(), 64u);
  EXPECT_NE(CallbackToken("s3cret", "erp", "0123"), CallbackToken("s3cret", "erp", "0124"));
  EXPECT_NE(CallbackToken("s3cret", "erp", "0123"), CallbackToken("s3cret", "erp2", "0123"));
  EXPECT_NE(CallbackToken("s3cret", "erp", "0123"), CallbackToken("other", "erp", "0123"));
}

// A callback carries its event's token (from X-Callback-Url) or the Bearer secret; another
// event's token, a token for the same event id of another adapter, or nothing is refused.
TEST(ErpAdapterUnit, ACallbackIsAuthorizedByItsEventsTokenOrTheBearerSecret) {
  AdapterConfig c;
  c.name = "erp";
  c.type = "erp";
  c.Settings<ErpConfig>().base_url = "http://127.0.0.1:1";
  c.Settings<ErpConfig>().async.callback_secret = "cb-secret";
  ErpAdapter erp(c, nullptr);
  const std::string event = "0123456789abcdef0123456789abcdef";
  const std::string other = "fedcba9876543210fedcba9876543210";
  auto check = [&](const std::string& event_id, const std::string& query,
                   const std::string& authorization) {
    const std::string target = "/callbacks/erp/" + event_id + query;
    return erp.AuthorizeCallback(CallbackCredentials{event_id, target, authorization}).code();
  };
  const std::string own = "?token=" + CallbackToken("cb-secret", "erp", event);
  EXPECT_EQ(check(event, own, ""), StatusCode::kOk);
  EXPECT_EQ(check(event, "?x=1&token=" + CallbackToken("cb-secret", "erp", event), ""),
            StatusCode::kOk);
  EXPECT_EQ(check(event, "", "Bearer cb-secret"), StatusCode::kOk);
  EXPECT_EQ(check(event, "?token=wrong", "Bearer cb-secret"), StatusCode::kOk);
  EXPECT_EQ(check(other, own, ""), StatusCode::kPermissionDenied);
  EXPECT_EQ(check(event, "?token=" + CallbackToken("cb-secret", "erp2", event), ""),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(check(event, "?token=" + CallbackToken("cb-secret", "erp", event).substr(0, 63), ""),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(check(event, "?token=", ""), StatusCode::kPermissionDenied);
  EXPECT_EQ(check(event, "", ""), StatusCode::kPermissionDenied);
  EXPECT_EQ(check(event, "", "Bearer " + CallbackToken("cb-secret", "erp", event)),
            StatusCode::kPermissionDenied);
  Result<DeliveryResult> parsed = erp.ParseCallback(
      CallbackCredentials{other, "/callbacks/erp/" + other + own, ""}, R"({"status":"done"})");
  EXPECT_EQ(parsed.status().code(), StatusCode::kPermissionDenied);
  parsed = erp.ParseCallback(CallbackCredentials{event, "/callbacks/erp/" + event + own, ""},
                             R"({"status":"done"})");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->outcome, DeliveryOutcome::kDelivered);
}

TEST(ErpAdapterUnit, RetryAfterIsReadAsSecondsOrAnHttpDate) {
  EXPECT_EQ(ParseRetryAfter("5", 0), 5000);
  EXPECT_EQ(ParseRetryAfter(" 0 ", 0), 0);
  // Sun, 06 Nov 1994 08:49:37 GMT is 784111777.
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", 784111770), 7000);
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", 784111800), 0);
  EXPECT_EQ(ParseRetryAfter("", 0), -1);
  EXPECT_EQ(ParseRetryAfter("soon", 0), -1);
  EXPECT_EQ(ParseRetryAfter("-3", 0), -1);
  EXPECT_EQ(ParseRetryAfter("99999999999", 0), -1);
}

TEST(ErpAdapterUnit, CaptureReadsJsonPointersAndToleratesOtherAnswers) {
  const std::vector<std::pair<std::string, std::string>> capture = {
      {"order_number", "/orderNumber"}, {"line", "/lines/0/id"}, {"missing", "/nope"}};
  EXPECT_EQ(ErpAdapter::Capture(capture, R"({"orderNumber":"SO-1","lines":[{"id":7}]})"),
            R"({"order_number":"SO-1","line":7,"missing":null})");
  EXPECT_EQ(ErpAdapter::Capture(capture, "<html>not json</html>"),
            R"({"order_number":null,"line":null,"missing":null})");
  EXPECT_EQ(ErpAdapter::Capture({}, "{}"), "");
}

}  // namespace
}  // namespace dvrouter
