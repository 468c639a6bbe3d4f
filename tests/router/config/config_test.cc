#include "router/config/config.h"
#include "adapters/registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

using ::dvrouter::testing::ScopedEnv;
using ::dvrouter::testing::TempDir;
using ::dvrouter::testing::WriteFileOrDie;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

std::string QuickstartPath() {
  return std::string(DVROUTER_FIXTURES_DIR) + "/../../../deploy/examples/quickstart.yaml";
}

// A document that needs no secret, with more `ingress:` lines (indented by two) and more
// top-level sections after it.
std::string NoAuth(std::string_view ingress_lines = "", std::string_view rest = "") {
  return "ingress:\n  auth:\n    mode: none\n" + std::string(ingress_lines) + std::string(rest);
}

std::string Msg(const Status& st) { return std::string(st.message()); }

// Parses and expects an InvalidArgument with exactly `message`.
void ExpectConfigError(std::string_view yaml, std::string_view message) {
  Result<Config> c = ParseConfig(yaml);
  ASSERT_FALSE(c.ok()) << "accepted:\n" << yaml;
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(), message) << yaml;
}

// Parses and expects an InvalidArgument whose message starts with `key_path + ": "`.
void ExpectKeyError(std::string_view yaml, const std::string& key_path) {
  Result<Config> c = ParseConfig(yaml);
  ASSERT_FALSE(c.ok()) << "accepted:\n" << yaml;
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(c.status()), StartsWith(key_path + ": ")) << yaml;
}

Config ParseOk(std::string_view yaml) {
  Result<Config> c = ParseConfig(yaml);
  EXPECT_TRUE(c.ok()) << c.status().ToString() << "\n" << yaml;
  return c.ok() ? *c : Config{};
}

void ExpectDefaultsExceptAuth(const Config& c) {
  EXPECT_EQ(c.ingress.listen.host, "0.0.0.0");
  EXPECT_EQ(c.ingress.listen.port, 8080);
  EXPECT_EQ(c.ingress.path, "/webhooks/dataverse");
  EXPECT_EQ(c.ingress.io_threads, 4);
  EXPECT_EQ(c.ingress.max_body_bytes, 1048576u);
  EXPECT_EQ(c.ingress.header_timeout_ms, 10000u);
  EXPECT_EQ(c.ingress.body_timeout_ms, 30000u);
  EXPECT_EQ(c.ingress.max_connections, 1024u);
  EXPECT_EQ(c.ingress.retry_after_s, 5u);
  EXPECT_EQ(c.ingress.auth.header, "x-dvrouter-key");
  EXPECT_EQ(c.ingress.auth.parameter, "key");
  EXPECT_EQ(c.admin.listen.host, "127.0.0.1");
  EXPECT_EQ(c.admin.listen.port, 9400);
  EXPECT_EQ(c.journal.data_dir, "./data");
  EXPECT_EQ(c.journal.partitions, 64u);
  EXPECT_EQ(c.journal.segment_bytes, 64ull * 1024 * 1024);
  EXPECT_EQ(c.journal.disk_budget_bytes, 8ull * 1024 * 1024 * 1024);
  EXPECT_TRUE(c.journal.fsync);
  EXPECT_EQ(c.journal.max_batch_events, 2048u);
  EXPECT_EQ(c.journal.page_cache_bytes, 256ull << 20);
  EXPECT_EQ(c.dedupe.window_ms, 86400000u);
  EXPECT_EQ(c.dedupe.max_entries, 1000000u);
}

// ---------------------------------------------------------------------------------------------
// Defaults and the quickstart example.

TEST(ConfigDefaults, EmptyDocumentNeedsASecret) {
  ExpectConfigError("", "ingress.auth.secret: missing: set secret: ${ENV_NAME} or secret_file");
  ExpectConfigError("# only a comment\n",
                    "ingress.auth.secret: missing: set secret: ${ENV_NAME} or secret_file");
}

TEST(ConfigDefaults, OnlyTheSecretGivenUsesEveryDefault) {
  ScopedEnv env("DVROUTER_CFGTEST_DEFAULTS", "default-secret-value");
  Config c = ParseOk("ingress:\n  auth:\n    secret: ${DVROUTER_CFGTEST_DEFAULTS}\n");
  ExpectDefaultsExceptAuth(c);
  EXPECT_EQ(c.ingress.auth.mode, AuthMode::kWebhookKey);
  EXPECT_EQ(c.ingress.auth.secret, "default-secret-value");
}

TEST(ConfigDefaults, EmptySectionsAreDefaults) {
  Config c = ParseOk(NoAuth("", "admin:\njournal:\ndedupe: {}\n"));
  ExpectDefaultsExceptAuth(c);
  EXPECT_EQ(c.ingress.auth.mode, AuthMode::kNone);
  EXPECT_EQ(c.ingress.auth.secret, "");
}

TEST(ConfigDefaults, QuickstartLoadsWithTheKeySet) {
  ScopedEnv env("DVROUTER_WEBHOOK_KEY", "quickstart-secret");
  Result<Config> c = LoadConfigFile(QuickstartPath());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  // The quickstart spells out the defaults.
  ExpectDefaultsExceptAuth(*c);
  EXPECT_EQ(c->ingress.auth.mode, AuthMode::kWebhookKey);
  EXPECT_EQ(c->ingress.auth.secret, "quickstart-secret");
  // It routes everything to both embedded sinks: the lake and the SQLite mirror.
  ASSERT_NE(c->FindAdapter("lake"), nullptr);
  ASSERT_NE(c->FindAdapter("sqlite"), nullptr);
  EXPECT_EQ(c->FindAdapter("sqlite")->type, "sqlite");
  ASSERT_EQ(c->routes.size(), 1u);
  EXPECT_EQ(c->routes[0].adapters, (std::vector<std::string>{"lake", "sqlite"}));
}

TEST(ConfigDefaults, QuickstartFailsWithoutTheKey) {
  ScopedEnv env("DVROUTER_WEBHOOK_KEY", nullptr);
  Result<Config> c = LoadConfigFile(QuickstartPath());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Msg(c.status()), QuickstartPath() +
                                 ": ingress.auth.secret: environment variable "
                                 "DVROUTER_WEBHOOK_KEY is not set");
}

