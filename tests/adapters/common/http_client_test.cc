// The adapters' HTTP client against a scripted loopback server: keep-alive reuse, a pooled
// connection the server closed, timeouts, refused connections, gzip bodies, oversized answers
// and malformed URLs.
#include "adapters/common/http_client.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/support/router_process.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

// A one-thread HTTP/1.1 server: answers every request with `answer`; `close_after` closes the
// connection after each answer (without saying so: a keep-alive peer going away); `hang` never
// answers.
class ScriptedServer {
 public:
  std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  bool close_after = false;
  bool hang = false;

  ScriptedServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~ScriptedServer() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    if (thread_.joinable()) thread_.join();
    std::lock_guard<std::mutex> lock(mu_);
    for (int c : conns_) ::close(c);
  }
  void Run() {
    thread_ = std::thread([this] {
      for (;;) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        {
          std::lock_guard<std::mutex> lock(mu_);
          conns_.push_back(c);
        }
        ++accepted;
        Serve(c);
      }
    });
  }
  std::string url(const std::string& path = "/") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::string last_request() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_;
  }
  std::atomic<int> accepted{0};

 private:
  void Serve(int c) {
    std::string buf;
    char tmp[65536];
    for (;;) {
      // One request: headers, then Content-Length bytes.
      size_t end;
      while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
        const ssize_t n = ::read(c, tmp, sizeof(tmp));
        if (n <= 0) return;
        buf.append(tmp, static_cast<size_t>(n));
      }
      size_t length = 0;
      const size_t cl = buf.find("Content-Length: ");
      if (cl != std::string::npos && cl < end) length = std::stoul(buf.substr(cl + 16));
      while (buf.size() < end + 4 + length) {
        const ssize_t n = ::read(c, tmp, sizeof(tmp));
        if (n <= 0) return;
        buf.append(tmp, static_cast<size_t>(n));
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        last_ = buf.substr(0, end + 4 + length);
      }
      buf.erase(0, end + 4 + length);
      if (hang) continue;
      if (::write(c, answer.data(), answer.size()) < 0) return;
      if (close_after) {
        ::shutdown(c, SHUT_RDWR);
        return;
      }
    }
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<int> conns_;
  std::string last_;
};

TEST(HttpClient, KeepAliveReusesOneConnection) {
  ScriptedServer server;
  server.Run();
  HttpClient client;
  for (int i = 0; i < 3; ++i) {
    Result<ClientResponse> r = client.Send({"POST", server.url("/x?a=1"), {{"X-Test", "1"}}, "hi"});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "ok");
    EXPECT_EQ(r->Header("content-length"), "2");
  }
  EXPECT_EQ(client.connections_opened(), 1u);
  EXPECT_EQ(server.accepted.load(), 1);
  const std::string req = server.last_request();
  EXPECT_EQ(req.rfind("POST /x?a=1 HTTP/1.1\r\n", 0), 0u) << req;
  EXPECT_NE(req.find("X-Test: 1\r\n"), std::string::npos) << req;
  EXPECT_TRUE(req.ends_with("\r\n\r\nhi")) << req;
}

TEST(HttpClient, APooledConnectionTheServerClosedIsReplacedTransparently) {
  ScriptedServer server;
  server.close_after = true;
  server.Run();
  HttpClient client;
  for (int i = 0; i < 3; ++i) {
    Result<ClientResponse> r = client.Send({"GET", server.url(), {}, ""});
    ASSERT_TRUE(r.ok()) << i << ": " << r.status().ToString();
    EXPECT_EQ(r->status, 200);
  }
  EXPECT_EQ(server.accepted.load(), 3);
}

