#include "router/ingress/admin_json.h"

#include <cmath>
#include <cstdio>

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

namespace {

void AppendMs(std::string* out, const char* name, int64_t ms) {
  *out += ",\"";
  *out += name;
  *out += "\":";
  AppendJsonString(out, FormatIsoUtc(ms));
}

void AppendField(std::string* out, const char* name, std::string_view value) {
  *out += ",\"";
  *out += name;
  *out += "\":";
  AppendJsonString(out, value);
}

void AppendSummary(std::string* out, const EventStatus& st) {
  *out += ",\"seq\":" + std::to_string(st.seq);
  if (!st.summary.table.empty()) AppendField(out, "table", st.summary.table);
  if (!st.summary.row_id.empty()) AppendField(out, "row_id", st.summary.row_id);
  if (!st.summary.message.empty()) AppendField(out, "message", st.summary.message);
  if (st.summary.received_ms > 0) AppendMs(out, "received_at", st.summary.received_ms);
  if (st.summary.status_record) *out += ",\"status_record\":true";
}

void AppendSteps(std::string* out, const AdapterStatus& s) {
  *out += ",\"steps\":[";
  for (size_t i = 0; i < s.steps.size(); ++i) {
    const StatusStep& step = s.steps[i];
    if (i > 0) *out += ',';
    *out += "{\"at\":";
    AppendJsonString(out, FormatIsoUtc(step.ms));
    *out += ",\"state\":\"" + std::string(EventStateName(step.state)) + "\"";
    *out += ",\"attempt\":" + std::to_string(step.attempt);
    if (step.replay) *out += ",\"replay\":true";
    if (step.same_error) *out += ",\"same_error\":true";
    if (!step.error().empty()) AppendField(out, "error", step.error());
    if (!step.answer().empty()) AppendField(out, "answer", step.answer());
    *out += '}';
  }
  *out += ']';
  if (s.steps_dropped > 0) *out += ",\"steps_left_out\":" + std::to_string(s.steps_dropped);
}

}  // namespace

std::string EventRecordJson(const EventHeader& h, std::string_view body) {
  std::string out = "{\"header\":{\"message\":";
  AppendJsonString(&out, h.message_name);
  AppendField(&out, "table", h.primary_entity_name);
  AppendField(&out, "row_id", h.primary_entity_id);
  out += ",\"stage\":" + std::to_string(h.stage) + ",\"mode\":" + std::to_string(h.mode) +
         ",\"depth\":" + std::to_string(h.depth);
  AppendField(&out, "correlation_id", h.correlation_id);
  AppendField(&out, "operation_id", h.operation_id);
  AppendField(&out, "request_id", h.request_id);
  AppendField(&out, "owning_extension_id", h.owning_extension_id);
  AppendField(&out, "initiating_user_id", h.initiating_user_id);
  if (h.operation_created_on_ms != 0) {
    AppendMs(&out, "operation_created_on", h.operation_created_on_ms);
  }
  AppendField(&out, "organization_name", h.organization_name);
  AppendField(&out, "organization_host", h.organization_host);
  AppendField(&out, "http_request_id", h.http_request_id);
  if (h.size_exceeded) out += ",\"size_exceeded\":true";
  out += "},\"body\":";
  AppendJsonString(&out, Utf8Excerpt(body));
  out += '}';
  return out;
}

Result<std::string> EventStatusJson(const EventKey& key, const std::optional<EventStatus>& st,
                                    const DeadLetterQueue* dlq,
                                    const std::vector<std::string>& adapters,
                                    std::string_view record) {
  const std::string id = key.ToHex();
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
  if (st) AppendSummary(&out, *st);
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
        AppendMs(&out, "updated_at", s.updated_ms);
      } else {
        // Never queued for this adapter: not routed to it, or skipped by the loop guard.
        out += ",\"routed\":false";
      }
      if (!s.last_error.empty()) AppendField(&out, "last_error", s.last_error);
      if (!s.answer.empty()) AppendField(&out, "answer", s.answer);
      if (s.updated_ms > 0) AppendSteps(&out, s);
      if (!s.written_back.empty()) {
        out += ",\"written_back\":{\"state\":";
        AppendJsonString(&out, s.written_back);
        AppendMs(&out, "at", s.written_back_ms);
        if (s.written_back_by >= 0 && static_cast<size_t>(s.written_back_by) < adapters.size()) {
          AppendField(&out, "by", adapters[static_cast<size_t>(s.written_back_by)]);
        }
        out += '}';
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
  out += '}';
  if (!record.empty()) {
    out += ",\"record\":";
    out += record;
  }
  out += '}';
  return out;
}