TEST(ConfigDefaults, QuickstartFailsWithAnEmptyKey) {
  ScopedEnv env("DVROUTER_WEBHOOK_KEY", "");
  Result<Config> c = LoadConfigFile(QuickstartPath());
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(Msg(c.status()), HasSubstr("ingress.auth.secret: environment variable "
                                         "DVROUTER_WEBHOOK_KEY is not set"));
}

TEST(ConfigDefaults, MissingFileIsNotFound) {
  TempDir dir;
  Result<Config> c = LoadConfigFile(dir.path() + "/absent.yaml");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(Msg(c.status()), "cannot read configuration file " + dir.path() + "/absent.yaml");
}

TEST(ConfigDefaults, FileErrorsArePrefixedWithThePath) {
  TempDir dir;
  const std::string path = dir.path() + "/dvrouter.yaml";
  WriteFileOrDie(path, NoAuth("", "journal:\n  partitions: 0\n"));
  Result<Config> c = LoadConfigFile(path);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Msg(c.status()), path + ": journal.partitions: must be between 1 and 65536, got '0'");
}

// ---------------------------------------------------------------------------------------------
// Secrets.

TEST(ConfigSecret, LiteralIsRefused) {
  const std::string yaml = "ingress:\n  auth:\n    secret: hunter2-literal\n";
  Result<Config> c = ParseConfig(yaml);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(Msg(c.status()), StartsWith("ingress.auth.secret: must be an environment reference"));
  EXPECT_THAT(Msg(c.status()), Not(HasSubstr("hunter2-literal")));
}

TEST(ConfigSecret, MalformedReferencesAreRefused) {
  for (const char* ref : {"${}", "$NAME", "${NAME", "{NAME}", "x${NAME}", "\"${NAME} \""}) {
    SCOPED_TRACE(ref);
    ExpectKeyError("ingress:\n  auth:\n    secret: " + std::string(ref) + "\n",
                   "ingress.auth.secret");
  }
}

TEST(ConfigSecret, UnsetVariableIsNamed) {
  ScopedEnv env("DVROUTER_CFGTEST_UNSET", nullptr);
  ExpectConfigError("ingress:\n  auth:\n    secret: ${DVROUTER_CFGTEST_UNSET}\n",
                    "ingress.auth.secret: environment variable DVROUTER_CFGTEST_UNSET is not set");
}

TEST(ConfigSecret, SecretAndSecretFileTogetherAreRefused) {
  ScopedEnv env("DVROUTER_CFGTEST_BOTH", "v");
  ExpectConfigError(
      "ingress:\n  auth:\n    secret: ${DVROUTER_CFGTEST_BOTH}\n    secret_file: /etc/key\n",
      "ingress.auth.secret: give either secret or secret_file, not both");
}

TEST(ConfigSecret, AbsoluteSecretFile) {
  TempDir dir;
  const std::string file = dir.path() + "/webhook.key";
  WriteFileOrDie(file, "file-secret-value\n\n");
  // base_dir is irrelevant for an absolute path.
  Result<Config> c =
      ParseConfig("ingress:\n  auth:\n    secret_file: " + file + "\n", "/nonexistent");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ingress.auth.secret, "file-secret-value");  // trailing newlines trimmed
}

TEST(ConfigSecret, SecretFileKeepsInnerAndLeadingBytes) {
  TempDir dir;
  WriteFileOrDie(dir.path() + "/k", "  a b\tc \r\n");
  Result<Config> c = ParseConfig("ingress:\n  auth:\n    secret_file: k\n", dir.path());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ingress.auth.secret, "  a b\tc");
}

TEST(ConfigSecret, RelativeSecretFileResolvesAgainstBaseDir) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/secrets");
  WriteFileOrDie(dir.path() + "/secrets/key", "relative-secret");
  Result<Config> c = ParseConfig("ingress:\n  auth:\n    secret_file: secrets/key\n", dir.path());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ingress.auth.secret, "relative-secret");
}

TEST(ConfigSecret, RelativeSecretFileResolvesAgainstTheConfigFilesDirectory) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/etc/dvrouter/secrets");
  WriteFileOrDie(dir.path() + "/etc/dvrouter/secrets/key", "beside-the-config\n");
  // A decoy at the same relative path from the working directory's point of view is not used.
  const std::string config = dir.path() + "/etc/dvrouter/dvrouter.yaml";
  WriteFileOrDie(config,
                 "ingress:\n  auth:\n    mode: http_header\n    header: x-key\n"
                 "    secret_file: secrets/key\n");
  Result<Config> c = LoadConfigFile(config);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ingress.auth.secret, "beside-the-config");
  EXPECT_EQ(c->ingress.auth.mode, AuthMode::kHttpHeader);
}