TEST(HttpClient, ARequestWithoutAnAnswerTimesOut) {
  ScriptedServer server;
  server.hang = true;
  server.Run();
  HttpClientOptions o;
  o.request_timeout_ms = 200;
  HttpClient client(o);
  Result<ClientResponse> r = client.Send({"POST", server.url(), {}, "x"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  EXPECT_TRUE(IsRetryable(r.status().code()));
}

TEST(HttpClient, ARefusedConnectionIsUnavailable) {
  uint16_t port;
  {
    ScriptedServer closed;  // bound, then closed: nothing listens there any more
    port = static_cast<uint16_t>(std::stoi(closed.url().substr(17)));
  }
  HttpClient client;
  Result<ClientResponse> r =
      client.Send({"GET", "http://127.0.0.1:" + std::to_string(port), {}, ""});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
}

TEST(HttpClient, GzipBodiesAreSentCompressedWithTheirEncoding) {
  ScriptedServer server;
  server.Run();
  HttpClient client;
  std::string body;
  for (int i = 0; i < 1000; ++i) body += "{\"row\":" + std::to_string(i) + "}\n";
  ClientRequest req{"POST", server.url(), {}, body};
  req.gzip = true;
  ASSERT_TRUE(client.Send(req).ok());
  const std::string seen = server.last_request();
  EXPECT_NE(seen.find("Content-Encoding: gzip\r\n"), std::string::npos);
  const std::string sent = seen.substr(seen.find("\r\n\r\n") + 4);
  EXPECT_LT(sent.size(), body.size() / 4);
  std::string back;
  ASSERT_TRUE(GzipDecompress(sent, &back).ok());
  EXPECT_EQ(back, body);
  EXPECT_FALSE(GzipDecompress("not gzip", &back).ok());
}

// A body_view (a slice of a larger buffer) is sent instead of `body`, plain and gzip-compressed.
TEST(HttpClient, ABodyViewIsSentInsteadOfTheBody) {
  const std::string buffer = "first row\nsecond row\nthird row\n";
  const std::string_view slice = std::string_view(buffer).substr(10, 11);  // "second row\n"
  for (const bool gzip : {false, true}) {
    ScriptedServer server;
    server.Run();
    HttpClient client;
    ClientRequest req{"POST", server.url(), {}, "not this"};
    req.body_view = slice;
    req.gzip = gzip;
    ASSERT_TRUE(client.Send(req).ok());
    const std::string seen = server.last_request();
    std::string sent = seen.substr(seen.find("\r\n\r\n") + 4);
    if (gzip) {
      std::string plain;
      ASSERT_TRUE(GzipDecompress(sent, &plain).ok());
      sent = plain;
    }
    EXPECT_EQ(sent, "second row\n") << "gzip " << gzip;
  }
}

TEST(HttpClient, AnAnswerLargerThanTheLimitIsRefused) {
  ScriptedServer server;
  server.answer = "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'x');
  server.Run();
  HttpClientOptions o;
  o.max_response_bytes = 1000;
  HttpClient client(o);
  Result<ClientResponse> r = client.Send({"GET", server.url(), {}, ""});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted) << r.status().ToString();
}

TEST(HttpClient, MalformedUrlsAndMethodsAreInvalidArguments) {
  HttpClient client;
  for (const char* url : {"ftp://x/", "http://", "http://:80/", "http://h:0/", "http://h:99999/",
                          "http://h:8a/", "http://[::1/", "http://user:pw@h/", "h:80"}) {
    Result<ClientResponse> r = client.Send({"GET", url, {}, ""});
    ASSERT_FALSE(r.ok()) << url;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << url;
  }
  EXPECT_EQ(client.Send({"FETCH", "http://127.0.0.1:1/", {}, ""}).status().code(),
            StatusCode::kInvalidArgument);
  // A header value with a line break would split the request: refused before sending.
  EXPECT_EQ(client.Send({"POST", "http://127.0.0.1:1/", {{"X-Key", "abc\r\nX-Evil: 1"}}, ""})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(client.Send({"POST", "http://127.0.0.1:1/", {{"Bad:Name", "v"}}, ""}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(HttpClient, ParseUrlReadsSchemeHostPortAndTarget) {
  Result<Url> u = ParseUrl("https://erp.example.com/api/orders?x=1");
  ASSERT_TRUE(u.ok());
  EXPECT_TRUE(u->tls);
  EXPECT_EQ(u->host, "erp.example.com");
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->target, "/api/orders?x=1");
  u = ParseUrl("http://[::1]:8123?query=1");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 8123);
  EXPECT_EQ(u->target, "/?query=1");
}

// Hosts hold host-name characters only (a fuzzer found control bytes, colons and brackets
// accepted, so the canonical origin of a URL did not parse back to it).
TEST(HttpClient, ParseUrlRefusesHostsWithOtherCharacters) {
  for (const char* bad :
       {"https://erp example.com/", "https://erp\r\nX-Injected: 1/", "https://a:b:443/",
        "https://er]p/", "http://[::1%eth0]/", "http://\xff\xfe/", "https://a%2eb/"}) {
    EXPECT_FALSE(ParseUrl(bad).ok()) << bad;
  }
  EXPECT_TRUE(ParseUrl("http://erp-1.example_test.local:80/").ok());
  EXPECT_TRUE(ParseUrl("http://[fe80::1]:80/").ok());
}

// TLS against a real HTTPS server (dvrouter's own ingress with a certificate made for the test):
// verified with the right CA and host name, refused with another CA or another name.
TEST(HttpClientTls, VerifiesTheCertificateAgainstTheConfiguredCaAndTheHostName) {
  testing::TempDir tmp;
  std::string error;
  ASSERT_TRUE(testing::MakeSelfSignedCert(tmp.path(), "server", &error)) << error;
  ASSERT_TRUE(testing::MakeSelfSignedCert(tmp.path(), "other", &error)) << error;
  testing::WriteFileOrDie(tmp.path() + "/router.yaml",
                          "ingress:\n"
                          "  auth: {mode: none}\n"
                          "  tls:\n"
                          "    cert_file: " +
                              tmp.path() + "/server.crt\n    key_file: " + tmp.path() +
                              "/server.key\n"
                              "adapters: {}\n");
  const std::string log = tmp.path() + "/router.log";
  testing::WriteFileOrDie(log, "");
  testing::RouterProcess router(tmp, log);
  ASSERT_TRUE(router.WaitReady(1)) << testing::ReadFileOrDie(log);
  const std::string url =
      "https://127.0.0.1:" + std::to_string(router.port) + "/webhooks/dataverse";
  const std::string body = testing::Fixture("update-contact-postop-async.json");

  HttpClientOptions trusted;
  trusted.ca_file = tmp.path() + "/server.crt";
  HttpClient client(trusted);
  for (const char* expect : {"accepted", "duplicate"}) {
    Result<ClientResponse> r = client.Send({"POST", url, {}, body});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->status, 200);
    EXPECT_NE(r->body.find(expect), std::string::npos) << r->body;
  }
  EXPECT_EQ(client.connections_opened(), 1u) << "keep-alive over TLS";
  // The name in the certificate also covers localhost.
  Result<ClientResponse> by_name = client.Send(
      {"GET", "https://localhost:" + std::to_string(router.port) + "/webhooks/dataverse", {}, ""});
  EXPECT_TRUE(by_name.ok()) << by_name.status().ToString();

  HttpClientOptions wrong_ca;
  wrong_ca.ca_file = tmp.path() + "/other.crt";
  Result<ClientResponse> refused = HttpClient(wrong_ca).Send({"POST", url, {}, body});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(refused.status().message().find("handshake"), std::string_view::npos)
      << refused.status().ToString();
  // The system's trust store does not know the test's CA either.
  EXPECT_FALSE(HttpClient().Send({"POST", url, {}, body}).ok());

  HttpClientOptions missing;
  missing.ca_file = tmp.path() + "/nonexistent.pem";
  Result<ClientResponse> bad = HttpClient(missing).Send({"POST", url, {}, body});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument) << bad.status().ToString();
  router.child().Kill(SIGTERM);
  EXPECT_EQ(router.child().Wait(), 0);
}

}  // namespace
}  // namespace dvrouter
