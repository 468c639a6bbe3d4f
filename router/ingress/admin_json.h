// The admin listener's JSON views of delivery state: one event's status per adapter with its
// timeline and record (GET /events/<id>), the event search (GET /events), DLQ listings
// (GET /dlq) and the console's numbers (GET /stats). docs/operations.md, "Admin API", shows
// each shape. Rendering only: the data comes from the delivery engine's status table, DLQ and
// journal, and from the metrics registry, read through their own locks.
//
// Threads: any thread (the admin listener's, the CLI's, tests').
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <prometheus/metric_family.h>

#include "router/common/status.h"
#include "router/decode/event.h"
#include "router/delivery/dlq.h"
#include "router/delivery/status_table.h"

namespace dvrouter {

// An event id as the API shows it: 32 hexadecimal digits (either case).
bool ParseEventId(std::string_view text, EventKey* key);

// One DLQ entry as a JSON object, appended to *out.
void AppendDlqJson(std::string* out, const DlqEntry& e);

// JSON: the event's seq, table, row, message and arrival and, per adapter (by index, named by
// `adapters`), state, attempts, last error, answer, timeline, write-back and DLQ entry;
// `record` (when not empty) is embedded as the "record" member. NotFound when the event is
// neither in `status` nor in `dlq` (which may be null: not started).
Result<std::string> EventStatusJson(const EventKey& key, const std::optional<EventStatus>& status,
                                    const DeadLetterQueue* dlq,
                                    const std::vector<std::string>& adapters,
                                    std::string_view record = {});

// The "record" member of GET /events/<id>?record=1: the header fields and the body as received.
std::string EventRecordJson(const EventHeader& header, std::string_view body);

// GET /events: {"events":[...], "next_before": seq|null, "kept": N}; an event as its id, seq,
// table, row, message, arrival and per adapter its state and attempts. `more`: a next page may
// hold more (the page is full).
std::string EventSearchJson(const std::vector<EventMatch>& matches,
                            const std::vector<std::string>& adapters, bool more, size_t kept);

// GET /stats: the console's series (requests, journal, per adapter delivery) of the metrics
// registry as JSON: {"at": ms, "series": {name: [{"labels": {...}, "value": v}]}}; histograms
// give "count" and "sum".
std::string StatsJson(const std::vector<prometheus::MetricFamily>& families, int64_t now_ms);

// JSON array of DLQ entries, optionally one adapter's, optionally one id, with replayed ones.
// "[]" when `dlq` is null.
// `reason` (a prefix of the entry's reason), `since_ms` (failed at or after) and `limit` (the
// newest that many) narrow it further; "" / 0 / 0: no narrowing.
std::string DlqJson(const DeadLetterQueue* dlq, const std::string& adapter,
                    std::optional<uint64_t> id, bool include_replayed,
                    const std::string& reason = "", int64_t since_ms = 0, size_t limit = 0);

}  // namespace dvrouter