TEST(ConfigSecret, MissingSecretFile) {
  TempDir dir;
  ExpectConfigError("ingress:\n  auth:\n    secret_file: nope.key\n",
                    "ingress.auth.secret_file: cannot read ./nope.key");
  Result<Config> c = ParseConfig("ingress:\n  auth:\n    secret_file: nope.key\n", dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(Msg(c.status()), "ingress.auth.secret_file: cannot read " + dir.path() + "/nope.key");
}

TEST(ConfigSecret, EmptySecretFile) {
  TempDir dir;
  WriteFileOrDie(dir.path() + "/empty.key", " \n\t\n");
  Result<Config> c = ParseConfig("ingress:\n  auth:\n    secret_file: empty.key\n", dir.path());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(Msg(c.status()), "ingress.auth.secret_file: " + dir.path() + "/empty.key is empty");
}

// ---------------------------------------------------------------------------------------------
// Auth modes.

TEST(ConfigAuth, WebhookKey) {
  ScopedEnv env("DVROUTER_CFGTEST_WEBHOOK", "wk");
  Config c = ParseOk(
      "ingress:\n  auth:\n    mode: webhook_key\n    secret: ${DVROUTER_CFGTEST_WEBHOOK}\n");
  EXPECT_EQ(c.ingress.auth.mode, AuthMode::kWebhookKey);
  EXPECT_EQ(c.ingress.auth.secret, "wk");
}

TEST(ConfigAuth, HttpHeader) {
  ScopedEnv env("DVROUTER_CFGTEST_HEADER", "hv");
  Config c = ParseOk(
      "ingress:\n  auth:\n    mode: http_header\n    header: x-api-key\n"
      "    secret: ${DVROUTER_CFGTEST_HEADER}\n");
  EXPECT_EQ(c.ingress.auth.mode, AuthMode::kHttpHeader);
  EXPECT_EQ(c.ingress.auth.header, "x-api-key");
  EXPECT_EQ(c.ingress.auth.secret, "hv");
  EXPECT_EQ(c.ingress.auth.parameter, "key");
}

TEST(ConfigAuth, HttpHeaderDefaultHeaderName) {
  ScopedEnv env("DVROUTER_CFGTEST_HEADER_DEFAULT", "hv");
  Config c = ParseOk(
      "ingress:\n  auth:\n    mode: http_header\n    secret: ${DVROUTER_CFGTEST_HEADER_DEFAULT}\n");
  EXPECT_EQ(c.ingress.auth.mode, AuthMode::kHttpHeader);
  EXPECT_EQ(c.ingress.auth.header, "x-dvrouter-key");
}

TEST(ConfigAuth, HttpHeaderEmptyHeaderName) {
  ScopedEnv env("DVROUTER_CFGTEST_HEADER_EMPTY", "hv");
  ExpectConfigError(
      "ingress:\n  auth:\n    mode: http_header\n    header: ''\n"
      "    secret: ${DVROUTER_CFGTEST_HEADER_EMPTY}\n",
      "ingress.auth.header: must name the header that carries the secret");
}

TEST(ConfigAuth, HttpQueryString) {
  ScopedEnv env("DVROUTER_CFGTEST_QUERY", "qv");
  Config c = ParseOk(
      "ingress:\n  auth:\n    mode: http_query_string\n    parameter: token\n"
      "    secret: ${DVROUTER_CFGTEST_QUERY}\n");
  EXPECT_EQ(c.ingress.auth.mode, AuthMode::kHttpQueryString);
  EXPECT_EQ(c.ingress.auth.parameter, "token");
  EXPECT_EQ(c.ingress.auth.secret, "qv");
}

TEST(ConfigAuth, HttpQueryStringEmptyParameter) {
  ScopedEnv env("DVROUTER_CFGTEST_QUERY_EMPTY", "qv");
  ExpectConfigError(
      "ingress:\n  auth:\n    mode: http_query_string\n    parameter: \"\"\n"
      "    secret: ${DVROUTER_CFGTEST_QUERY_EMPTY}\n",
      "ingress.auth.parameter: must name the query parameter");
}

TEST(ConfigAuth, NoneNeedsNoSecret) {
  Config c = ParseOk(NoAuth());
  EXPECT_EQ(c.ingress.auth.mode, AuthMode::kNone);
  EXPECT_EQ(c.ingress.auth.secret, "");
}

TEST(ConfigAuth, NoneWithASecretIsRefused) {
  // A secret with mode none is almost certainly a mistake in the mode: say so.
  ScopedEnv env("DVROUTER_CFGTEST_NONE_SECRET", "v");
  ExpectConfigError(
      "ingress:\n  auth:\n    mode: none\n    secret: ${DVROUTER_CFGTEST_NONE_SECRET}\n",
      "ingress.auth.secret: is set but ingress.auth.mode is none; remove it or choose a mode");
}

TEST(ConfigAuth, MisspeltSecretKeyIsReportedAsUnknown) {
  ExpectConfigError("ingress:\n  auth:\n    mode: webhook_key\n    secret_fil: key.txt\n",
                    "ingress.auth.secret_fil: unknown key");
}

TEST(ConfigAuth, UnknownMode) {
  ExpectConfigError("ingress:\n  auth:\n    mode: basic\n",
                    "ingress.auth.mode: must be webhook_key, http_header, http_query_string or "
                    "none, got 'basic'");
  ExpectKeyError("ingress:\n  auth:\n    mode: WebhookKey\n", "ingress.auth.mode");
}

TEST(ConfigAuth, AuthMustBeAMapping) {
  ExpectConfigError("ingress:\n  auth: webhook_key\n", "ingress.auth: must be a mapping");
}

// ---------------------------------------------------------------------------------------------
// Unknown keys and wrong types.

TEST(ConfigKeys, UnknownKeysNameTheFullPath) {
  ExpectConfigError(NoAuth("", "journal:\n  segmnt_bytes: 64MiB\n"),
                    "journal.segmnt_bytes: unknown key");
  ExpectConfigError(NoAuth("  lisen: 0.0.0.0:1\n"), "ingress.lisen: unknown key");
  ExpectConfigError(NoAuth("    headr: x\n"), "ingress.auth.headr: unknown key");
  ExpectConfigError(NoAuth("", "admin:\n  listen: 127.0.0.1:1\n  metrics: true\n"),
                    "admin.metrics: unknown key");
  ExpectConfigError(NoAuth("", "dedupe:\n  windw: 1h\n"), "dedupe.windw: unknown key");
  ExpectConfigError(NoAuth("", "jornal:\n  partitions: 4\n"), "jornal: unknown key");
}

TEST(ConfigKeys, DuplicateKeysAreRefused) {
  // yaml-cpp keeps the first of two equal keys; a repeated section must not vanish silently.
  ExpectConfigError(NoAuth("",
                           "journal:\n  durability: fsync\njournal:\n  durability: "
                           "unsafe_no_fsync\n"),
                    "journal: duplicate key");
  ExpectConfigError(NoAuth("", "journal:\n  partitions: 4\n  partitions: 8\n"),
                    "journal.partitions: duplicate key");
}

TEST(ConfigKeys, SectionsMustBeMappings) {
  ExpectConfigError(NoAuth("", "journal: 5\n"), "journal: must be a mapping");
  ExpectConfigError(NoAuth("", "dedupe: [1, 2]\n"), "dedupe: must be a mapping");
  ExpectConfigError("- ingress\n- journal\n", "(top level): must be a mapping");
  ExpectConfigError("just a string\n", "(top level): must be a mapping");
  ExpectConfigError("ingress: on\n", "ingress: must be a mapping");
}

TEST(ConfigKeys, WrongTypesNameTheKey) {
  ExpectKeyError(NoAuth("", "journal:\n  segment_bytes: [1, 2]\n"), "journal.segment_bytes");
  ExpectKeyError(NoAuth("  path: {a: 1}\n"), "ingress.path");
  ExpectKeyError(NoAuth("  listen: [0.0.0.0, 8080]\n"), "ingress.listen");
  ExpectKeyError(NoAuth("  io_threads: two\n"), "ingress.io_threads");
  ExpectKeyError(NoAuth("", "journal:\n  durability: {fsync: true}\n"), "journal.durability");
  ExpectKeyError(NoAuth("", "dedupe:\n  max_entries: 1.5\n"), "dedupe.max_entries");
  ExpectConfigError(NoAuth("  io_threads: two\n"),
                    "ingress.io_threads: must be a whole number, got 'two'");
}

TEST(ConfigKeys, PathMustBeAbsolute) {
  ExpectConfigError(NoAuth("  path: webhooks\n"), "ingress.path: must start with '/'");
  Config c = ParseOk(NoAuth("  path: /hooks/dv\n"));
  EXPECT_EQ(c.ingress.path, "/hooks/dv");
}

TEST(ConfigKeys, DataDirMustNotBeEmpty) {
  ExpectConfigError(NoAuth("", "journal:\n  data_dir: ''\n"),
                    "journal.data_dir: must not be empty");
  Config c = ParseOk(NoAuth("", "journal:\n  data_dir: /var/lib/dvrouter\n"));
  EXPECT_EQ(c.journal.data_dir, "/var/lib/dvrouter");
}

TEST(ConfigKeys, YamlSyntaxErrorGivesTheLine) {
  ExpectConfigError(NoAuth("", "journal:\n  partitions: 4: 5\n"),
                    "YAML syntax error at line 5, column 16: illegal map value");
  Result<Config> c = ParseConfig("ingress:\n\tpath: /x\n");
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(Msg(c.status()), StartsWith("YAML syntax error at line 2"));
}

TEST(ConfigKeys, YamlSyntaxErrorFromAFileNamesTheFileAndLine) {
  TempDir dir;
  const std::string path = dir.path() + "/bad.yaml";
  WriteFileOrDie(path, "ingress:\n  auth:\n    mode: none\n  path: [/x\n\njournal: {}\n");
  Result<Config> c = LoadConfigFile(path);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(c.status()), StartsWith(path + ": YAML syntax error at line "));
}

