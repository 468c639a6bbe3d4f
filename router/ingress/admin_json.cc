#include "router/ingress/admin_json.h"

#include "router/common/json.h"
#include "router/decode/attributes.h"

namespace dvrouter {

bool ParseEventId(std::string_view text, EventKey* key) {
  if (text.size() != 32) return false;
  uint64_t parts[2] = {0, 0};
  for (size_t i = 0; i < 32; ++i) {
    const char c = text[i];
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else {
      return false;
    }
    parts[i / 16] = parts[i / 16] << 4 | static_cast<uint64_t>(v);
  }
  key->hi = parts[0];
  key->lo = parts[1];
  return true;
}

void AppendDlqJson(std::string* out, const DlqEntry& e) {
  *out += "{\"id\":" + std::to_string(e.id) + ",\"adapter\":";
  AppendJsonString(out, e.adapter);
  *out += ",\"seq\":" + std::to_string(e.seq) + ",\"event_id\":";
  AppendJsonString(out, e.event_id);
  *out += ",\"table\":";
  AppendJsonString(out, e.table);
  *out += ",\"row_id\":";
  AppendJsonString(out, e.row_id);
  *out += ",\"message\":";
  AppendJsonString(out, e.message);
  *out += ",\"reason\":";
  AppendJsonString(out, e.reason);
  *out += ",\"attempts\":" + std::to_string(e.attempts) + ",\"last_error\":";
  AppendJsonString(out, e.last_error);
  *out += ",\"failed_at\":";
  AppendJsonString(out, FormatIsoUtc(e.failed_at_ms));
  *out += ",\"replayed\":";
  *out += e.replayed ? "true}" : "false}";
}

Result<std::string> EventStatusJson(const std::string& event_id, const StatusTable& status,
                                    const DeadLetterQueue* dlq,
                                    const std::vector<std::string>& adapters) {
  EventKey key;
  if (!ParseEventId(event_id, &key)) {
    return InvalidArgument("an event id is 32 hexadecimal digits, got '" + event_id + "'");
  }
  const std::string id = key.ToHex();
  std::optional<EventStatus> st = status.Find(key);
  std::vector<std::optional<DlqEntry>> dead(adapters.size());
  bool any_dead = false;
  for (size_t a = 0; a < adapters.size(); ++a) {
    if (dlq) dead[a] = dlq->FindEvent(id, adapters[a]);
    any_dead |= dead[a].has_value();
  }
  if (!st && !any_dead) {
    return NotFound("event " + id +
                    " is not among the recent events the status table keeps "
                    "(delivery.status_entries) nor in the DLQ");
  }
  std::string out = "{\"event_id\":\"" + id + "\"";
  if (st) out += ",\"seq\":" + std::to_string(st->seq);
  out += ",\"adapters\":{";
  bool first = true;
  for (size_t a = 0; a < adapters.size(); ++a) {
    if (!first) out += ',';
    first = false;
    AppendJsonString(&out, adapters[a]);
    out += ':';
    if (st) {
      const AdapterStatus& s = st->adapters[a];
      // A failed event that was replayed may have moved on since its DLQ entry.
      out += "{\"state\":\"" + std::string(EventStateName(s.state)) + "\"";
      out += ",\"attempts\":" + std::to_string(s.attempts);
      if (s.updated_ms > 0) {
        out += ",\"updated_at\":";
        AppendJsonString(&out, FormatIsoUtc(s.updated_ms));
      } else {
        // Never queued for this adapter: not routed to it, or skipped by the loop guard.
        out += ",\"routed\":false";
      }
      if (!s.last_error.empty()) {
        out += ",\"last_error\":";
        AppendJsonString(&out, s.last_error);
      }
      if (!s.answer.empty()) {
        out += ",\"answer\":";
        AppendJsonString(&out, s.answer);
      }
    } else if (dead[a]) {
      out += "{\"state\":\"failed\",\"attempts\":" + std::to_string(dead[a]->attempts) +
             ",\"last_error\":";
      AppendJsonString(&out, dead[a]->last_error);
    } else {
      out += "{\"state\":\"unknown\"";
    }
    if (dead[a]) {
      out += ",\"dlq\":";
      AppendDlqJson(&out, *dead[a]);
    }
    out += '}';
  }
  out += "}}";
  return out;
}

std::string DlqJson(const DeadLetterQueue* dlq, const std::string& adapter,
                    std::optional<uint64_t> id, bool include_replayed) {
  std::string out = "[";
  if (dlq) {
    bool first = true;
    for (const DlqEntry& e : dlq->List(adapter, id, include_replayed)) {
      if (!first) out += ",\n";
      first = false;
      AppendDlqJson(&out, e);
    }
  }
  out += "]";
  return out;
}

}  // namespace dvrouter
