// What a client without credentials, or with a hostile framing, can make one ingress session
// hold, over a real dvrouter process: chunk-size lines and trailers are bounded by the header
// limit, the webhook takes no Transfer-Encoding, callbacks are authenticated on their header
// (docs/operations.md, "Security"). Memory is read from the child's /proc status.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <fstream>
#include <string>
#include <thread>

#include "tests/support/http_client.h"
#include "tests/support/router_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::HttpClient;
using testing::HttpReply;
using testing::RouterProcess;

constexpr char kWebhook[] = "/webhooks/dataverse?code=limits-key";
constexpr char kCallbackSecret[] = "limits-callback";
const std::string kEvent(32, 'a');
const std::string kAuthorized = "Authorization: Bearer " + std::string(kCallbackSecret) + "\r\n";

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

// The child's peak resident set (VmHWM), in KiB.
long PeakRssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// A router with webhook-key auth and an ERP adapter that takes callbacks; its body timeout is
// a minute, so a request that waits for it shows as a missing answer.
class IngressLimits : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("DVROUTER_LIMITS_TEST_KEY", "limits-key", 1);
    ::setenv("DVROUTER_LIMITS_TEST_CALLBACK", kCallbackSecret, 1);
    log_ = tmp_.path() + "/router.log";
    testing::WriteFileOrDie(log_, "");
    testing::WriteFileOrDie(tmp_.path() + "/router.yaml",
                            "ingress:\n"
                            "  io_threads: 2\n"
                            "  body_timeout: 60s\n"
                            "  auth:\n"
                            "    mode: webhook_key\n"
                            "    secret: ${DVROUTER_LIMITS_TEST_KEY}\n"
                            "journal:\n"
                            "  partitions: 4\n"
                            "adapters:\n"
                            "  erp:\n"
                            "    type: erp\n"
                            "    base_url: http://127.0.0.1:9\n"
                            "    async:\n"
                            "      callback: {secret: '${DVROUTER_LIMITS_TEST_CALLBACK}'}\n"
                            "    requests:\n"
                            "      - path: /api/orders\n"
                            "        body: '{\"id\": {{event.id}}}'\n"
                            "routes:\n"
                            "  - adapters: [erp]\n");
    router_ = std::make_unique<RouterProcess>(tmp_, log_);
    ASSERT_TRUE(router_->WaitReady(1)) << testing::ReadFileOrDie(log_);
  }

  void TearDown() override {
    if (!router_) return;
    router_->child().Kill(SIGTERM);
    const int status = router_->child().Wait();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << testing::ReadFileOrDie(log_);
  }

  // Sends `head`, then up to `bytes` of one never-ending chunk extension ("1;xxxx..." without a
  // line end) from a second thread, and returns the router's answer.
  HttpReply FloodChunkExtension(const std::string& head, size_t bytes) {
    HttpClient client(router_->port);
    client.set_honor_connection_close(false);  // the sender still uses the socket
    if (!client.SendRaw(head + "1;")) return {};
    std::thread sender([&] {
      const std::string piece(1 << 20, 'x');
      for (size_t sent = 0; sent < bytes && client.SendRaw(piece); sent += piece.size()) {
      }
    });
    HttpReply reply = client.ReadReply(std::chrono::seconds(20));
    sender.join();
    return reply;
  }

  testing::TempDir tmp_;
  std::string log_;
  std::unique_ptr<RouterProcess> router_;
};

std::string ChunkedPost(const std::string& target, const std::string& extra_headers = "") {
  return "POST " + target + " HTTP/1.1\r\nHost: x\r\n" + extra_headers +
         "Transfer-Encoding: chunked\r\n\r\n";
}