// ---------------------------------------------------------------------------------------------
// Sizes, durations, counts.

TEST(ConfigQuantities, Sizes) {
  Config c = ParseOk(NoAuth("  max_body_bytes: 64KiB\n",
                            "journal:\n  segment_bytes: 64MiB\n  disk_budget_bytes: 1GiB\n"));
  EXPECT_EQ(c.ingress.max_body_bytes, 65536u);
  EXPECT_EQ(c.journal.segment_bytes, 67108864u);
  EXPECT_EQ(c.journal.disk_budget_bytes, 1073741824u);

  c = ParseOk(NoAuth("  max_body_bytes: 2048\n",
                     "journal:\n  segment_bytes: 1GiB\n  disk_budget_bytes: 2TiB\n"));
  EXPECT_EQ(c.ingress.max_body_bytes, 2048u);
  EXPECT_EQ(c.journal.segment_bytes, 1ull << 30);
  EXPECT_EQ(c.journal.disk_budget_bytes, 2ull << 40);

  // Decimal units, a bare B, and a space before the unit.
  c = ParseOk(NoAuth("  max_body_bytes: 100KB\n",
                     "journal:\n  segment_bytes: 2MB\n  disk_budget_bytes: 3 GB\n"));
  EXPECT_EQ(c.ingress.max_body_bytes, 100000u);
  EXPECT_EQ(c.journal.segment_bytes, 2000000u);
  EXPECT_EQ(c.journal.disk_budget_bytes, 3000000000u);
  c = ParseOk(NoAuth("  max_body_bytes: 4096B\n"));
  EXPECT_EQ(c.ingress.max_body_bytes, 4096u);
  // The journal's page-cache bound: 0 turns it off.
  c = ParseOk(NoAuth("", "journal:\n  page_cache_bytes: 0\n"));
  EXPECT_EQ(c.journal.page_cache_bytes, 0u);
  c = ParseOk(NoAuth("", "journal:\n  page_cache_bytes: 1GiB\n"));
  EXPECT_EQ(c.journal.page_cache_bytes, 1ull << 30);
}

TEST(ConfigQuantities, BadPageCacheBound) {
  ExpectConfigError(NoAuth("", "journal:\n  page_cache_bytes: lots\n"),
                    "journal.page_cache_bytes: must be a size such as 65536, 64KiB or 64MiB, got "
                    "'lots'");
  ExpectKeyError(NoAuth("", "journal:\n  page_cache_bytes: [1]\n"), "journal.page_cache_bytes");
}

TEST(ConfigQuantities, BadSizes) {
  for (const char* bad : {"64XB", "64kib", "1.5MiB", "MiB", "-1", "64MiB ", "0x100", "64 MiBs"}) {
    SCOPED_TRACE(bad);
    ExpectConfigError(NoAuth("", "journal:\n  segment_bytes: '" + std::string(bad) + "'\n"),
                      "journal.segment_bytes: must be a size such as 65536, 64KiB or 64MiB, got '" +
                          std::string(bad) + "'");
  }
}

TEST(ConfigQuantities, Durations) {
  Config c = ParseOk(NoAuth("  header_timeout: 500ms\n  body_timeout: 10s\n  retry_after: 5m\n",
                            "dedupe:\n  window: 24h\n"));
  EXPECT_EQ(c.ingress.header_timeout_ms, 500u);
  EXPECT_EQ(c.ingress.body_timeout_ms, 10000u);
  EXPECT_EQ(c.ingress.retry_after_s, 300u);
  EXPECT_EQ(c.dedupe.window_ms, 86400000u);

  c = ParseOk(NoAuth("  header_timeout: 1h\n  body_timeout: 5m\n  retry_after: 2500ms\n",
                     "dedupe:\n  window: 90s\n"));
  EXPECT_EQ(c.ingress.header_timeout_ms, 3600000u);
  EXPECT_EQ(c.ingress.body_timeout_ms, 300000u);
  EXPECT_EQ(c.ingress.retry_after_s, 2u);  // whole seconds, rounded down
  EXPECT_EQ(c.dedupe.window_ms, 90000u);

  c = ParseOk(NoAuth("", "dedupe:\n  window: 0s\n"));
  EXPECT_EQ(c.dedupe.window_ms, 0u);

  c = ParseOk(NoAuth("", "dedupe:\n  window: 500ms\n"));
  EXPECT_EQ(c.dedupe.window_ms, 500u);  // kept in milliseconds, not rounded
}

