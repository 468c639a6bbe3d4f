// The ingress over real sockets: a whole App (Beast listeners, journal, metrics) on port 0.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "adapters/adapter.h"
#include "router/app/app.h"
#include "router/journal/file_journal.h"
#include "tests/support/fault_io.h"
#include "tests/support/http_client.h"
#include "tests/support/router_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::HttpClient;
using testing::HttpReply;

constexpr char kContactOperationId[] = "4af10637-4ea2-e711-8122-000d3aa2331c";
constexpr char kContactRowId[] = "6d81597f-0f9f-e711-8122-000d3aa2331c";

std::string GuidFor(int n) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%08x-0000-4000-8000-%012d", n, n);
  return buf;
}

// The contact fixture with its operation (dedupe key) and row varied by n.
std::string ContactEvent(int n) {
  static const std::string base = testing::Fixture("update-contact-postop-async.json");
  return testing::ReplaceAll(testing::ReplaceAll(base, kContactOperationId, GuidFor(n)),
                             kContactRowId, GuidFor(100000 + n % 50));
}

double MetricValue(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

class Ingress : public ::testing::Test {
 protected:
  Config BaseConfig() {
    Config c;
    c.ingress.listen = {"127.0.0.1", 0};
    c.admin.listen = {"127.0.0.1", 0};
    c.journal.data_dir = tmp_.path();
    c.journal.partitions = 8;
    c.ingress.auth.mode = AuthMode::kWebhookKey;
    c.ingress.auth.secret = "s3cret";
    return c;
  }

  void Start(Config c, AppHooks hooks = {}) {
    config_ = c;
    app_ = std::make_unique<App>(std::move(c), hooks);
    Status st = app_->Start();
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  void TearDown() override {
    if (app_) app_->Shutdown();
  }

  uint16_t port() const { return app_->ingress_port(); }
  std::string Url(const std::string& query = "?code=s3cret") const {
    return config_.ingress.path + query;
  }
  std::string Metrics() {
    HttpClient admin(app_->admin_port());
    HttpReply r = admin.Get("/metrics");
    EXPECT_EQ(r.status, 200);
    return r.body;
  }
  double Requests(const std::string& outcome) {
    return MetricValue(Metrics(), "dvrouter_requests_total{outcome=\"" + outcome + "\"}");
  }
  size_t JournalRecords() {
    app_->Shutdown();
    size_t n = 0;
    EXPECT_TRUE(FileJournal::ScanDirectory(tmp_.path() + "/journal", [&](const RecordView&) {
                  ++n;
                  return true;
                }).ok());
    app_.reset();
    return n;
  }

  testing::TempDir tmp_;
  Config config_;
  std::unique_ptr<App> app_;
};

TEST_F(Ingress, EveryFixtureIsAcceptedAndJournaled) {
  Start(BaseConfig());
  HttpClient client(port());
  std::set<std::string> ids;
  for (const std::string& name : testing::FixtureNames()) {
    HttpReply r = client.Post(Url(), testing::Fixture(name));
    EXPECT_EQ(r.status, 200) << name << ": " << r.body;
    const std::string id = testing::JsonStringField(r.body, "event_id");
    ASSERT_EQ(id.size(), 32u) << r.body;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), testing::FixtureNames().size());
  EXPECT_EQ(Requests("accepted"), static_cast<double>(ids.size()));
  EXPECT_EQ(JournalRecords(), ids.size());
}

TEST_F(Ingress, WebhookKeyAuthentication) {
  Start(BaseConfig());
  HttpClient client(port());
  EXPECT_EQ(client.Post(Url("?code=s3cret"), ContactEvent(1)).status, 200);
  EXPECT_EQ(client.Post(Url("?code=wrong"), ContactEvent(2)).status, 401);
  EXPECT_EQ(client.Post(Url("?code=s3cre"), ContactEvent(3)).status, 401);
  EXPECT_EQ(client.Post(Url(""), ContactEvent(4)).status, 401);
  EXPECT_EQ(client.Post(Url("?other=s3cret"), ContactEvent(5)).status, 401);
  EXPECT_EQ(Requests("unauthorized"), 4);
  EXPECT_EQ(JournalRecords(), 1u);
}

TEST_F(Ingress, HttpHeaderAuthentication) {
  Config c = BaseConfig();
  c.ingress.auth.mode = AuthMode::kHttpHeader;
  c.ingress.auth.header = "x-dvrouter-key";
  Start(c);
  HttpClient client(port());
  EXPECT_EQ(client.Post(Url(""), ContactEvent(1), {{"X-Dvrouter-Key", "s3cret"}}).status, 200);
  EXPECT_EQ(client.Post(Url(""), ContactEvent(2), {{"x-dvrouter-key", "nope"}}).status, 401);
  EXPECT_EQ(client.Post(Url("?code=s3cret"), ContactEvent(3)).status, 401);
  EXPECT_EQ(client.Post(Url(""), ContactEvent(4), {{"x-dvrouter-key", ""}}).status, 401);
  EXPECT_EQ(JournalRecords(), 1u);
}

TEST_F(Ingress, HttpQueryStringAuthentication) {
  Config c = BaseConfig();
  c.ingress.auth.mode = AuthMode::kHttpQueryString;
  c.ingress.auth.parameter = "apikey";
  Start(c);
  HttpClient client(port());
  EXPECT_EQ(client.Post(Url("?apikey=s3cret"), ContactEvent(1)).status, 200);
  EXPECT_EQ(client.Post(Url("?x=1&apikey=s3cret"), ContactEvent(2)).status, 200);
  EXPECT_EQ(client.Post(Url("?code=s3cret"), ContactEvent(3)).status, 401);
  EXPECT_EQ(client.Post(Url("?apikey=S3CRET"), ContactEvent(4)).status, 401);
  EXPECT_EQ(JournalRecords(), 2u);
}

TEST_F(Ingress, OnlyPostIsAllowed) {
  Start(BaseConfig());
  HttpClient client(port());
  for (const char* method : {"GET", "PUT", "DELETE", "PATCH"}) {
    HttpReply r = client.Request(method, Url(), method == std::string("GET") ? "" : "{}");
    EXPECT_EQ(r.status, 405) << method;
    EXPECT_EQ(r.headers["allow"], "POST");
  }
  EXPECT_EQ(client.Post("/elsewhere?code=s3cret", ContactEvent(1)).status, 404);
  EXPECT_EQ(Requests("method_not_allowed"), 4);
  EXPECT_EQ(Requests("not_found"), 1);
}

TEST_F(Ingress, MalformedBodiesGet400NamingTheProblem) {
  Start(BaseConfig());
  HttpClient client(port());
  HttpReply r = client.Post(Url(), "{not json");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("\"error\":\"bad_request\""), std::string::npos) << r.body;
  r = client.Post(
      Url(), testing::ReplaceAll(ContactEvent(1), "\"PrimaryEntityId\"", "\"XPrimaryEntityId\""));
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("PrimaryEntityId: missing"), std::string::npos) << r.body;
  r = client.Post(Url(), "");
  EXPECT_EQ(r.status, 400);
  // The connection survives a 400 and serves the next request.
  EXPECT_EQ(client.Post(Url(), ContactEvent(2)).status, 200);
  EXPECT_EQ(Requests("bad_request"), 3);
  EXPECT_EQ(MetricValue(Metrics(), "dvrouter_decode_errors_total"), 3);
  EXPECT_EQ(JournalRecords(), 1u);
}