std::string EventSearchJson(const std::vector<EventMatch>& matches,
                            const std::vector<std::string>& adapters, bool more, size_t kept) {
  std::string out = "{\"events\":[";
  for (size_t i = 0; i < matches.size(); ++i) {
    const EventMatch& m = matches[i];
    if (i > 0) out += ",\n";
    out += "{\"event_id\":\"" + m.key.ToHex() + "\"";
    AppendSummary(&out, m.status);
    out += ",\"adapters\":{";
    bool first = true;
    for (size_t a = 0; a < adapters.size() && a < m.status.adapters.size(); ++a) {
      const AdapterStatus& s = m.status.adapters[a];
      if (s.updated_ms == 0) continue;  // not routed there
      if (!first) out += ',';
      first = false;
      AppendJsonString(&out, adapters[a]);
      out += ":{\"state\":\"" + std::string(EventStateName(s.state)) +
             "\",\"attempts\":" + std::to_string(s.attempts) + "}";
    }
    out += "}}";
  }
  out += "],\"next_before\":";
  out += more && !matches.empty() ? std::to_string(matches.back().status.seq) : "null";
  out += ",\"kept\":" + std::to_string(kept) + "}";
  return out;
}

std::string StatsJson(const std::vector<prometheus::MetricFamily>& families, int64_t now_ms) {
  // What the console's overview shows (docs/operations.md, "Console").
  static constexpr std::string_view kSeries[] = {
      "dvrouter_requests_total",
      "dvrouter_journal_bytes",
      "dvrouter_journal_budget_bytes",
      "dvrouter_journal_pending_events",
      "dvrouter_journal_next_sequence",
      "dvrouter_journal_retained_seconds",
      "dvrouter_journal_bytes_held",
      "dvrouter_journal_fsync_seconds",
      "dvrouter_deliveries_total",
      "dvrouter_delivery_retries_total",
      "dvrouter_delivery_breaker_state",
      "dvrouter_dlq_entries",
      "dvrouter_delivery_lag_events",
      "dvrouter_delivery_lag_seconds",
      "dvrouter_ready",
  };
  std::string out = "{\"at\":" + std::to_string(now_ms) + ",\"series\":{";
  bool first_family = true;
  for (const prometheus::MetricFamily& f : families) {
    bool wanted = false;
    for (std::string_view name : kSeries) wanted |= f.name == name;
    if (!wanted) continue;
    if (!first_family) out += ",\n";
    first_family = false;
    AppendJsonString(&out, f.name);
    out += ":[";
    for (size_t i = 0; i < f.metric.size(); ++i) {
      const prometheus::ClientMetric& m = f.metric[i];
      if (i > 0) out += ',';
      out += "{\"labels\":{";
      for (size_t l = 0; l < m.label.size(); ++l) {
        if (l > 0) out += ',';
        AppendJsonString(&out, m.label[l].name);
        out += ':';
        AppendJsonString(&out, m.label[l].value);
      }
      out += "},";
      char number[64];
      switch (f.type) {
        case prometheus::MetricType::Counter:
        case prometheus::MetricType::Gauge: {
          const double v =
              f.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
          if (std::isfinite(v)) {
            std::snprintf(number, sizeof(number), "\"value\":%.17g", v);
          } else {  // JSON has no NaN or Inf
            std::snprintf(number, sizeof(number), "\"value\":null");
          }
          break;
        }
        case prometheus::MetricType::Histogram:
          std::snprintf(number, sizeof(number), "\"count\":%llu,\"sum\":%.17g",
                        static_cast<unsigned long long>(m.histogram.sample_count),
                        std::isfinite(m.histogram.sample_sum) ? m.histogram.sample_sum : 0.0);
          break;
        default:
          std::snprintf(number, sizeof(number), "\"value\":null");
          break;
      }
      out += number;
      out += '}';
    }
    out += ']';
  }
  out += "}}";
  return out;
}

std::string DlqJson(const DeadLetterQueue* dlq, const std::string& adapter,
                    std::optional<uint64_t> id, bool include_replayed, const std::string& reason,
                    int64_t since_ms, size_t limit) {
  std::string out = "[";
  if (dlq) {
    std::vector<DlqEntry> entries = dlq->List(adapter, id, include_replayed);
    std::erase_if(entries, [&](const DlqEntry& e) {
      return !e.reason.starts_with(reason) || e.failed_at_ms < since_ms;
    });
    if (limit > 0 && entries.size() > limit) {
      entries.erase(entries.begin(), entries.end() - static_cast<std::ptrdiff_t>(limit));
    }
    bool first = true;
    for (const DlqEntry& e : entries) {
      if (!first) out += ",\n";
      first = false;
      AppendDlqJson(&out, e);
    }
  }
  out += "]";
  return out;
}

}  // namespace dvrouter
