// The configuration reference (check-config --reference) and listener endpoints: the
// reference's examples parse, it names every section and type; endpoints parse, refuse what is
// not a host and port, and print back as they parse.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/registry.h"
#include "router/config/config.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using ::dvrouter::testing::ScopedEnv;
using ::dvrouter::testing::TempDir;
using ::dvrouter::testing::WriteFileOrDie;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(ConfigEndpoint, Parses) {
  Result<Endpoint> ep = ParseEndpoint("0.0.0.0:8080");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->host, "0.0.0.0");
  EXPECT_EQ(ep->port, 8080);
  EXPECT_EQ(ep->ToString(), "0.0.0.0:8080");

  ep = ParseEndpoint("[::1]:9400");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->host, "::1");
  EXPECT_EQ(ep->port, 9400);
  EXPECT_EQ(ep->ToString(), "[::1]:9400");  // reads back the same

  ep = ParseEndpoint("[fe80::1%eth0]:443");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->host, "fe80::1%eth0");
  EXPECT_EQ(ep->port, 443);

  ep = ParseEndpoint("localhost:0");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->host, "localhost");
  EXPECT_EQ(ep->port, 0);

  ep = ParseEndpoint("router.example.com:65535");
  ASSERT_TRUE(ep.ok());
  EXPECT_EQ(ep->port, 65535);
}

TEST(ConfigEndpoint, Refuses) {
  auto expect_bad = [](std::string_view text, std::string_view message) {
    Result<Endpoint> ep = ParseEndpoint(text);
    ASSERT_FALSE(ep.ok()) << text;
    EXPECT_EQ(ep.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(ep.status().message(), message) << text;
  };
  expect_bad("8080", "expected host:port, got '8080'");
  expect_bad(":8080", "expected host:port, got ':8080'");
  expect_bad("", "expected host:port, got ''");
  expect_bad("host:", "port must be 0-65535, got ''");
  expect_bad("host:65536", "port must be 0-65535, got '65536'");
  expect_bad("host:99999999999", "port must be 0-65535, got '99999999999'");
  expect_bad("host:80x", "port must be 0-65535, got '80x'");
  expect_bad("host:-1", "port must be 0-65535, got '-1'");
  expect_bad("host:+80", "port must be 0-65535, got '+80'");
  expect_bad("[::1]", "expected [ipv6]:port, got '[::1]'");
  expect_bad("[::1]80", "expected [ipv6]:port, got '[::1]80'");
  expect_bad("[::1:80", "expected [ipv6]:port, got '[::1:80'");
  expect_bad("[::1]:", "port must be 0-65535, got ''");
  // No host in the brackets (a fuzzer found it accepted, with an empty host).
  expect_bad("[]:9400", "expected [ipv6]:port, got '[]:9400'");
  // Hosts hold host-name or address characters only.
  expect_bad("a b:80", "expected host:port or [ipv6]:port, got 'a b:80'");
  expect_bad("::1:80", "expected host:port or [ipv6]:port, got '::1:80'");
  expect_bad("x]:9400]:9400", "expected host:port or [ipv6]:port, got 'x]:9400]:9400'");
  expect_bad("[::1/64]:80", "expected host:port or [ipv6]:port, got '[::1/64]:80'");
  expect_bad("[localhost]:80", "expected [ipv6]:port, got '[localhost]:80'");
}

// Each adapter type's reference examples (AdapterKind::examples) are valid configurations.
TEST(ConfigReference, EveryAdapterExampleParses) {
  TempDir dir;  // files the examples name, relative to the configuration's directory
  WriteFileOrDie(dir.path() + "/ca.pem", "-----BEGIN CERTIFICATE-----\n");
  size_t parsed = 0;
  for (const AdapterType& t : AdapterTypes()) {
    ASSERT_FALSE(t.kind->examples.empty()) << t.kind->type;
    for (std::string_view example : t.kind->examples) {
      // Secrets the example names, set for this parse.
      std::vector<std::unique_ptr<ScopedEnv>> env;
      for (size_t at = example.find("${"); at != std::string_view::npos;
           at = example.find("${", at + 1)) {
        const size_t end = example.find('}', at);
        env.push_back(std::make_unique<ScopedEnv>(std::string(example.substr(at + 2, end - at - 2)),
                                                  "example-secret"));
      }
      std::string doc =
          "ingress: {auth: {mode: none}}\nadapters:\n  erp: {type: lake}\n  example:\n    type: " +
          std::string(t.kind->type) + "\n";
      for (size_t start = 0; start < example.size();) {
        const size_t end = example.find('\n', start);
        doc += "    " + std::string(example.substr(start, end - start)) + "\n";
        start = end + 1;
      }
      Result<Config> c = ParseConfig(doc, dir.path());
      EXPECT_TRUE(c.ok()) << t.kind->type << ": " << c.status().ToString() << "\n" << doc;
      ++parsed;
    }
  }
  EXPECT_GE(parsed, 8u);
}

// The reference names every section, each adapter type, and secrets without their values.
TEST(ConfigReference, ListsSectionsTypesAndDefaults) {
  const std::string ref = ConfigReference();
  for (const char* heading : {"## ingress", "## journal", "## delivery", "## adapters (every type)",
                              "## adapters of type erp", "## adapters of type clickhouse",
                              "## routes", "## registration"}) {
    EXPECT_THAT(ref, HasSubstr(std::string("\n") + heading + "\n")) << heading;
  }
  EXPECT_THAT(ref, HasSubstr("| `journal.segment_bytes` | size | `64MiB` | 64KiB to 4GiB |"));
  EXPECT_THAT(ref, HasSubstr("| `ingress.auth.secret` | secret |"));
  EXPECT_THAT(ref, HasSubstr("`batch.max_events` 10000, `batch.linger` 1000ms"));
  EXPECT_THAT(ref, Not(HasSubstr("example-secret")));
}

}  // namespace
}  // namespace dvrouter
