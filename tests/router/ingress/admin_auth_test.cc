// Who may use the admin listener: AdminGuard's decisions on request headers (unit), and a real
// dvrouter process with an admin token, called over HTTP and through its CLI (process).
#include "router/ingress/admin_auth.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/http_client.h"
#include "tests/support/router_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using testing::HttpClient;

class Headers final : public HeaderLookup {
 public:
  explicit Headers(std::map<std::string, std::string> h) : h_(std::move(h)) {}
  std::string_view get(std::string_view name) const override {
    auto it = h_.find(std::string(name));
    return it == h_.end() ? std::string_view() : std::string_view(it->second);
  }
  bool has(std::string_view name) const override { return h_.count(std::string(name)) > 0; }

 private:
  std::map<std::string, std::string> h_;  // lowercase names
};

// The status AdminGuard answers (0: the request may proceed).
int Check(const AdminGuard& guard, std::string_view method, std::string_view target,
          std::map<std::string, std::string> headers = {}) {
  Headers h(std::move(headers));
  HttpRequestView request;
  request.method = method;
  request.target = target;
  request.headers = &h;
  std::optional<HttpResponse> r = guard.Check(request);
  return r ? r->status : 0;
}

AdminAuthConfig Token(bool protect_metrics = false) {
  AdminAuthConfig auth;
  auth.token = "admin-t0ken";
  auth.protect_metrics = protect_metrics;
  return auth;
}

TEST(AdminGuard, EveryRouteButTheProbesNeedsTheBearerToken) {
  const AdminGuard guard(Token());
  const std::map<std::string, std::string> good = {{"authorization", "Bearer admin-t0ken"}};
  for (const char* target : {"/dlq", "/dlq?all=1", "/events/0123", "/replay", "/nope"}) {
    SCOPED_TRACE(target);
    EXPECT_EQ(Check(guard, "GET", target), 401);
    EXPECT_EQ(Check(guard, "GET", target, {{"authorization", "Bearer admin-t0keN"}}), 401);
    EXPECT_EQ(Check(guard, "GET", target, {{"authorization", "Bearer admin-t0ken2"}}), 401);
    EXPECT_EQ(Check(guard, "GET", target, {{"authorization", "admin-t0ken"}}), 401);
    EXPECT_EQ(Check(guard, "GET", target, {{"authorization", "Basic admin-t0ken"}}), 401);
    EXPECT_EQ(Check(guard, "GET", target, good), 0);
    EXPECT_EQ(Check(guard, "GET", target, {{"authorization", "bearer admin-t0ken"}}), 0);
  }
  EXPECT_EQ(Check(guard, "POST", "/dlq/replay", good), 0);
  EXPECT_EQ(Check(guard, "POST", "/dlq/replay"), 401);
  for (const char* probe : {"/metrics", "/healthz", "/readyz", "/readyz?x=1"}) {
    EXPECT_EQ(Check(guard, "GET", probe), 0) << probe;
  }
  // Only the exact probe paths are open.
  EXPECT_EQ(Check(guard, "GET", "/metrics/"), 401);
  EXPECT_EQ(Check(guard, "GET", "/metricsx"), 401);
}

TEST(AdminGuard, ProtectMetricsCoversTheProbesToo) {
  const AdminGuard guard(Token(/*protect_metrics=*/true));
  for (const char* probe : {"/metrics", "/healthz", "/readyz"}) {
    EXPECT_EQ(Check(guard, "GET", probe), 401) << probe;
    EXPECT_EQ(Check(guard, "GET", probe, {{"authorization", "Bearer admin-t0ken"}}), 0) << probe;
  }
}

TEST(AdminGuard, WithoutATokenEverythingIsOpen) {
  const AdminGuard guard(AdminAuthConfig{});
  EXPECT_EQ(Check(guard, "GET", "/dlq"), 0);
  EXPECT_EQ(Check(guard, "POST", "/replay?adapter=a&from=1&to=2"), 0);
}

// A page open in a browser on the host may send requests to loopback, but they carry Origin
// (every POST) or Sec-Fetch-Site: changes are refused whatever the credentials.
TEST(AdminGuard, ChangesFromABrowserAreRefused) {
  for (const AdminAuthConfig& auth : {AdminAuthConfig{}, Token()}) {
    const AdminGuard guard(auth);
    std::map<std::string, std::string> h = {{"authorization", "Bearer admin-t0ken"}};
    h["origin"] = "http://evil.example";
    EXPECT_EQ(Check(guard, "POST", "/replay", h), 403);
    EXPECT_EQ(Check(guard, "POST", "/dlq/replay", h), 403);
    h["origin"] = "null";
    EXPECT_EQ(Check(guard, "POST", "/dlq/replay", h), 403);
    h.erase("origin");
    h["sec-fetch-site"] = "cross-site";
    EXPECT_EQ(Check(guard, "POST", "/dlq/replay", h), 403);
    h["sec-fetch-site"] = "Cross-Site";
    EXPECT_EQ(Check(guard, "DELETE", "/dlq", h), 403);
    h["sec-fetch-site"] = "none";  // typed by the user into the address bar
    EXPECT_EQ(Check(guard, "POST", "/dlq/replay", h), 0);
    h.erase("sec-fetch-site");
    EXPECT_EQ(Check(guard, "POST", "/dlq/replay", h), 0);
    // Another site's page on the same host name and port is still another origin.
    h["host"] = "127.0.0.1:9400";
    h["origin"] = "http://127.0.0.1:9401";
    h["sec-fetch-site"] = "same-site";
    EXPECT_EQ(Check(guard, "POST", "/dlq/replay", h), 403);
    h["origin"] = "http://127.0.0.1:9400";
    EXPECT_EQ(Check(guard, "POST", "/dlq/replay", h), 403);  // same-site is not same-origin
    // Reading is not a change (and a cross-site page cannot read the answer).
    EXPECT_EQ(Check(guard, "GET", "/dlq",
                    {{"authorization", "Bearer admin-t0ken"},
                     {"host", "127.0.0.1:9400"},
                     {"origin", "http://evil.example"}}),
              0);
  }
}

