// JsonTemplate: placeholders compiled once (every malformed form refused with its name) and
// rendered by splicing what the resolver gives, unquoted, between the literals.
#include "router/common/json_template.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace dvrouter {
namespace {

std::string Render(const JsonTemplate& t, const std::map<std::string, std::string>& values) {
  std::string out;
  t.Render(
      [&](std::string_view path, std::string* v) {
        auto it = values.find(std::string(path));
        *v += it == values.end() ? "null" : it->second;
      },
      &out);
  return out;
}

TEST(JsonTemplate, SplicesValuesBetweenLiterals) {
  auto t = JsonTemplate::Compile(
      R"({"id": {{header.row_id}}, "seq": {{ event.seq }}, "name": {{target.name}}})");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->paths(), (std::vector<std::string>{"header.row_id", "event.seq", "target.name"}));
  EXPECT_EQ(Render(*t, {{"header.row_id", "\"r1\""}, {"event.seq", "42"}}),
            R"({"id": "r1", "seq": 42, "name": null})");
  EXPECT_FALSE(t->empty());
}

TEST(JsonTemplate, TextWithoutPlaceholdersRendersAsIs) {
  auto t = JsonTemplate::Compile("/api/orders");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->paths().empty());
  EXPECT_EQ(Render(*t, {}), "/api/orders");
  auto empty = JsonTemplate::Compile("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  EXPECT_EQ(Render(*empty, {}), "");
}

TEST(JsonTemplate, PlaceholdersAtTheEdgesAndBackToBack) {
  auto t = JsonTemplate::Compile("{{event.id}}{{event.seq}}");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(Render(*t, {{"event.id", "\"ab\""}, {"event.seq", "7"}}), "\"ab\"7");
}

TEST(JsonTemplate, EveryKnownPathCompiles) {
  for (const char* path :
       {"event.id", "event.seq", "header.message", "header.table", "header.row_id", "header.stage",
        "header.correlation_id", "header.initiating_user_id", "header.operation_time",
        "header.organization", "target", "target.name", "target.statuscode.Value"}) {
    EXPECT_TRUE(JsonTemplate::Compile(std::string("{{") + path + "}}").ok()) << path;
  }
}

TEST(JsonTemplate, MalformedTemplatesAreRefusedNamingThePlaceholder) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c : {
           Case{"{\"a\": {{header.table}", "unclosed '{{' at offset 6"},
           Case{"{{}}", "{{}}: malformed path"},
           Case{"{{ }}", "{{}}: malformed path"},
           Case{"{{event.}}", "{{event.}}: malformed path"},
           Case{"{{event..id}}", "{{event..id}}: malformed path"},
           Case{"{{event.id-x}}", "{{event.id-x}}: malformed path"},
           Case{"{{event.name}}", "{{event.name}}: unknown placeholder"},
           Case{"{{header.body}}", "{{header.body}}: unknown placeholder"},
           Case{"{{header}}", "{{header}}: unknown placeholder"},
           Case{"{{target.a.b.c}}", "{{target.a.b.c}}: unknown placeholder"},
           Case{"{{secrets.key}}", "{{secrets.key}}: unknown placeholder"},
       }) {
    auto t = JsonTemplate::Compile(c.text);
    ASSERT_FALSE(t.ok()) << c.text;
    EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument) << c.text;
    EXPECT_EQ(std::string(t.status().message()).rfind(c.message, 0), 0u)
        << c.text << ": " << t.status().message();
  }
}

}  // namespace
}  // namespace dvrouter
