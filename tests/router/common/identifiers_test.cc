// The SQL identifier rule shared by the configuration parser and the SQL adapters.
#include <gtest/gtest.h>

#include <string>

#include "router/common/identifiers.h"

namespace dvrouter {
namespace {

TEST(ValidSqlIdentifier, AcceptsLowercaseLettersDigitsAndUnderscoreNotLeadingADigit) {
  for (const char* name : {"a", "_", "contact", "crm_contact", "_x9", "new_account2", "a_1_b"}) {
    EXPECT_TRUE(ValidSqlIdentifier(name)) << name;
  }
}

TEST(ValidSqlIdentifier, RefusesEmptyUppercasePunctuationAndALeadingDigit) {
  for (const char* name : {"", "Contact", "crmContact", "9lives", "1", "a-b", "a b", "a.b", "a\"b",
                           "a;drop", "\xc3\xa9t\xc3\xa9"}) {
    EXPECT_FALSE(ValidSqlIdentifier(name)) << name;
  }
  EXPECT_FALSE(ValidSqlIdentifier(std::string("a\0b", 3)));
}

TEST(ValidSqlIdentifier, AllowsAtMostPostgresSixtyThreeBytes) {
  EXPECT_TRUE(ValidSqlIdentifier(std::string(63, 'a')));
  EXPECT_FALSE(ValidSqlIdentifier(std::string(64, 'a')));
}

}  // namespace
}  // namespace dvrouter