// Table names are checked at the door: a 400 naming the field, and nothing journaled.
TEST_F(Ingress, TableNamesThatAreNotLogicalNamesGet400NamingTheFieldAndAreNotJournaled) {
  Start(BaseConfig());
  HttpClient client(port());
  int refused = 0;
  for (const std::string& bad : {std::string(300, 'a'), std::string("contacts(x)#"),
                                 std::string("../x"), std::string("Account"), std::string("")}) {
    for (const std::string field : {"PrimaryEntityName", "SecondaryEntityName"}) {
      const std::string from = field == "PrimaryEntityName" ? "\"contact\"" : "\"none\"";
      const std::string body =
          testing::ReplaceAll(ContactEvent(++refused), "\"" + field + "\": " + from,
                              "\"" + field + "\": \"" + bad + "\"");
      HttpReply r = client.Post(Url(), body);
      EXPECT_EQ(r.status, 400) << field << " = " << bad << ": " << r.body;
      EXPECT_NE(r.body.find(field + ": not a Dataverse logical name"), std::string::npos) << r.body;
    }
  }
  EXPECT_EQ(Requests("bad_request"), refused);
  EXPECT_EQ(JournalRecords(), 0u);
}

TEST_F(Ingress, OversizedBodiesGet413) {
  Config c = BaseConfig();
  c.ingress.max_body_bytes = 16 << 10;
  Start(c);
  std::string big = ContactEvent(1);
  big.insert(big.size() - 1, ",\"Pad\":\"" + std::string(20 << 10, 'x') + "\"");
  HttpClient client(port());
  client.set_honor_connection_close(false);
  HttpReply r = client.Post(Url(), big);
  EXPECT_EQ(r.status, 413);
  EXPECT_TRUE(client.WaitClosed(std::chrono::seconds(5)));
  // Chunked, whatever its size: the webhook needs Content-Length, and says so on the header.
  HttpClient chunked(port());
  std::string req = "POST " + Url() + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  char size_line[32];
  std::snprintf(size_line, sizeof(size_line), "%zx\r\n", big.size());
  req += size_line + big + "\r\n0\r\n\r\n";
  ASSERT_TRUE(chunked.SendRaw(req));
  EXPECT_EQ(chunked.ReadReply().status, 411);
  EXPECT_EQ(Requests("too_large"), 1);
  EXPECT_EQ(Requests("bad_request"), 1);
  EXPECT_EQ(JournalRecords(), 0u);
}

