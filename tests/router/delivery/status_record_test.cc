#include "router/delivery/status_record.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace dvrouter {
namespace {

using ::testing::HasSubstr;

StatusRecord Sample() {
  StatusRecord r;
  r.event_id = "0123456789abcdef0123456789abcdef";
  r.seq = 42;
  r.adapter = "erp";
  r.state = "failed";
  r.attempts = 3;
  r.table = "salesorder";
  r.row_id = "3d1feef9-604d-ef11-bfe3-6045bd03d9d8";
  r.error = "HTTP 422: \"quantity\" must be > 0";
  r.answer = R"({"order_number":"SO-1"})";
  r.order = 1'700'000'000'000'001;
  r.at = "2026-12-04T22:00:00.000Z";
  return r;
}

TEST(StatusRecord, RoundTripsEveryField) {
  const StatusRecord in = Sample();
  Result<StatusRecord> out = DecodeStatusRecord(EncodeStatusRecord(in));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->event_id, in.event_id);
  EXPECT_EQ(out->seq, in.seq);
  EXPECT_EQ(out->adapter, in.adapter);
  EXPECT_EQ(out->state, in.state);
  EXPECT_EQ(out->attempts, in.attempts);
  EXPECT_EQ(out->table, in.table);
  EXPECT_EQ(out->row_id, in.row_id);
  EXPECT_EQ(out->error, in.error);
  EXPECT_EQ(out->answer, in.answer);
  EXPECT_EQ(out->order, in.order);
  EXPECT_EQ(out->at, in.at);
}

TEST(StatusRecord, PlainAnswersAndEmptyFieldsStayPlainAndEmpty) {
  StatusRecord in = Sample();
  in.answer = "{not JSON";  // looks like an object, is text: stored as a string
  in.error.clear();
  const std::string body = EncodeStatusRecord(in);
  EXPECT_THAT(body, HasSubstr(R"("error":null)"));
  Result<StatusRecord> out = DecodeStatusRecord(body);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->answer, "{not JSON");
  EXPECT_EQ(out->error, "");
}

TEST(StatusRecord, ALongOrInvalidErrorBecomesAValidExcerpt) {
  StatusRecord in = Sample();
  in.error = std::string(5000, 'x') + "\xff\xfe";
  Result<StatusRecord> out = DecodeStatusRecord(EncodeStatusRecord(in));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_LE(out->error.size(), 4000u);
  EXPECT_EQ(out->error.substr(0, 10), std::string(10, 'x'));
}

TEST(StatusRecord, MalformedBodiesAreClearErrors) {
  for (const char* body : {"", "{", "[]", "{\"adapter\":\"erp\"}", "{\"state\":7}"}) {
    Result<StatusRecord> r = DecodeStatusRecord(body);
    EXPECT_FALSE(r.ok()) << body;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr("status record")) << body;
  }
}

}  // namespace
}  // namespace dvrouter