TEST(ConfigQuantities, BadDurations) {
  ExpectConfigError(NoAuth("  header_timeout: 10\n"),
                    "ingress.header_timeout: must be a duration such as 500ms, 10s, 5m or 24h, "
                    "got '10'");
  for (const char* bad : {"10sec", "ten", "1d", "5M", "1.5s", "-5s"}) {
    SCOPED_TRACE(bad);
    ExpectKeyError(NoAuth("  header_timeout: " + std::string(bad) + "\n"),
                   "ingress.header_timeout");
  }
  ExpectKeyError(NoAuth("", "dedupe:\n  window: forever\n"), "dedupe.window");
}

TEST(ConfigQuantities, TheGroupWindowTakesMicroseconds) {
  Config c = ParseOk(NoAuth("", ""));
  EXPECT_EQ(c.journal.group_window_us, 200u);
  EXPECT_EQ(c.journal.group_window_events, 64u);
  c = ParseOk(NoAuth("", "journal:\n  group_window: 1ms\n  group_window_events: 16\n"));
  EXPECT_EQ(c.journal.group_window_us, 1000u);
  EXPECT_EQ(c.journal.group_window_events, 16u);
  EXPECT_EQ(ParseOk(NoAuth("", "journal:\n  group_window: 0s\n")).journal.group_window_us, 0u);
  EXPECT_EQ(ParseOk(NoAuth("", "journal:\n  group_window: 2ms\n")).journal.group_window_us, 2000u);
  EXPECT_EQ(ParseOk(NoAuth("", "journal:\n  group_window: 150us\n")).journal.group_window_us, 150u);
  ExpectConfigError(NoAuth("", "journal:\n  group_window: 500\n"),
                    "journal.group_window: must be a duration such as 200us, 1ms or 1s, got '500'");
  for (const char* bad : {"200ns", "1.5ms", "-1ms", "ms", "200 us s", "[1]"}) {
    SCOPED_TRACE(bad);
    ExpectKeyError(NoAuth("", "journal:\n  group_window: " + std::string(bad) + "\n"),
                   "journal.group_window");
  }
  ExpectConfigError(NoAuth("", "journal:\n  group_window: 101ms\n"),
                    "journal.group_window: must be between 0 and 100ms, got '101ms'");
  ExpectConfigError(NoAuth("", "journal:\n  group_window_events: 0\n"),
                    "journal.group_window_events: must be between 1 and 65536, got '0'");
}

TEST(ConfigQuantities, OutOfRange) {
  ExpectConfigError(NoAuth("  io_threads: 0\n"),
                    "ingress.io_threads: must be between 1 and 64, got '0'");
  ExpectConfigError(NoAuth("  io_threads: 65\n"),
                    "ingress.io_threads: must be between 1 and 64, got '65'");
  EXPECT_EQ(ParseOk(NoAuth("  io_threads: 64\n")).ingress.io_threads, 64);
  EXPECT_EQ(ParseOk(NoAuth("  io_threads: 1\n")).ingress.io_threads, 1);
  ExpectConfigError(NoAuth("  max_body_bytes: 1023\n"),
                    "ingress.max_body_bytes: must be between 1024 and 16777216, got '1023'");
  // Capped well below the journal's 64 MiB frame limit.
  ExpectKeyError(NoAuth("  max_body_bytes: 17MiB\n"), "ingress.max_body_bytes");
  EXPECT_EQ(ParseOk(NoAuth("  max_body_bytes: 16MiB\n")).ingress.max_body_bytes, 16u << 20);
  ExpectConfigError(NoAuth("  header_timeout: 5ms\n"),
                    "ingress.header_timeout: must be between 10 and 3600000, got '5ms'");
  ExpectKeyError(NoAuth("  body_timeout: 61m\n"), "ingress.body_timeout");
  ExpectKeyError(NoAuth("  retry_after: 999ms\n"), "ingress.retry_after");
  ExpectKeyError(NoAuth("  max_connections: 0\n"), "ingress.max_connections");
  ExpectKeyError(NoAuth("  max_connections: 1000001\n"), "ingress.max_connections");
  ExpectKeyError(NoAuth("", "journal:\n  partitions: 65537\n"), "journal.partitions");
  EXPECT_EQ(ParseOk(NoAuth("", "journal:\n  partitions: 65536\n")).journal.partitions, 65536u);
  ExpectKeyError(NoAuth("", "journal:\n  segment_bytes: 32KiB\n"), "journal.segment_bytes");
  ExpectKeyError(NoAuth("", "journal:\n  segment_bytes: 5GiB\n  disk_budget_bytes: 1TiB\n"),
                 "journal.segment_bytes");
  ExpectKeyError(NoAuth("", "journal:\n  max_batch_events: 0\n"), "journal.max_batch_events");
  ExpectKeyError(NoAuth("", "journal:\n  max_batch_events: 65537\n"), "journal.max_batch_events");
  ExpectKeyError(NoAuth("", "dedupe:\n  window: 721h\n"), "dedupe.window");
  EXPECT_EQ(ParseOk(NoAuth("", "dedupe:\n  window: 720h\n")).dedupe.window_ms,
            720ull * 3600 * 1000);
  ExpectKeyError(NoAuth("", "dedupe:\n  max_entries: 0\n"), "dedupe.max_entries");
}

TEST(ConfigQuantities, Overflow) {
  ExpectConfigError(NoAuth("", "journal:\n  disk_budget_bytes: 17179869184GiB\n"),
                    "journal.disk_budget_bytes: value too large");
  ExpectKeyError(NoAuth("", "journal:\n  disk_budget_bytes: 99999999999999999999999\n"),
                 "journal.disk_budget_bytes");
  ExpectKeyError(NoAuth("  header_timeout: 18446744073709551615h\n"), "ingress.header_timeout");
}

TEST(ConfigQuantities, DiskBudgetBelowSegmentIsRefused) {
  ExpectConfigError(NoAuth("", "journal:\n  segment_bytes: 1GiB\n  disk_budget_bytes: 512MiB\n"),
                    "journal.disk_budget_bytes: must be at least twice journal.segment_bytes");
  // Against the default segment size (64 MiB) too.
  ExpectConfigError(NoAuth("", "journal:\n  disk_budget_bytes: 32MiB\n"),
                    "journal.disk_budget_bytes: must be at least twice journal.segment_bytes");
  ExpectConfigError(NoAuth("", "journal:\n  segment_bytes: 1GiB\n  disk_budget_bytes: 1GiB\n"),
                    "journal.disk_budget_bytes: must be at least twice journal.segment_bytes");
  Config c = ParseOk(NoAuth("", "journal:\n  segment_bytes: 1GiB\n  disk_budget_bytes: 2GiB\n"));
  EXPECT_EQ(c.journal.disk_budget_bytes, 2 * c.journal.segment_bytes);
}