TEST_F(Ingress, RefusalsReachClientsThatSendLargeBodiesAnyway) {
  // Without a lingering close, the unread body makes the kernel reset the connection and the
  // client may never see the answer.
  Config c = BaseConfig();
  c.ingress.max_body_bytes = 64 << 10;
  Start(c);
  const std::string huge(4 << 20, 'x');
  HttpClient too_large(port());
  ASSERT_TRUE(too_large.SendRaw("POST " + Url() + " HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                                std::to_string(huge.size()) + "\r\n\r\n"));
  too_large.SendRaw(huge);  // the server may stop reading part-way: ignore a send failure
  EXPECT_EQ(too_large.ReadReply().status, 413);
  HttpClient unauthorized(port());
  const std::string body(48 << 10, 'y');
  ASSERT_TRUE(unauthorized.SendRaw(
      "POST " + Url("?code=nope") +
      " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n"));
  unauthorized.SendRaw(body);
  EXPECT_EQ(unauthorized.ReadReply().status, 401);
}

TEST_F(Ingress, UnauthenticatedClientsAreNotInvitedToSendTheirBody) {
  Start(BaseConfig());
  HttpClient client(port());
  ASSERT_TRUE(client.SendRaw("POST " + Url("?code=nope") +
                             " HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                             "Content-Length: 5000\r\n\r\n"));
  // The first answer is the refusal, not `100 Continue`.
  HttpReply r = client.ReadReply(std::chrono::seconds(5), /*skip_interim=*/false);
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.headers["connection"], "close");
  EXPECT_EQ(Requests("unauthorized"), 1);
}

TEST_F(Ingress, MalformedHttpGets400AndCloses) {
  Start(BaseConfig());
  HttpClient client(port());
  client.set_honor_connection_close(false);
  ASSERT_TRUE(client.SendRaw("THIS IS NOT HTTP\r\n\r\n"));
  EXPECT_EQ(client.ReadReply().status, 400);
  EXPECT_TRUE(client.WaitClosed(std::chrono::seconds(5)));
  HttpClient bad_length(port());
  ASSERT_TRUE(bad_length.SendRaw("POST " + Url() + " HTTP/1.1\r\nContent-Length: abc\r\n\r\n"));
  EXPECT_EQ(bad_length.ReadReply().status, 400);
}

TEST_F(Ingress, DiskBudgetExhaustedGives503WithRetryAfter) {
  Config c = BaseConfig();
  c.journal.segment_bytes = 64 << 10;
  c.journal.disk_budget_bytes = 64 << 10;
  c.journal.compression = false;  // frames as large as the bodies
  c.ingress.retry_after_s = 7;
  Start(c);
  HttpClient client(port());
  int accepted = 0;
  HttpReply refused;
  for (int i = 0; i < 20 && refused.status == 0; ++i) {
    HttpReply r = client.Post(Url(), ContactEvent(i));
    if (r.status == 200) {
      ++accepted;
    } else {
      refused = r;
    }
  }
  EXPECT_EQ(accepted, 8);  // 8 frames of ~8.07 KB fit in 64 KiB, a 9th does not
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.headers["retry-after"], "7");
  EXPECT_NE(refused.body.find("budget"), std::string::npos) << refused.body;
  // A duplicate of a journaled event is still acknowledged: it needs no space.
  EXPECT_EQ(client.Post(Url(), ContactEvent(0)).status, 200);
  EXPECT_EQ(Requests("overloaded"), 1);
  EXPECT_EQ(JournalRecords(), 8u);
}

TEST_F(Ingress, DuplicatesAreAcknowledgedOnce) {
  Start(BaseConfig());
  HttpClient client(port());
  HttpReply first = client.Post(Url(), ContactEvent(9));
  HttpReply second = client.Post(Url(), ContactEvent(9));
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(second.status, 200);
  EXPECT_NE(second.body.find("\"status\":\"duplicate\""), std::string::npos) << second.body;
  EXPECT_EQ(Requests("duplicate"), 1);
  EXPECT_EQ(JournalRecords(), 1u);
}

TEST_F(Ingress, KeepAliveServesManyRequestsOnOneConnection) {
  Start(BaseConfig());
  HttpClient client(port());
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(client.Post(Url(), ContactEvent(i)).status, 200);
    ASSERT_TRUE(client.connected()) << "connection closed after request " << i;
  }
  EXPECT_EQ(JournalRecords(), 50u);
}

TEST_F(Ingress, ExpectContinueIsAnswered) {
  Start(BaseConfig());
  HttpClient client(port());
  std::string body = ContactEvent(1);
  ASSERT_TRUE(client.SendRaw("POST " + Url() + " HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n" +
                             "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n"));
  // The body is sent only once the interim answer arrived, as curl does.
  EXPECT_EQ(client.ReadReply(std::chrono::seconds(5), /*skip_interim=*/false).status, 100);
  ASSERT_TRUE(client.SendRaw(body));
  EXPECT_EQ(client.ReadReply().status, 200);
}

TEST_F(Ingress, ManyConcurrentClients) {
  Start(BaseConfig());
  constexpr int kClients = 16, kEach = 25;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      HttpClient client(port());
      for (int i = 0; i < kEach; ++i) {
        if (client.Post(Url(), ContactEvent(t * kEach + i)).status == 200) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kClients * kEach);
  std::string m = Metrics();
  EXPECT_EQ(MetricValue(m, "dvrouter_requests_total{outcome=\"accepted\"}"), kClients * kEach);
  // Group commit: fewer syncs than events under concurrency is likely but not guaranteed;
  // every event must be in some group.
  EXPECT_EQ(MetricValue(m, "dvrouter_journal_group_commit_events_sum"), kClients * kEach);
  EXPECT_EQ(JournalRecords(), static_cast<size_t>(kClients * kEach));
}

TEST_F(Ingress, SlowClientsAreClosed) {
  Config c = BaseConfig();
  c.ingress.header_timeout_ms = 300;
  c.ingress.body_timeout_ms = 300;
  Start(c);
  HttpClient slow_header(port());
  ASSERT_TRUE(slow_header.SendRaw("POST " + Url() + " HTTP/1.1\r\nHost: x\r\n"));
  EXPECT_TRUE(slow_header.WaitClosed(std::chrono::seconds(5)));
  HttpClient slow_body(port());
  ASSERT_TRUE(slow_body.SendRaw("POST " + Url() + " HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{"));
  EXPECT_TRUE(slow_body.WaitClosed(std::chrono::seconds(5)));
  // Counted by the server as it closes: the client can see the close a moment earlier.
  EXPECT_TRUE(testing::WaitFor([&] {
    return MetricValue(Metrics(), "dvrouter_ingress_timeouts_total") == 2;
  })) << MetricValue(Metrics(), "dvrouter_ingress_timeouts_total");
  // The server still serves others.
  HttpClient fine(port());
  EXPECT_EQ(fine.Post(Url(), ContactEvent(1)).status, 200);
}

// Each phase has its own deadline, and a shorter one takes over from a longer one at once.
TEST_F(Ingress, EachPhaseClosesAtItsOwnTimeout) {
  testing::FaultIo io;
  Config c = BaseConfig();
  c.ingress.io_threads = 1;  // one context, one deadline timer: the order below is exact
  c.ingress.header_timeout_ms = 300;
  c.ingress.body_timeout_ms = 60'000;
  Start(c, AppHooks{&io});
  // The journal holds the request past the header timeout: no deadline runs while the handler
  // has it, so the timer passes and finds nothing to arm. Writing the answer arms it 60 s out
  // (the body timeout); the keep-alive deadline right after must bring it back to 300 ms.
  io.CloseGate();
  HttpClient idle(port());
  std::thread held([&] { EXPECT_EQ(idle.Post(Url(), ContactEvent(1)).status, 200); });
  ASSERT_TRUE(io.WaitUntilBlocked());
  std::this_thread::sleep_for(std::chrono::milliseconds(900));  // three header timeouts
  io.OpenGate();
  held.join();
  const auto served = std::chrono::steady_clock::now();
  EXPECT_TRUE(idle.WaitClosed(std::chrono::seconds(10)));
  const auto waited = std::chrono::steady_clock::now() - served;
  EXPECT_GE(waited, std::chrono::milliseconds(200));
  EXPECT_LT(waited, std::chrono::seconds(10));
  // An idle connection is not a slow client.
  EXPECT_EQ(MetricValue(Metrics(), "dvrouter_ingress_timeouts_total"), 0);
  app_->Shutdown();
  app_.reset();

  // A slow body closes at the body timeout even when the header timeout is far longer, and
  // deadlines of many connections, set at different times, all fire.
  c.ingress.header_timeout_ms = 60'000;
  c.ingress.body_timeout_ms = 300;
  Start(c);
  std::vector<std::unique_ptr<HttpClient>> slow;
  for (int i = 0; i < 5; ++i) {
    slow.push_back(std::make_unique<HttpClient>(port()));
    ASSERT_TRUE(
        slow.back()->SendRaw("POST " + Url() + " HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{"));
    std::this_thread::sleep_for(std::chrono::milliseconds(60));  // staggers the deadlines
  }
  for (auto& client : slow) EXPECT_TRUE(client->WaitClosed(std::chrono::seconds(10)));
  EXPECT_TRUE(testing::WaitFor([&] {
    return MetricValue(Metrics(), "dvrouter_ingress_timeouts_total") == 5;
  })) << MetricValue(Metrics(), "dvrouter_ingress_timeouts_total");
}

// A request the journal holds longer than both timeouts is still answered: the timeouts are
// for clients, not for the router's own work.
TEST_F(Ingress, NoTimeoutWhileTheRouterHoldsTheRequest) {
  testing::FaultIo io;
  Config c = BaseConfig();
  c.ingress.header_timeout_ms = 300;
  c.ingress.body_timeout_ms = 300;
  Start(c, AppHooks{&io});
  io.CloseGate();
  HttpClient client(port());
  std::thread held([&] { EXPECT_EQ(client.Post(Url(), ContactEvent(1)).status, 200); });
  ASSERT_TRUE(io.WaitUntilBlocked());
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // both timeouts, three times
  io.OpenGate();
  held.join();
  EXPECT_EQ(MetricValue(Metrics(), "dvrouter_ingress_timeouts_total"), 0);
  EXPECT_EQ(JournalRecords(), 1u);
}

// Requests sent back to back without waiting for answers are answered in order.
TEST_F(Ingress, PipelinedRequestsAreAnsweredInOrder) {
  Start(BaseConfig());
  HttpClient client(port());
  std::string requests;
  for (int i = 0; i < 3; ++i) {
    const std::string body = ContactEvent(i);
    requests += "POST " + Url() +
                " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\n\r\n" + body;
  }
  ASSERT_TRUE(client.SendRaw(requests));
  for (int i = 0; i < 3; ++i) {
    HttpReply r = client.ReadReply();
    ASSERT_EQ(r.status, 200) << i;
    EXPECT_NE(r.body.find("\"seq\":" + std::to_string(i + 1) + "}"), std::string::npos)
        << i << ": " << r.body;
  }
  EXPECT_EQ(JournalRecords(), 3u);
}

// A HEAD answer carries the length a GET would have, and no body: a body would be read as the
// start of the next answer on a keep-alive connection.
TEST_F(Ingress, HeadAnswersHaveNoBody) {
  Start(BaseConfig());
  HttpClient admin(app_->admin_port());
  HttpReply head = admin.Request("HEAD", "/healthz");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.headers["content-length"], "15");
  EXPECT_EQ(admin.ReadAvailable(std::chrono::milliseconds(300)), "") << "a body followed";
  HttpReply get = admin.Get("/healthz");
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.body, R"({"status":"ok"})");
}