// The console (/ui/) is served by the admin listener: its own requests are same-origin, Origin
// naming the host they went to, and they may change things (replay) like the CLI.
TEST(AdminGuard, TheConsoleOwnRequestsMayChangeThings) {
  for (const AdminAuthConfig& auth : {AdminAuthConfig{}, Token()}) {
    const AdminGuard guard(auth);
    for (const char* host : {"127.0.0.1:9400", "[::1]:9400", "localhost:9400"}) {
      SCOPED_TRACE(host);
      std::map<std::string, std::string> h = {{"authorization", "Bearer admin-t0ken"},
                                              {"host", host},
                                              {"origin", std::string("http://") + host},
                                              {"sec-fetch-site", "same-origin"}};
      EXPECT_EQ(Check(guard, "POST", "/dlq/replay?ids=1,2", h), 0);
      EXPECT_EQ(Check(guard, "GET", "/events?row_id=x", h), 0);
      h["origin"] = std::string("https://") + host;
      EXPECT_EQ(Check(guard, "POST", "/replay", h), 0);
    }
  }
  // Its page and scripts need no token: they hold no data, and the page asks for the token.
  const AdminGuard guard(Token());
  for (const char* asset : {"/ui", "/ui/", "/ui/console.js", "/ui/console.css"}) {
    EXPECT_EQ(Check(guard, "GET", asset), 0) << asset;
  }
  EXPECT_EQ(Check(guard, "GET", "/uix"), 401);
  EXPECT_EQ(Check(guard, "GET", "/stats"), 401);
}

// A page of evil.example whose name was made to resolve to 127.0.0.1 (DNS rebinding) is
// same-origin with what it reaches: without a token, browsers are answered only at an address
// literal. With a token the page cannot know it.
TEST(AdminGuard, WithoutATokenBrowsersAreAnsweredOnlyAtAnAddress) {
  const AdminGuard open(AdminAuthConfig{});
  const std::map<std::string, std::string> rebound = {{"host", "evil.example:9400"},
                                                      {"origin", "http://evil.example:9400"},
                                                      {"sec-fetch-site", "same-origin"}};
  EXPECT_EQ(Check(open, "GET", "/dlq", rebound), 403);
  EXPECT_EQ(Check(open, "POST", "/dlq/replay", rebound), 403);
  // Browsers that send neither Sec-Fetch-Site nor Origin (older ones, some webviews) are held to
  // the same rule: any request naming a Host that is not an address literal.
  EXPECT_EQ(Check(open, "GET", "/dlq", {{"host", "evil.example:9400"}, {"sec-fetch-site", "none"}}),
            403);
  EXPECT_EQ(Check(open, "GET", "/events/0123?record=1", {{"host", "evil.example:9400"}}), 403);
  EXPECT_EQ(Check(open, "GET", "/metrics", {{"host", "EVIL.example"}}), 403);
  for (const char* host :
       {"127.0.0.1:9400", "[::1]:9400", "localhost:9400", "LocalHost", "10.1.2.3"}) {
    EXPECT_EQ(Check(open, "GET", "/dlq", {{"host", host}}), 0) << host;
  }
  EXPECT_EQ(Check(open, "GET", "/dlq"), 0) << "no Host: not a browser";
  EXPECT_EQ(Check(open, "GET", "/ui/", rebound), 0);  // no data there
  std::map<std::string, std::string> with_token = rebound;
  with_token["authorization"] = "Bearer admin-t0ken";
  EXPECT_EQ(Check(AdminGuard(Token()), "GET", "/dlq", with_token), 0);
  EXPECT_EQ(Check(AdminGuard(Token()), "POST", "/dlq/replay", with_token), 0);
}

// Runs `dvrouter ARGS...` and returns (exit status, what it printed).
std::pair<int, std::string> Cli(const testing::TempDir& tmp, std::vector<std::string> args) {
  static int n = 0;
  const std::string out = tmp.path() + "/cli-" + std::to_string(++n) + ".out";
  testing::ChildProcess cli(DVROUTER_BINARY, args, out);
  const int status = cli.Wait();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, testing::ReadFileOrDie(out)};
}

