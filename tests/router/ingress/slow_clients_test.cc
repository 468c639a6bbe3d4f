// Slow clients against a real dvrouter, driven by slowhttptest (Debian's package): slowloris
// (headers that never end) and slow bodies (a body trickled byte by byte) are closed at the
// header and body timeouts, and a legitimate client is answered meanwhile
// (docs/operations.md, "Security").
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/http_client.h"
#include "tests/support/router_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

constexpr char kSlowHttpTest[] = "/usr/bin/slowhttptest";

// One row of slowhttptest's CSV report: connections by state, per second of the test.
struct Second {
  int seconds = 0, closed = 0, pending = 0, connected = 0;
};

std::vector<Second> ReadReport(const std::string& csv) {
  std::vector<Second> rows;
  std::istringstream in(testing::ReadFileOrDie(csv));
  std::string line;
  std::getline(in, line);  // Seconds,Closed,Pending,Connected,Service Available
  while (std::getline(in, line)) {
    Second s;
    if (std::sscanf(line.c_str(), "%d,%d,%d,%d", &s.seconds, &s.closed, &s.pending, &s.connected) ==
        4) {
      rows.push_back(s);
    }
  }
  return rows;
}

class SlowClientsProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access(kSlowHttpTest, X_OK) != 0) {
      GTEST_SKIP() << "slowhttptest is not installed (scripts/install-deps.sh installs it)";
    }
    ::setenv("DVROUTER_SLOW_TEST_KEY", "slow-key", 1);
    log_ = tmp_.path() + "/router.log";
    testing::WriteFileOrDie(log_, "");
    testing::WriteFileOrDie(tmp_.path() + "/router.yaml",
                            "ingress:\n"
                            "  header_timeout: 1s\n"
                            "  body_timeout: 2s\n"
                            "  auth: {mode: webhook_key, secret: \"${DVROUTER_SLOW_TEST_KEY}\"}\n"
                            "journal: {partitions: 4}\n"
                            "adapters: {}\n");
    router_ = std::make_unique<testing::RouterProcess>(tmp_, log_);
    ASSERT_TRUE(router_->WaitReady(1)) << testing::ReadFileOrDie(log_);
  }

  // Runs slowhttptest with `mode` (-H or -B) and 300 connections for 6 s while a legitimate
  // client posts webhooks one after another; returns the attack's report and the legitimate
  // answers' latencies (ms).
  std::vector<Second> Attack(const std::string& mode, std::vector<double>* latencies) {
    const std::string prefix = tmp_.path() + "/report" + mode;
    const std::string url =
        "http://127.0.0.1:" + std::to_string(router_->port) + "/webhooks/dataverse?code=slow-key";
    testing::ChildProcess attack(kSlowHttpTest,
                                 {mode, "-c", "300", "-r", "300", "-i", "1", "-s", "100000", "-l",
                                  "6", "-p", "2", "-g", "-o", prefix, "-u", url},
                                 tmp_.path() + "/slowhttptest" + mode + ".log");
    std::atomic<bool> done{false};
    std::thread client([&] {
      testing::HttpClient http(router_->port);
      const std::string body = testing::Fixture("update-contact-postop-async.json");
      while (!done.load()) {
        const auto start = std::chrono::steady_clock::now();
        const testing::HttpReply r = http.Post("/webhooks/dataverse?code=slow-key", body);
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                .count();
        EXPECT_EQ(r.status, 200) << r.body;
        latencies->push_back(ms);
      }
    });
    const int status = attack.Wait(std::chrono::seconds(60));
    done = true;
    client.join();
    EXPECT_TRUE(WIFEXITED(status)) << "slowhttptest did not finish: " << status;
    return ReadReport(prefix + ".csv");
  }

  // The report shows the attack connected, and every connection closed by `by_second`.
  static void ExpectClosedBy(const std::vector<Second>& report, int by_second) {
    ASSERT_FALSE(report.empty());
    int peak = 0;
    for (const Second& s : report) peak = std::max(peak, s.connected);
    EXPECT_GE(peak, 100) << "the attack did not get its connections open";
    bool closed = false;
    for (const Second& s : report) {
      if (s.seconds <= by_second && s.connected <= peak / 20) closed = true;
    }
    EXPECT_TRUE(closed) << "connections still open after " << by_second << " s";
  }

  static double P99(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[std::min(v.size() - 1, v.size() * 99 / 100)];
  }

  testing::TempDir tmp_;
  std::string log_;
  std::unique_ptr<testing::RouterProcess> router_;
};

TEST_F(SlowClientsProcess, SlowlorisIsClosedAtTheHeaderTimeoutAndOthersAreServed) {
  std::vector<double> latencies;
  const std::vector<Second> report = Attack("-H", &latencies);
  // Opened within about a second, closed one header timeout (1 s) later, with a second of
  // slack for the report's granularity.
  ExpectClosedBy(report, 3);
  ASSERT_GE(latencies.size(), 20u);
  if (!kSanitized) {
    EXPECT_LT(P99(latencies), 100.0) << latencies.size() << " requests";
  }
}

TEST_F(SlowClientsProcess, SlowBodiesAreClosedAtTheBodyTimeoutAndOthersAreServed) {
  std::vector<double> latencies;
  const std::vector<Second> report = Attack("-B", &latencies);
  ExpectClosedBy(report, 4);  // headers within ~1 s, then the 2 s body timeout
  ASSERT_GE(latencies.size(), 20u);
  if (!kSanitized) {
    EXPECT_LT(P99(latencies), 100.0) << latencies.size() << " requests";
  }
}

}  // namespace
}  // namespace dvrouter