TEST_F(Ingress, ConnectionsBeyondTheLimitAreClosed) {
  Config c = BaseConfig();
  c.ingress.max_connections = 2;
  Start(c);
  auto a = std::make_unique<HttpClient>(port());
  HttpClient b(port());
  ASSERT_EQ(a->Post(Url(), ContactEvent(1)).status, 200);
  ASSERT_EQ(b.Post(Url(), ContactEvent(2)).status, 200);
  HttpClient third(port());
  ASSERT_TRUE(third.Connect());
  EXPECT_TRUE(third.WaitClosed(std::chrono::seconds(5)));
  EXPECT_EQ(MetricValue(Metrics(), "dvrouter_ingress_connections_refused_total"), 1);
  // Closing one frees a slot (once the server has noticed the close).
  a.reset();
  EXPECT_TRUE(testing::WaitFor([&] {
    HttpClient again(port());
    return again.Post(Url(), ContactEvent(3)).status == 200;
  }));
}

TEST_F(Ingress, AcknowledgementWaitsForTheSyncAndSyncsAreShared) {
  testing::FaultIo io;
  Start(BaseConfig(), AppHooks{&io});
  io.CloseGate();
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  clients.emplace_back([&] {
    HttpClient c(port());
    if (c.Post(Url(), ContactEvent(0)).status == 200) ++answered;
  });
  ASSERT_TRUE(io.WaitUntilBlocked());  // the first event's group commit is inside fdatasync
  for (int i = 1; i <= 10; ++i) {
    clients.emplace_back([&, i] {
      HttpClient c(port());
      if (c.Post(Url(), ContactEvent(i)).status == 200) ++answered;
    });
  }
  // The ten later requests reach the journal's queue while the writer is blocked.
  ASSERT_TRUE(testing::WaitFor(
      [&] { return MetricValue(Metrics(), "dvrouter_journal_pending_events") == 10; }));
  EXPECT_EQ(answered.load(), 0) << "a 200 was sent before its fdatasync returned";
  io.OpenGate();
  for (auto& t : clients) t.join();
  EXPECT_EQ(answered.load(), 11);
  const std::string m = Metrics();
  EXPECT_EQ(MetricValue(m, "dvrouter_journal_group_commit_events_sum"), 11);
  EXPECT_EQ(MetricValue(m, "dvrouter_journal_group_commit_events_count"), 2)
      << "the ten queued events must share one fdatasync";
}