TEST_F(IngressLimits, ChunkExtensionFloodsAreRefusedAndMemoryStaysBounded) {
  constexpr size_t kFlood = 64 << 20;
  const long before = PeakRssKiB(router_->child().pid());
  ASSERT_GT(before, 0);
  // No credentials: a callback to an adapter that does not exist.
  HttpReply r = FloodChunkExtension(ChunkedPost("/callbacks/a/b"), kFlood);
  EXPECT_EQ(r.status, 404) << r.body;
  // The webhook, with its credentials: it takes Content-Length only.
  r = FloodChunkExtension(ChunkedPost(kWebhook), kFlood);
  EXPECT_EQ(r.status, 411) << r.body;
  // A callback with its credentials: chunked is accepted, its size lines are not unbounded.
  r = FloodChunkExtension(ChunkedPost("/callbacks/erp/" + kEvent, kAuthorized), kFlood);
  EXPECT_EQ(r.status, 431) << r.body;
  // A trailer that never ends is bounded the same way.
  HttpClient trailer(router_->port);
  trailer.set_honor_connection_close(false);
  ASSERT_TRUE(trailer.SendRaw(ChunkedPost("/callbacks/erp/" + kEvent, kAuthorized) +
                              "2\r\n{}\r\n0\r\nX-Pad: " + std::string(1 << 20, 'y')));
  EXPECT_EQ(trailer.ReadReply(std::chrono::seconds(20)).status, 431);

  const long after = PeakRssKiB(router_->child().pid());
  std::fprintf(stderr, "peak RSS %ld KiB before, %ld KiB after (%+ld KiB)\n", before, after,
               after - before);
  // Sanitizer runtimes hold freed memory in quarantine: there RSS says nothing.
  if (!kSanitized) {
    EXPECT_LT(after - before, 8 << 10) << "KiB of peak RSS grown by the floods";
  }

  // The router still serves: a well-framed chunked callback reaches the engine (which does not
  // know the event), a webhook is accepted.
  HttpClient fine(router_->port);
  ASSERT_TRUE(fine.SendRaw(ChunkedPost("/callbacks/erp/" + kEvent, kAuthorized) +
                           "15\r\n{\"status\":\"completed\"\r\n1\r\n}\r\n0\r\n\r\n"));
  EXPECT_EQ(fine.ReadReply().status, 404);
  EXPECT_EQ(HttpClient(router_->port)
                .Post(kWebhook, testing::Fixture("update-contact-postop-async.json"))
                .status,
            200);
}

// A callback without the secret is answered on its header: it never holds a connection for the
// body timeout (a minute here).
TEST_F(IngressLimits, CallbacksWithoutTheSecretAreRefusedBeforeTheirBody) {
  const auto slow_body = [&](const std::string& target, const std::string& authorization) {
    HttpClient client(router_->port);
    client.set_honor_connection_close(false);
    std::string head = "POST " + target + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n";
    if (!authorization.empty()) head += "Authorization: " + authorization + "\r\n";
    EXPECT_TRUE(client.SendRaw(head + "\r\n{"));
    HttpReply r = client.ReadReply(std::chrono::seconds(5));
    EXPECT_EQ(r.headers["connection"], "close") << target;
    EXPECT_TRUE(client.WaitClosed(std::chrono::seconds(5))) << target;
    return r.status;
  };
  EXPECT_EQ(slow_body("/callbacks/erp/" + kEvent, ""), 401);
  EXPECT_EQ(slow_body("/callbacks/erp/" + kEvent, "Bearer wrong"), 401);
  EXPECT_EQ(slow_body("/callbacks/erp/" + kEvent, kCallbackSecret), 401);  // no "Bearer "
  EXPECT_EQ(slow_body("/callbacks/nope/" + kEvent, "Bearer " + std::string(kCallbackSecret)), 404);
  EXPECT_EQ(slow_body("/callbacks/erp", ""), 404);
  EXPECT_EQ(testing::MetricSum(router_->admin_port, "dvrouter_callbacks_total{result=\"unauth"), 3);
  EXPECT_EQ(testing::MetricSum(router_->admin_port, "dvrouter_ingress_timeouts_total"), 0);
}

}  // namespace
}  // namespace dvrouter