TEST(ConfigQuantities, Durability) {
  EXPECT_TRUE(ParseOk(NoAuth("", "journal:\n  durability: fsync\n")).journal.fsync);
  EXPECT_FALSE(ParseOk(NoAuth("", "journal:\n  durability: unsafe_no_fsync\n")).journal.fsync);
  ExpectConfigError(NoAuth("", "journal:\n  durability: none\n"),
                    "journal.durability: must be fsync or unsafe_no_fsync, got 'none'");
  ExpectConfigError(NoAuth("", "journal:\n  durability: FSYNC\n"),
                    "journal.durability: must be fsync or unsafe_no_fsync, got 'FSYNC'");
}

TEST(ConfigQuantities, Compression) {
  const Config defaults = ParseOk(NoAuth("", ""));
  EXPECT_TRUE(defaults.journal.compression);
  EXPECT_EQ(defaults.journal.compression_level, 1u);
  EXPECT_FALSE(ParseOk(NoAuth("", "journal:\n  compression: none\n")).journal.compression);
  EXPECT_EQ(ParseOk(NoAuth("", "journal:\n  compression_level: 9\n")).journal.compression_level,
            9u);
  ExpectConfigError(NoAuth("", "journal:\n  compression: gzip\n"),
                    "journal.compression: must be zstd or none, got 'gzip'");
  ExpectConfigError(NoAuth("", "journal:\n  compression: ZSTD\n"),
                    "journal.compression: must be zstd or none, got 'ZSTD'");
  ExpectKeyError(NoAuth("", "journal:\n  compression: [zstd]\n"), "journal.compression");
  ExpectKeyError(NoAuth("", "journal:\n  compression_level: 0\n"), "journal.compression_level");
  ExpectKeyError(NoAuth("", "journal:\n  compression_level: 10\n"), "journal.compression_level");
  ExpectKeyError(NoAuth("", "journal:\n  compression_level: fast\n"), "journal.compression_level");
  EXPECT_TRUE(defaults.journal.compression_dictionaries);
  EXPECT_FALSE(ParseOk(NoAuth("", "journal:\n  compression_dictionaries: false\n"))
                   .journal.compression_dictionaries);
  ExpectKeyError(NoAuth("", "journal:\n  compression_dictionaries: maybe\n"),
                 "journal.compression_dictionaries");
  ExpectKeyError(NoAuth("", "journal:\n  compression_dictionaries: [true]\n"),
                 "journal.compression_dictionaries");
  EXPECT_TRUE(defaults.journal.preallocate);
  EXPECT_FALSE(ParseOk(NoAuth("", "journal:\n  preallocate: false\n")).journal.preallocate);
  ExpectKeyError(NoAuth("", "journal:\n  preallocate: 64MiB\n"), "journal.preallocate");
  ExpectKeyError(NoAuth("", "journal:\n  preallocate: [true]\n"), "journal.preallocate");
}

TEST(ConfigQuantities, ReadTail) {
  EXPECT_EQ(ParseOk(NoAuth("", "")).journal.read_tail_records, 2048u);
  EXPECT_EQ(ParseOk(NoAuth("", "journal:\n  read_tail_records: 0\n")).journal.read_tail_records,
            0u);
  ExpectKeyError(NoAuth("", "journal:\n  read_tail_records: 1000001\n"),
                 "journal.read_tail_records");
}

// ---------------------------------------------------------------------------------------------
// Endpoints.

TEST(ConfigEndpoint, InConfig) {
  ScopedEnv token("DVROUTER_CFGTEST_ADMIN", "admin-token");
  Config c = ParseOk(NoAuth("  listen: 127.0.0.1:18080\n",
                            "admin:\n  listen: '[::]:19400'\n"
                            "  auth: {token: '${DVROUTER_CFGTEST_ADMIN}'}\n"));
  EXPECT_EQ(c.ingress.listen.host, "127.0.0.1");
  EXPECT_EQ(c.ingress.listen.port, 18080);
  EXPECT_EQ(c.admin.listen.host, "::");
  EXPECT_EQ(c.admin.listen.port, 19400);

  ExpectConfigError(NoAuth("  listen: nonsense\n"),
                    "ingress.listen: expected host:port, got 'nonsense'");
  ExpectConfigError(NoAuth("", "admin:\n  listen: localhost:70000\n"),
                    "admin.listen: port must be 0-65535, got '70000'");
}

// ---------------------------------------------------------------------------------------------
// admin.auth (docs/operations.md, "Admin authentication").

TEST(ConfigAdmin, NoTokenByDefaultAndOnlyLoopbackWithoutOne) {
  Config c = ParseOk(NoAuth());
  EXPECT_EQ(c.admin.auth.token, "");
  EXPECT_FALSE(c.admin.auth.protect_metrics);
  for (const char* listen :
       {"127.0.0.1:9400", "127.8.9.10:1", "'[::1]:9400'", "'[::ffff:127.0.0.1]:9400'"}) {
    EXPECT_TRUE(ParseConfig(NoAuth("", "admin:\n  listen: " + std::string(listen) + "\n")).ok())
        << listen;
  }
  for (const char* listen : {"0.0.0.0:9400", "10.0.0.5:9400", "'[::]:9400'", "'[::2]:9400'",
                             "localhost:9400", "'[::ffff:10.0.0.1]:9400'"}) {
    SCOPED_TRACE(listen);
    ExpectKeyError(NoAuth("", "admin:\n  listen: " + std::string(listen) + "\n"),
                   "admin.auth.token");
  }
  Result<Config> bad = ParseConfig(NoAuth("", "admin:\n  listen: 0.0.0.0:9400\n"));
  EXPECT_THAT(Msg(bad.status()), HasSubstr("0.0.0.0:9400 is not a loopback address"));
}