TEST_F(Ingress, FailedSyncAnswers503AndTheRetryIsJournaled) {
  testing::FaultIo io;
  Config c = BaseConfig();
  c.ingress.retry_after_s = 3;
  Start(c, AppHooks{&io});
  HttpClient client(port());
  io.sync_errno = EIO;
  HttpReply r = client.Post(Url(), ContactEvent(5));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.headers["retry-after"], "3");
  io.sync_errno = 0;
  // Dataverse's single retry: accepted as new, not as a duplicate of what never became durable.
  r = client.Post(Url(), ContactEvent(5));
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("\"status\":\"accepted\""), std::string::npos) << r.body;
  EXPECT_EQ(MetricValue(Metrics(), "dvrouter_journal_write_errors_total"), 1);
  EXPECT_EQ(JournalRecords(), 1u);
}

TEST_F(Ingress, ReadyOnlyOnceRecoveryHasFinished) {
  {
    Start(BaseConfig());
    HttpClient client(port());
    ASSERT_EQ(client.Post(Url(), ContactEvent(1)).status, 200);
    app_->Shutdown();
    app_.reset();
  }
  // Restart with recovery held at its fdatasync of the existing segment.
  testing::FaultIo io;
  io.CloseGate();
  Config c = BaseConfig();
  app_ = std::make_unique<App>(c, AppHooks{&io});
  config_ = c;
  Status started;
  std::thread starter([&] { started = app_->Start(); });
  ASSERT_TRUE(io.WaitUntilBlocked());
  ASSERT_NE(app_->admin_port(), 0);
  HttpClient admin(app_->admin_port());
  EXPECT_EQ(admin.Get("/healthz").status, 200);
  EXPECT_EQ(admin.Get("/readyz").status, 503);
  EXPECT_EQ(MetricValue(admin.Get("/metrics").body, "dvrouter_ready"), 0);
  EXPECT_EQ(app_->ingress_port(), 0) << "the webhook listener opens only after recovery";
  io.OpenGate();
  starter.join();
  ASSERT_TRUE(started.ok()) << started.ToString();
  EXPECT_EQ(admin.Get("/readyz").status, 200);
  HttpClient client(port());
  EXPECT_NE(client.Post(Url(), ContactEvent(1)).body.find("duplicate"), std::string::npos);
}