constexpr char kToken[] = "process-admin-token";

void WriteConfig(const testing::TempDir& tmp, const std::string& admin) {
  ::setenv("DVROUTER_ADMIN_TEST_TOKEN", kToken, 1);
  testing::WriteFileOrDie(tmp.path() + "/router.yaml",
                          "ingress:\n"
                          "  auth: {mode: none}\n"
                          "journal:\n"
                          "  partitions: 4\n"
                          "admin:\n" +
                              admin);
}

TEST(AdminAuthProcess, TheTokenGuardsTheAdminApiAndTheCliSendsIt) {
  testing::TempDir tmp;
  const std::string log = tmp.path() + "/router.log";
  testing::WriteFileOrDie(log, "");
  WriteConfig(tmp, "  auth: {token: '${DVROUTER_ADMIN_TEST_TOKEN}'}\n");
  testing::RouterProcess router(tmp, log);
  ASSERT_TRUE(router.WaitReady(1)) << testing::ReadFileOrDie(log);
  const std::string admin = "127.0.0.1:" + std::to_string(router.admin_port);

  EXPECT_EQ(HttpClient(router.admin_port).Get("/readyz").status, 200);
  EXPECT_EQ(HttpClient(router.admin_port).Get("/metrics").status, 200);
  testing::HttpReply r = HttpClient(router.admin_port).Get("/dlq");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.headers["www-authenticate"], "Bearer");
  const std::map<std::string, std::string> bearer = {
      {"Authorization", "Bearer " + std::string(kToken)}};
  EXPECT_EQ(HttpClient(router.admin_port).Request("GET", "/dlq", "", bearer).status, 200);
  EXPECT_EQ(HttpClient(router.admin_port).Request("POST", "/dlq/replay", "", bearer).status, 200);
  std::map<std::string, std::string> browser = bearer;
  browser["Origin"] = "http://127.0.0.1:8000";
  EXPECT_EQ(HttpClient(router.admin_port).Request("POST", "/dlq/replay", "", browser).status, 403);

  // The CLI: no token, the token from the environment, from a file, a wrong one.
  ::unsetenv("DVROUTER_ADMIN_TOKEN");
  auto [rc, out] = Cli(tmp, {"dlq", "list", "--admin", admin});
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("unauthorized"), std::string::npos) << out;
  ::setenv("DVROUTER_ADMIN_TOKEN", kToken, 1);
  std::tie(rc, out) = Cli(tmp, {"dlq", "list", "--admin", admin});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out.substr(0, 1), "[") << out;
  ::setenv("DVROUTER_ADMIN_TOKEN", "wrong", 1);
  testing::WriteFileOrDie(tmp.path() + "/token", std::string(kToken) + "\n");
  std::tie(rc, out) =
      Cli(tmp, {"dlq", "replay", "--admin", admin, "--token-file", tmp.path() + "/token"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("{\"replayed\":0}"), std::string::npos) << out;
  std::tie(rc, out) = Cli(tmp, {"dlq", "list", "--admin", admin});
  EXPECT_EQ(rc, 1) << out;
  std::tie(rc, out) =
      Cli(tmp, {"dlq", "list", "--admin", admin, "--token-file", tmp.path() + "/missing"});
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("--token-file"), std::string::npos) << out;
  ::unsetenv("DVROUTER_ADMIN_TOKEN");

  router.child().Kill(SIGTERM);
  const int status = router.child().Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << testing::ReadFileOrDie(log);
}

// An admin listener on a non-loopback address without a token does not start.
TEST(AdminAuthProcess, ANonLoopbackAdminListenerNeedsAToken) {
  testing::TempDir tmp;
  WriteConfig(tmp, "  listen: 0.0.0.0:0\n");
  auto [rc, out] = Cli(tmp, {"check-config", "-c", tmp.path() + "/router.yaml"});
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("admin.auth.token: missing"), std::string::npos) << out;
  WriteConfig(tmp, "  listen: 127.0.0.1:0\n");
  std::tie(rc, out) = Cli(tmp, {"serve", "-c", tmp.path() + "/router.yaml", "--data-dir",
                                tmp.path() + "/data", "--admin-listen", "0.0.0.0:0"});
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("admin.auth.token"), std::string::npos) << out;
  std::tie(rc, out) =
      Cli(tmp, {"check-config", "-c", tmp.path() + "/router.yaml", "--admin-listen", "[::1]:0"});
  EXPECT_EQ(rc, 0) << out;
  WriteConfig(tmp,
              "  listen: 0.0.0.0:0\n"
              "  auth: {token: '${DVROUTER_ADMIN_TEST_TOKEN}'}\n");
  std::tie(rc, out) = Cli(tmp, {"check-config", "-c", tmp.path() + "/router.yaml"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("admin.auth.token: (set, redacted)"), std::string::npos) << out;
  EXPECT_EQ(out.find(kToken), std::string::npos) << out;
}

}  // namespace
}  // namespace dvrouter