TEST(ConfigAdmin, TheTokenComesFromTheEnvironmentOrAFile) {
  ScopedEnv token("DVROUTER_CFGTEST_ADMIN", "admin-token \n");
  Config c = ParseOk(NoAuth("",
                            "admin:\n  listen: 0.0.0.0:9400\n"
                            "  auth:\n    token: ${DVROUTER_CFGTEST_ADMIN}\n"
                            "    protect_metrics: true\n"));
  EXPECT_EQ(c.admin.auth.token, "admin-token");
  EXPECT_TRUE(c.admin.auth.protect_metrics);
  TempDir dir;
  WriteFileOrDie(dir.path() + "/admin-token", "from-file\n");
  Result<Config> f =
      ParseConfig(NoAuth("", "admin:\n  auth: {token_file: admin-token}\n"), dir.path());
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->admin.auth.token, "from-file");
  const std::string text = DescribeConfig(*f);
  EXPECT_THAT(text, HasSubstr("admin.auth.token: (set, redacted)\n"));
  EXPECT_THAT(text, HasSubstr("admin.auth.protect_metrics: false\n"));
  EXPECT_THAT(text, Not(HasSubstr("from-file")));
}

TEST(ConfigAdmin, BadTokensNameTheKey) {
  ExpectKeyError(NoAuth("", "admin:\n  auth: {token: literal}\n"), "admin.auth.token");
  ExpectKeyError(NoAuth("", "admin:\n  auth: {token: '${DVROUTER_CFGTEST_UNSET_X}'}\n"),
                 "admin.auth.token");
  ExpectKeyError(NoAuth("", "admin:\n  auth: {token_file: /nonexistent/admin-token}\n"),
                 "admin.auth.token_file");
  ExpectConfigError(NoAuth("", "admin:\n  auth: {protect_metrics: true}\n"),
                    "admin.auth.protect_metrics: needs admin.auth.token");
  ExpectConfigError(NoAuth("", "admin:\n  auth: {tokn: x}\n"), "admin.auth.tokn: unknown key");
}

TEST(ConfigAdmin, ValidateAdminJudgesAnOverriddenListener) {
  AdminConfig admin;
  EXPECT_TRUE(ValidateAdmin(admin).ok());
  admin.listen = {"0.0.0.0", 9400};
  EXPECT_THAT(Msg(ValidateAdmin(admin)), StartsWith("admin.auth.token: missing"));
  admin.auth.token = "t";
  EXPECT_TRUE(ValidateAdmin(admin).ok());
}

// ---------------------------------------------------------------------------------------------
// DescribeConfig.

TEST(DescribeConfig, NeverPrintsTheSecret) {
  const char* kSecret = "s3cr3t-Value-that-must-not-leak";
  for (const char* mode : {"webhook_key", "http_header", "http_query_string"}) {
    SCOPED_TRACE(mode);
    ScopedEnv env("DVROUTER_CFGTEST_DESCRIBE", kSecret);
    Config c = ParseOk("ingress:\n  auth:\n    mode: " + std::string(mode) +
                       "\n    secret: ${DVROUTER_CFGTEST_DESCRIBE}\n");
    ASSERT_EQ(c.ingress.auth.secret, kSecret);
    const std::string text = DescribeConfig(c);
    EXPECT_THAT(text, Not(HasSubstr(kSecret)));
    EXPECT_THAT(text, Not(HasSubstr("s3cr3t")));
    EXPECT_THAT(text, HasSubstr("ingress.auth.secret: (set, redacted)\n"));
    EXPECT_THAT(text, HasSubstr("ingress.auth.mode: " + std::string(mode) + "\n"));
  }
}

TEST(DescribeConfig, SecretFromFileIsRedactedToo) {
  TempDir dir;
  WriteFileOrDie(dir.path() + "/key", "file-secret-do-not-print\n");
  Result<Config> c = ParseConfig("ingress:\n  auth:\n    secret_file: key\n", dir.path());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_THAT(DescribeConfig(*c), Not(HasSubstr("file-secret-do-not-print")));
}

TEST(DescribeConfig, ShowsEffectiveValues) {
  Config c = ParseOk(NoAuth("  listen: 127.0.0.1:18080\n  header_timeout: 500ms\n",
                            "journal:\n  durability: unsafe_no_fsync\n  segment_bytes: 1MiB\n"
                            "dedupe:\n  window: 5m\n"));
  const std::string text = DescribeConfig(c);
  EXPECT_THAT(text, HasSubstr("ingress.listen: 127.0.0.1:18080\n"));
  EXPECT_THAT(text, HasSubstr("ingress.header_timeout: 500ms\n"));
  EXPECT_THAT(text, HasSubstr("ingress.auth.mode: none\n"));
  EXPECT_THAT(text, HasSubstr("ingress.auth.secret: (none)\n"));
  EXPECT_THAT(text, HasSubstr("admin.listen: 127.0.0.1:9400\n"));
  EXPECT_THAT(text, HasSubstr("journal.segment_bytes: 1048576\n"));
  EXPECT_THAT(text, HasSubstr("journal.durability: unsafe_no_fsync\n"));
  EXPECT_THAT(text, HasSubstr("dedupe.window: 300000ms\n"));
  EXPECT_THAT(text, HasSubstr("ingress.path: /webhooks/dataverse\n"));
}

}  // namespace
}  // namespace dvrouter

namespace dvrouter {
namespace {

TEST(ConfigTls, OffUnlessTheSectionIsPresent) {
  EXPECT_FALSE(ParseOk(NoAuth()).ingress.tls.enabled);
}

TEST(ConfigTls, FilesResolveAgainstTheConfigDirectoryAndMustExist) {
  testing::TempDir dir;
  testing::WriteFileOrDie(dir.path() + "/cert.pem", "x");
  testing::WriteFileOrDie(dir.path() + "/key.pem", "x");
  Result<Config> c = ParseConfig(
      "ingress:\n  auth:\n    mode: none\n  tls:\n    cert_file: cert.pem\n    key_file: key.pem\n",
      dir.path());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->ingress.tls.enabled);
  EXPECT_EQ(c->ingress.tls.cert_file, dir.path() + "/cert.pem");
  EXPECT_EQ(c->ingress.tls.key_file, dir.path() + "/key.pem");
  EXPECT_EQ(c->ingress.tls.min_version, "1.2");