// An adapter that takes callbacks and holds each one in ParseCallback until the test opens its
// gate: a confirmation as slow as a DLQ write on a sick disk.
class GatedCallbacks final : public Adapter, public AsyncConfirmations {
 public:
  std::string_view name() const override { return "jobs"; }
  void Deliver(std::span<const Delivery> batch, DeliveryDone* done) override {
    std::vector<DeliveryResult> results(batch.size());
    done->OnDelivered(results);
  }
  void Stop() override {}
  AsyncConfirmations* async_confirmations() override { return this; }
  void SetConfirmationSink(ConfirmationSink*) override {}
  Status AuthorizeCallback(const CallbackCredentials&) const override { return Status::Ok(); }
  Result<DeliveryResult> ParseCallback(const CallbackCredentials&, std::string_view) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++entered_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
    return DeliveryResult{};
  }
  int entered() {
    std::lock_guard<std::mutex> lock(mu_);
    return entered_;
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int entered_ = 0;
  bool open_ = false;
};

// A callback's confirmation runs off the ingress I/O threads: while one is held (the adapter
// still reading it), a webhook on the same single I/O thread is answered, and the callback is
// answered once its confirmation is done.
TEST_F(Ingress, ASlowCallbackConfirmationDoesNotHoldBackWebhooks) {
  Config c = BaseConfig();
  c.ingress.io_threads = 1;
  AdapterConfig jobs;
  jobs.name = "jobs";
  jobs.type = "test";
  c.adapters = {jobs};
  GatedCallbacks* gated = nullptr;
  AppHooks hooks;
  hooks.make_adapter = [&](const AdapterConfig&) -> std::unique_ptr<Adapter> {
    auto a = std::make_unique<GatedCallbacks>();
    gated = a.get();
    return a;
  };
  Start(c, hooks);
  ASSERT_NE(gated, nullptr);
  struct OpenAtExit {
    GatedCallbacks* g;
    ~OpenAtExit() { g->Open(); }  // the app's shutdown waits for the held callback
  } open_at_exit{gated};

  HttpClient callback(port());
  const std::string body = R"({"status":"completed"})";
  ASSERT_TRUE(callback.SendRaw("POST /callbacks/jobs/" + std::string(32, 'a') +
                               " HTTP/1.1\r\nHost: x\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\n\r\n" + body));
  ASSERT_TRUE(testing::WaitFor([&] { return gated->entered() == 1; }));

  HttpClient webhook(port());
  const auto sent = std::chrono::steady_clock::now();
  testing::HttpReply r = webhook.Post(Url(), ContactEvent(1));
  EXPECT_EQ(r.status, 200) << "the webhook waited for the callback's confirmation: " << r.body;
  EXPECT_LT(std::chrono::steady_clock::now() - sent, std::chrono::seconds(5));
  EXPECT_EQ(gated->entered(), 1);  // still held while the webhook was answered

  gated->Open();
  // Confirmed by the adapter, then unknown to the engine: answered, from the worker.
  testing::HttpReply cb = callback.ReadReply();
  EXPECT_EQ(cb.status, 404) << cb.body;
  EXPECT_NE(cb.body.find("status table"), std::string::npos) << cb.body;
}

