// The admin API's JSON views (router/ingress/admin_json.h): an event with its timeline,
// write-back and record; the event search; the DLQ narrowed by reason, time and count; the
// console's stats. Every body must parse as JSON and say what the status table holds.
#include "router/ingress/admin_json.h"

#include <gtest/gtest.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <simdjson.h>

#include <memory>
#include <string>
#include <vector>

#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

simdjson::dom::element Parse(simdjson::dom::parser& parser, const std::string& json) {
  simdjson::dom::element root;
  EXPECT_EQ(parser.parse(json).get(root), simdjson::SUCCESS) << json;
  return root;
}

std::string Str(simdjson::dom::element e) {
  std::string_view v;
  return e.get(v) == simdjson::SUCCESS ? std::string(v) : "<not a string>";
}

EventStatus FailedThenCompleted() {
  EventStatus st;
  st.seq = 42;
  st.summary.table = "salesorder";
  st.summary.row_id = "aaaaaaaa-0000-0000-0000-000000000001";
  st.summary.message = "Create";
  st.summary.received_ms = 1'700'000'000'000;
  st.adapters.resize(3);
  AdapterStatus& erp = st.adapters[0];
  erp.Step(EventState::kPending, 1'700'000'000'001, 0, "", "");
  erp.Step(EventState::kSubmitted, 1'700'000'000'002, 1, "", "");
  erp.Step(EventState::kFailed, 1'700'000'000'003, 1, "erp HTTP 400: \"blocked\"\n", "");
  erp.Step(EventState::kSubmitted, 1'700'000'000'004, 1, "", "");
  erp.steps.back().replay = true;
  erp.Step(EventState::kCompleted, 1'700'000'000'005, 1, "", R"({"order_number":"SO-1"})");
  erp.written_back = "completed";
  erp.written_back_ms = 1'700'000'000'006;
  erp.written_back_by = 2;
  return st;  // adapter 1 never routed, adapter 2 (the write-back) idle
}

TEST(AdminJson, AnEventShowsItsTimelineWriteBackAndRecord) {
  const std::vector<std::string> names = {"erp", "lake", "crm"};
  EventHeader header;
  header.message_name = "Create";
  header.primary_entity_name = "salesorder";
  header.primary_entity_id = "aaaaaaaa-0000-0000-0000-000000000001";
  header.stage = 40;
  header.mode = 1;
  header.operation_id = "bbbbbbbb-0000-0000-0000-000000000002";
  const std::string body = "{\"x\":\"\xff\"}";  // not UTF-8: shown as an excerpt
  const std::string record = EventRecordJson(header, body);
  Result<std::string> json =
      EventStatusJson(EventKey{1, 2}, FailedThenCompleted(), nullptr, names, record);
  ASSERT_TRUE(json.ok()) << json.status().ToString();
  simdjson::dom::parser parser;
  simdjson::dom::element root = Parse(parser, *json);
  EXPECT_EQ(Str(root["event_id"]), "00000000000000010000000000000002");
  EXPECT_EQ(uint64_t(root["seq"]), 42u);
  EXPECT_EQ(Str(root["table"]), "salesorder");
  EXPECT_EQ(Str(root["row_id"]), "aaaaaaaa-0000-0000-0000-000000000001");
  EXPECT_EQ(Str(root["received_at"]), "2023-11-14T22:13:20.000Z");
  simdjson::dom::element erp = root["adapters"]["erp"];
  EXPECT_EQ(Str(erp["state"]), "completed");
  EXPECT_EQ(Str(erp["last_error"]), "erp HTTP 400: \"blocked\"\n");
  simdjson::dom::array steps = erp["steps"];
  ASSERT_EQ(steps.size(), 5u);
  EXPECT_EQ(Str(steps.at(2)["state"]), "failed");
  EXPECT_EQ(Str(steps.at(2)["error"]), "erp HTTP 400: \"blocked\"\n");
  EXPECT_TRUE(bool(steps.at(3)["replay"]));
  EXPECT_EQ(Str(steps.at(4)["answer"]), R"({"order_number":"SO-1"})");
  EXPECT_EQ(Str(erp["written_back"]["state"]), "completed");
  EXPECT_EQ(Str(erp["written_back"]["by"]), "crm");
  EXPECT_FALSE(bool(root["adapters"]["lake"]["routed"]));
  EXPECT_EQ(Str(root["record"]["header"]["operation_id"]), "bbbbbbbb-0000-0000-0000-000000000002");
  EXPECT_EQ(int64_t(root["record"]["header"]["stage"]), 40);
  EXPECT_EQ(Str(root["record"]["body"]), "{\"x\":\"?\"}");
}

TEST(AdminJson, AnEventNeitherKeptNorDeadIsNotFound) {
  Result<std::string> json = EventStatusJson(EventKey{1, 2}, std::nullopt, nullptr, {"erp"});
  EXPECT_EQ(json.status().code(), StatusCode::kNotFound);
}

