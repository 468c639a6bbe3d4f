#include "router/ingress/http.h"

#include <gtest/gtest.h>

namespace dvrouter {
namespace {

TEST(Http, TargetPathDropsTheQuery) {
  EXPECT_EQ(TargetPath("/webhooks/dataverse?code=abc"), "/webhooks/dataverse");
  EXPECT_EQ(TargetPath("/webhooks/dataverse"), "/webhooks/dataverse");
  EXPECT_EQ(TargetPath("/?"), "/");
}

TEST(Http, QueryParameterFindsAndDecodes) {
  std::string v;
  ASSERT_TRUE(QueryParameter("/w?code=abc", "code", &v));
  EXPECT_EQ(v, "abc");
  ASSERT_TRUE(QueryParameter("/w?x=1&code=a%2Fb%3D%3D&y=2", "code", &v));
  EXPECT_EQ(v, "a/b==");
  ASSERT_TRUE(QueryParameter("/w?code=a+b", "code", &v));
  EXPECT_EQ(v, "a b");
  ASSERT_TRUE(QueryParameter("/w?code=", "code", &v));
  EXPECT_EQ(v, "");
  ASSERT_TRUE(QueryParameter("/w?flag&code=z", "code", &v));
  EXPECT_EQ(v, "z");
  EXPECT_FALSE(QueryParameter("/w?codex=abc", "code", &v));
  EXPECT_FALSE(QueryParameter("/w", "code", &v));
  EXPECT_FALSE(QueryParameter("/w?code=%zz", "code", &v));  // malformed escape
  EXPECT_FALSE(QueryParameter("/w?code=%4", "code", &v));   // truncated escape
}

TEST(Http, ConstantTimeEqualsComparesWholeStrings) {
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secre"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secrets"));
  EXPECT_FALSE(ConstantTimeEquals("secret", ""));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}

}  // namespace
}  // namespace dvrouter