// HTTPS with a certificate made for the test, driven by curl (a real TLS client).
class IngressTls : public Ingress {
 protected:
  std::string Run(const std::vector<std::string>& args, int* exit_code) {
    const std::string log = tmp_.path() + "/cmd.log";
    testing::WriteFileOrDie(log, "");
    testing::ChildProcess child(args[0], std::vector<std::string>(args.begin() + 1, args.end()),
                                log);
    const int status = child.Wait(std::chrono::seconds(60));
    *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return testing::ReadFileOrDie(log);
  }
  Config TlsConfig() {
    const std::string dir = tmp_.path();
    int rc = 0;
    std::string out = Run({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                           "-keyout", dir + "/key.pem", "-out", dir + "/cert.pem", "-days", "1",
                           "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"},
                          &rc);
    EXPECT_EQ(rc, 0) << out;
    Config c = BaseConfig();
    c.ingress.tls.enabled = true;
    c.ingress.tls.cert_file = dir + "/cert.pem";
    c.ingress.tls.key_file = dir + "/key.pem";
    return c;
  }
};

TEST_F(IngressTls, AcceptsWebhooksOverHttpsWithAVerifiedCertificate) {
  Start(TlsConfig());
  const std::string body_file = tmp_.path() + "/body.json";
  testing::WriteFileOrDie(body_file, ContactEvent(1));
  const std::string url =
      "https://127.0.0.1:" + std::to_string(port()) + "/webhooks/dataverse?code=s3cret";
  int rc = 0;
  std::string out = Run({"/usr/bin/curl", "-sS", "--cacert", tmp_.path() + "/cert.pem",
                         "--data-binary", "@" + body_file, url},
                        &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("\"status\":\"accepted\""), std::string::npos) << out;
  // The same body again over a new TLS connection: a duplicate.
  out = Run({"/usr/bin/curl", "-sS", "--cacert", tmp_.path() + "/cert.pem", "--data-binary",
             "@" + body_file, url},
            &rc);
  EXPECT_NE(out.find("\"status\":\"duplicate\""), std::string::npos) << out;
  // Without the CA the client refuses the server, as it must.
  Run({"/usr/bin/curl", "-sS", "--data-binary", "@" + body_file, url}, &rc);
  EXPECT_NE(rc, 0);
  // Plain HTTP to the HTTPS port gets no answer and counts as a failed handshake.
  HttpClient plain(port());
  plain.set_honor_connection_close(false);
  EXPECT_EQ(plain.Post(Url(), ContactEvent(2)).status, 0);
  EXPECT_TRUE(testing::WaitFor([&] {
    return MetricValue(Metrics(), "dvrouter_ingress_tls_handshake_failures_total") >= 2;
  }));
  EXPECT_EQ(JournalRecords(), 1u);
}

// A client that connects to the HTTPS listener and never starts the handshake is closed at the
// header timeout and counted as a timeout, not as a failed handshake.
TEST_F(IngressTls, AClientThatNeverHandshakesIsClosedAtTheHeaderTimeout) {
  Config c = TlsConfig();
  c.ingress.header_timeout_ms = 300;
  c.ingress.body_timeout_ms = 60'000;
  Start(c);
  HttpClient silent(port());
  ASSERT_TRUE(silent.Connect());
  const auto connected = std::chrono::steady_clock::now();
  EXPECT_TRUE(silent.WaitClosed(std::chrono::seconds(10)));
  EXPECT_GE(std::chrono::steady_clock::now() - connected, std::chrono::milliseconds(250));
  EXPECT_TRUE(testing::WaitFor([&] {
    return MetricValue(Metrics(), "dvrouter_ingress_timeouts_total") == 1;
  })) << MetricValue(Metrics(), "dvrouter_ingress_timeouts_total");
  EXPECT_EQ(MetricValue(Metrics(), "dvrouter_ingress_tls_handshake_failures_total"), 0);
}