TEST(AdminJson, TheSearchListsEventsWithTheirAdaptersAndTheNextPage) {
  const std::vector<std::string> names = {"erp", "lake", "crm"};
  std::vector<EventMatch> matches = {{EventKey{0, 9}, FailedThenCompleted()},
                                     {EventKey{0, 8}, FailedThenCompleted()}};
  matches[1].status.seq = 17;
  simdjson::dom::parser parser;
  simdjson::dom::element root = Parse(parser, EventSearchJson(matches, names, true, 1234));
  simdjson::dom::array events = root["events"];
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(Str(events.at(0)["event_id"]), "00000000000000000000000000000009");
  EXPECT_EQ(Str(events.at(0)["adapters"]["erp"]["state"]), "completed");
  EXPECT_EQ(events.at(0)["adapters"]["lake"].error(), simdjson::NO_SUCH_FIELD)
      << "an adapter the event was not routed to is left out";
  EXPECT_EQ(uint64_t(root["next_before"]), 17u) << "the last listed seq";
  EXPECT_EQ(uint64_t(root["kept"]), 1234u);
  root = Parse(parser, EventSearchJson(matches, names, false, 2));
  EXPECT_TRUE(root["next_before"].is_null());
  root = Parse(parser, EventSearchJson({}, names, false, 0));
  EXPECT_EQ(simdjson::dom::array(root["events"]).size(), 0u);
}

TEST(AdminJson, TheDlqListIsNarrowedByReasonTimeAndCount) {
  testing::TempDir tmp;
  auto dlq = DeadLetterQueue::Open(tmp.path() + "/dlq.log");
  ASSERT_TRUE(dlq.ok()) << dlq.status().ToString();
  std::vector<DlqEntry> entries;
  for (int i = 0; i < 6; ++i) {
    DlqEntry e;
    e.adapter = i % 2 == 0 ? "erp" : "pg";
    e.seq = static_cast<uint64_t>(i + 1);
    e.event_id = std::string(31, '0') + std::to_string(i);
    e.reason = i < 3 ? "permanent" : "gave_up: max_age";
    e.failed_at_ms = 1000 * (i + 1);
    e.record = "frame";
    entries.push_back(e);
  }
  ASSERT_TRUE((*dlq)->Append(&entries).ok());
  simdjson::dom::parser parser;
  const auto ids = [&](const std::string& json) {
    std::vector<uint64_t> out;
    for (simdjson::dom::element e : simdjson::dom::array(Parse(parser, json))) {
      out.push_back(uint64_t(e["id"]));
    }
    return out;
  };
  EXPECT_EQ(ids(DlqJson(dlq->get(), "", std::nullopt, false)),
            (std::vector<uint64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(ids(DlqJson(dlq->get(), "", std::nullopt, false, "gave_up")),
            (std::vector<uint64_t>{4, 5, 6}));
  EXPECT_EQ(ids(DlqJson(dlq->get(), "erp", std::nullopt, false, "", 2000)),
            (std::vector<uint64_t>{3, 5}));
  EXPECT_EQ(ids(DlqJson(dlq->get(), "", std::nullopt, false, "", 0, 2)),
            (std::vector<uint64_t>{5, 6}))
      << "the newest two";
  EXPECT_EQ(ids(DlqJson(dlq->get(), "", std::nullopt, false, "nope")), std::vector<uint64_t>{});
  EXPECT_EQ(DlqJson(nullptr, "", std::nullopt, false), "[]");
}

TEST(AdminJson, StatsGiveTheConsoleSeriesAsJson) {
  prometheus::Registry registry;
  auto& requests = prometheus::BuildCounter().Name("dvrouter_requests_total").Register(registry);
  requests.Add({{"outcome", "accepted"}}).Increment(7);
  requests.Add({{"outcome", "unauthorized"}}).Increment(2);
  prometheus::BuildGauge()
      .Name("dvrouter_delivery_lag_events")
      .Register(registry)
      .Add({{"adapter", "erp \"main\""}})
      .Set(12.5);
  prometheus::BuildHistogram()
      .Name("dvrouter_journal_fsync_seconds")
      .Register(registry)
      .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.01})
      .Observe(0.004);
  prometheus::BuildGauge().Name("dvrouter_not_for_the_console").Register(registry).Add({}).Set(1);
  simdjson::dom::parser parser;
  simdjson::dom::element root = Parse(parser, StatsJson(registry.Collect(), 1234));
  EXPECT_EQ(int64_t(root["at"]), 1234);
  simdjson::dom::object series = root["series"];
  EXPECT_EQ(series.size(), 3u) << "only the console's series";
  simdjson::dom::array req = series["dvrouter_requests_total"];
  ASSERT_EQ(req.size(), 2u);
  double sum = 0;
  for (simdjson::dom::element m : req) sum += double(m["value"]);
  EXPECT_EQ(sum, 9);
  simdjson::dom::element lag = series["dvrouter_delivery_lag_events"].at(0);
  EXPECT_EQ(Str(lag["labels"]["adapter"]), "erp \"main\"");
  EXPECT_EQ(double(lag["value"]), 12.5);
  simdjson::dom::element fsync = series["dvrouter_journal_fsync_seconds"].at(0);
  EXPECT_EQ(uint64_t(fsync["count"]), 1u);
  EXPECT_EQ(double(fsync["sum"]), 0.004);
}

}  // namespace
}  // namespace dvrouter
