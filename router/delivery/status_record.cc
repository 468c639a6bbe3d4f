#include "router/delivery/status_record.h"

#include <simdjson.h>

#include "router/common/json.h"

namespace dvrouter {

namespace {

void AppendStringOrNull(std::string* b, const std::string& s) {
  if (s.empty()) {
    *b += "null";
  } else {
    AppendJsonString(b, s);
  }
}

// Text that is one whole JSON object (only such an answer is embedded as it is).
bool IsJsonObject(const std::string& text) {
  if (text.empty() || text.front() != '{') return false;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  return parser.parse(text).get(doc) == simdjson::SUCCESS && doc.is_object();
}

}  // namespace

std::string EncodeStatusRecord(const StatusRecord& r) {
  std::string b = "{\"event_id\":";
  AppendJsonString(&b, r.event_id);
  b += ",\"seq\":" + std::to_string(r.seq) + ",\"adapter\":";
  AppendJsonString(&b, r.adapter);
  b += ",\"state\":";
  AppendJsonString(&b, r.state);
  b += ",\"attempts\":" + std::to_string(r.attempts) + ",\"table\":";
  AppendJsonString(&b, r.table);
  b += ",\"row_id\":";
  AppendJsonString(&b, r.row_id);
  b += ",\"error\":";
  AppendStringOrNull(&b, r.error.empty() ? r.error : Utf8Excerpt(r.error, 4000));
  b += ",\"answer\":";
  if (IsJsonObject(r.answer)) {
    b += r.answer;  // the adapter's captured JSON object
  } else {
    AppendStringOrNull(&b, r.answer);
  }
  b += ",\"order\":" + std::to_string(r.order) + ",\"at\":";
  AppendJsonString(&b, r.at);
  b += "}";
  return b;
}

Result<StatusRecord> DecodeStatusRecord(std::string_view body) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (auto err = parser.parse(body.data(), body.size()).get(doc)) {
    return InvalidArgument(std::string("status record is not JSON: ") +
                           simdjson::error_message(err));
  }
  StatusRecord r;
  auto text = [&](const char* key, std::string* out) {
    std::string_view v;
    if (doc[key].get(v) == simdjson::SUCCESS) *out = std::string(v);
  };
  text("state", &r.state);
  if (r.state.empty()) return InvalidArgument("status record without a state");
  text("adapter", &r.adapter);
  text("event_id", &r.event_id);
  text("table", &r.table);
  text("row_id", &r.row_id);
  text("error", &r.error);
  text("at", &r.at);
  uint64_t n = 0;
  if (doc["seq"].get(n) == simdjson::SUCCESS) r.seq = n;
  if (doc["attempts"].get(n) == simdjson::SUCCESS) r.attempts = static_cast<uint32_t>(n);
  if (doc["order"].get(n) == simdjson::SUCCESS) r.order = n;
  simdjson::dom::element answer;
  if (doc["answer"].get(answer) == simdjson::SUCCESS) {
    std::string_view s;
    if (answer.is_object()) {
      r.answer = simdjson::minify(answer);
    } else if (answer.get(s) == simdjson::SUCCESS) {
      r.answer = std::string(s);
    }
  }
  return r;
}

}  // namespace dvrouter