// A client may not renegotiate a TLS 1.2 session (a handshake costs the server far more than
// the client: renegotiating in a loop is a cheap way to burn its CPU). OpenSSL 3 refuses
// client-initiated renegotiation by default, but a host's OpenSSL configuration can allow it
// (`Options = ClientRenegotiation`), so the ingress sets SSL_OP_NO_RENEGOTIATION itself. The
// router runs with such a configuration; `openssl s_client -tls1_2` asks to renegotiate (`R`)
// and is refused with the no_renegotiation alert, which ends its connection.
TEST_F(IngressTls, RenegotiationIsRefusedEvenWhenTheHostsOpenSslConfigurationAllowsIt) {
  const std::string dir = tmp_.path();
  std::string error;
  ASSERT_TRUE(testing::MakeSelfSignedCert(dir, "server", &error)) << error;
  testing::WriteFileOrDie(dir + "/openssl.cnf",
                          "openssl_conf = openssl_init\n"
                          "[openssl_init]\nssl_conf = ssl_sect\n"
                          "[ssl_sect]\nsystem_default = system_default_sect\n"
                          "[system_default_sect]\nOptions = ClientRenegotiation\n");
  testing::WriteFileOrDie(dir + "/router.yaml",
                          "ingress:\n  auth: {mode: none}\n  tls:\n"
                          "    cert_file: " +
                              dir + "/server.crt\n" + "    key_file: " + dir + "/server.key\n" +
                              "adapters: {}\n");
  const std::string router_log = dir + "/router.log";
  testing::WriteFileOrDie(router_log, "");
  ::setenv("OPENSSL_CONF", (dir + "/openssl.cnf").c_str(), 1);  // the router's only
  testing::RouterProcess router(tmp_, router_log);
  ::unsetenv("OPENSSL_CONF");
  ASSERT_TRUE(router.WaitReady(1)) << testing::ReadFileOrDie(router_log);

  // s_client reads its commands from a FIFO this test writes to.
  const std::string fifo = dir + "/s_client.in", client_log = dir + "/s_client.log";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  testing::WriteFileOrDie(client_log, "");
  testing::ChildProcess client(
      "/bin/sh",
      {"-c", "exec /usr/bin/openssl s_client -connect 127.0.0.1:" + std::to_string(router.port) +
                 " -tls1_2 -CAfile " + dir + "/server.crt < " + fifo},
      client_log);
  const int commands = ::open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(commands, 0);
  ASSERT_TRUE(testing::WaitFor([&] {
    return testing::ReadFileOrDie(client_log).find("Verify return code: 0") != std::string::npos;
  })) << testing::ReadFileOrDie(client_log);
  ASSERT_EQ(::write(commands, "R\n", 2), 2);
  // Refused: s_client reports the alert and exits, its connection closed; a renegotiation that
  // went through would leave it connected, waiting for more commands.
  EXPECT_TRUE(testing::WaitFor([&] { return client.Wait(std::chrono::milliseconds(0)) != -1; }))
      << testing::ReadFileOrDie(client_log);
  ::close(commands);
  const std::string out = testing::ReadFileOrDie(client_log);
  EXPECT_NE(out.find("RENEGOTIATING"), std::string::npos) << out;
  EXPECT_NE(out.find("no renegotiation"), std::string::npos) << out;
}

// After a refusal the server closes its side and reads what the client still sends, for at
// most 2 s: a client that keeps the connection open without sending is closed then.
TEST_F(Ingress, ALingeringCloseEndsAfterTwoSeconds) {
  Start(BaseConfig());
  HttpClient client(port());
  client.set_honor_connection_close(false);
  ASSERT_TRUE(client.SendRaw("POST " + Url("?code=nope") +
                             " HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"));
  EXPECT_EQ(client.ReadReply().status, 401);
  const auto answered = std::chrono::steady_clock::now();
  // While the server drains, what the client sends is read and dropped; once it has closed the
  // socket, a send meets the reset.
  EXPECT_TRUE(testing::WaitFor([&] { return !client.SendRaw("x"); }, std::chrono::seconds(10)));
  const auto lingered = std::chrono::steady_clock::now() - answered;
  EXPECT_GE(lingered, std::chrono::milliseconds(1500));
  EXPECT_LT(lingered, std::chrono::seconds(10));
}

TEST_F(IngressTls, AMismatchedKeyIsAStartError) {
  Config c = TlsConfig();
  int rc = 0;
  Run({"/usr/bin/openssl", "genrsa", "-out", tmp_.path() + "/other.pem", "2048"}, &rc);
  ASSERT_EQ(rc, 0);
  c.ingress.tls.key_file = tmp_.path() + "/other.pem";
  App app(c);
  Status st = app.Start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("ingress.tls.key_file"), std::string_view::npos) << st.ToString();
  app.Shutdown();
}

TEST_F(Ingress, AdminEndpoints) {
  Start(BaseConfig());
  HttpClient admin(app_->admin_port());
  HttpReply r = admin.Get("/healthz");
  EXPECT_EQ(r.status, 200);
  r = admin.Get("/readyz");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("ready"), std::string::npos);
  r = admin.Get("/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.headers["content-type"].find("text/plain"), std::string::npos);
  for (const char* name :
       {"dvrouter_requests_total", "dvrouter_request_duration_seconds_bucket",
        "dvrouter_received_bytes_total", "dvrouter_journal_append_duration_seconds_bucket",
        "dvrouter_journal_fsync_duration_seconds_bucket", "dvrouter_journal_group_commit_events",
        "dvrouter_journal_bytes", "dvrouter_journal_segments", "dvrouter_decode_errors_total",
        "dvrouter_ready 1"}) {
    EXPECT_NE(r.body.find(name), std::string::npos) << name;
  }
  EXPECT_EQ(admin.Get("/nope").status, 404);
  EXPECT_EQ(admin.Request("POST", "/metrics", "{}").status, 405);
}

}  // namespace
}  // namespace dvrouter
