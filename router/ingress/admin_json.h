// The admin listener's JSON views of delivery state: one event's status per adapter
// (GET /events/<id>) and DLQ listings (GET /dlq). Rendering only: the data comes from the
// delivery engine's status table and DLQ, read through their own locks.
//
// Threads: any thread (the admin listener's, the CLI's, tests').
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "router/common/status.h"
#include "router/decode/event.h"
#include "router/delivery/dlq.h"
#include "router/delivery/status_table.h"

namespace dvrouter {

// An event id as the API shows it: 32 hexadecimal digits (either case).
bool ParseEventId(std::string_view text, EventKey* key);

// One DLQ entry as a JSON object, appended to *out.
void AppendDlqJson(std::string* out, const DlqEntry& e);

// JSON: the event's seq and, per adapter (by index, named by `adapters`), state, attempts, last
// error, answer and DLQ entry. NotFound when the event is neither in `status` nor in `dlq` (which
// may be null: not started).
Result<std::string> EventStatusJson(const std::string& event_id, const StatusTable& status,
                                    const DeadLetterQueue* dlq,
                                    const std::vector<std::string>& adapters);

// JSON array of DLQ entries, optionally one adapter's, optionally one id, with replayed ones.
// "[]" when `dlq` is null.
std::string DlqJson(const DeadLetterQueue* dlq, const std::string& adapter,
                    std::optional<uint64_t> id, bool include_replayed);

}  // namespace dvrouter