  ExpectConfigError("ingress:\n  auth:\n    mode: none\n  tls: {}\n",
                    "ingress.tls.cert_file: missing: TLS needs a PEM file");
  Result<Config> missing_key = ParseConfig(
      "ingress:\n  auth:\n    mode: none\n  tls:\n    cert_file: cert.pem\n    key_file: "
      "nope.pem\n",
      dir.path());
  ASSERT_FALSE(missing_key.ok());
  EXPECT_EQ(missing_key.status().message(),
            "ingress.tls.key_file: cannot read " + dir.path() + "/nope.pem");
  Result<Config> bad_version = ParseConfig(
      "ingress:\n  auth:\n    mode: none\n  tls:\n    cert_file: cert.pem\n"
      "    key_file: key.pem\n    min_version: \"1.1\"\n",
      dir.path());
  ASSERT_FALSE(bad_version.ok());
  EXPECT_EQ(bad_version.status().message(),
            "ingress.tls.min_version: must be 1.2 or 1.3, got '1.1'");
  ExpectKeyError("ingress:\n  auth:\n    mode: none\n  tls:\n    certfile: cert.pem\n",
                 "ingress.tls.certfile");
}

// ---------------------------------------------------------------------------------------------
// journal.backend: nats (docs/journal-nats.md).

TEST(ConfigNats, TheStreamsSettingsAndTheirDefaults) {
  Config c = ParseOk(NoAuth("",
                            "journal:\n"
                            "  backend: nats\n"
                            "  disk_budget_bytes: 2GiB\n"
                            "  nats: {servers: [nats://a:4222, nats://b:4222], replicas: 3}\n"
                            "dedupe: {window: 12h}\n"));
  EXPECT_TRUE(c.journal.nats);
  EXPECT_EQ(c.journal.nats_config.servers,
            (std::vector<std::string>{"nats://a:4222", "nats://b:4222"}));
  EXPECT_EQ(c.journal.nats_config.stream, "DVROUTER");
  EXPECT_EQ(c.journal.nats_config.duplicate_window_ms, 12 * 3'600'000u) << "dedupe.window's";
  EXPECT_EQ(c.journal.nats_config.max_bytes, 2ull << 30) << "journal.disk_budget_bytes'";
  EXPECT_EQ(c.journal.nats_config.ack_timeout_ms, 15000u);
  EXPECT_FALSE(ParseOk(NoAuth("", "")).journal.nats) << "file by default";
}

TEST(ConfigNats, MalformedSettingsAreNamed) {
  ExpectConfigError(NoAuth("", "journal: {backend: nats}\n"),
                    "journal.nats: backend: nats needs journal.nats.servers");
  ExpectConfigError(NoAuth("", "journal: {nats: {servers: [nats://a:4222]}}\n"),
                    "journal.nats: only with journal.backend: nats");
  ExpectConfigError(NoAuth("", "journal: {backend: nats, nats: {servers: []}}\n"),
                    "journal.nats.servers: at least one nats://host:port");
  ExpectConfigError(NoAuth("", "journal: {backend: nats, nats: {servers: [http://a:4222]}}\n"),
                    "journal.nats.servers: 'http://a:4222' is not a nats://host:port URL");
  ExpectConfigError(
      NoAuth("", "journal: {backend: nats, nats: {servers: [nats://a:1], stream: a.b}}\n"),
      "journal.nats.stream: letters, digits, '_' and '-' only (a JetStream stream name)");
  ExpectConfigError(
      NoAuth("", "journal: {backend: nats, nats: {servers: [nats://a:1], replicas: 7}}\n"),
      "journal.nats.replicas: must be between 1 and 5, got '7'");
  ExpectConfigError(
      NoAuth("", "journal: {backend: nats, nats: {servers: [nats://a:1], user: u}}\n"),
      "journal.nats.user: user and password go together");
  ExpectKeyError(
      NoAuth("", "journal: {backend: nats, nats: {servers: [nats://a:1], password: x}}\n"),
      "journal.nats.password");
  ExpectConfigError(
      NoAuth("", "journal: {backend: nats, nats: {servers: [nats://a:1], ack_timeout: 1ms}}\n"),
      "journal.nats.ack_timeout: must be between 100 and 60000, got '1ms'");
  ExpectKeyError(
      NoAuth("", "journal: {backend: nats, nats: {servers: [nats://a:1], creds_file: /no}}\n"),
      "journal.nats.creds_file");
  ExpectKeyError(
      NoAuth("", "journal: {backend: nats, nats: {servers: [nats://a:1], replica: 3}}\n"),
      "journal.nats.replica");
}

// cluster (docs/journal-nats.md, "Several router nodes").

TEST(ConfigCluster, TheNodeAndLeaseTtlAndTheirDefaults) {
  const std::string nats = "journal: {backend: nats, nats: {servers: [nats://a:4222]}}\n";
  Config c = ParseOk(NoAuth("", nats + "cluster: {node: router-1, lease_ttl: 3s}\n"));
  EXPECT_TRUE(c.cluster.enabled);
  EXPECT_EQ(c.cluster.node, "router-1");
  EXPECT_EQ(c.cluster.lease_ttl_ms, 3000u);
  Config d = ParseOk(NoAuth("", nats + "cluster: {}\n"));
  EXPECT_TRUE(d.cluster.enabled);
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof(host) - 1), 0);
  EXPECT_EQ(d.cluster.node, host) << "the host name by default";
  EXPECT_EQ(d.cluster.lease_ttl_ms, 5000u);
  EXPECT_FALSE(ParseOk(NoAuth("", nats)).cluster.enabled) << "one node without the section";
}

TEST(ConfigCluster, MalformedSettingsAreNamed) {
  const std::string nats = "journal: {backend: nats, nats: {servers: [nats://a:4222]}}\n";
  ExpectConfigError(NoAuth("", "cluster: {node: a}\n"),
                    "cluster: several router nodes share a NATS JetStream journal: set "
                    "journal.backend: nats (and journal.nats) or remove the cluster section");
  ExpectConfigError(NoAuth("", nats + "cluster: {node: a/b}\n"),
                    "cluster.node: 'a/b': letters, digits, '_', '-' and '.' only (a key in the "
                    "cluster's key-value bucket)");
  ExpectConfigError(NoAuth("", nats + "cluster: {lease_ttl: 100ms}\n"),
                    "cluster.lease_ttl: must be between 1000 and 60000, got '100ms'");
  ExpectKeyError(NoAuth("", nats + "cluster: {lease: 3s}\n"), "cluster.lease");
}

}  // namespace
}  // namespace dvrouter
