// StatusRecord: the body of a status record (EventHeader::status_record), one status change of a
// source adapter's event, journaled for the write-back adapters that report that source
// (docs/architecture.md, "Status write-back"). One encoder, used by StatusRecords when it emits,
// and one decoder, used by the engine to route the record and by the write-back to build its
// PATCH. Pure functions: any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "router/common/status.h"

namespace dvrouter {

struct StatusRecord {
  std::string event_id;  // the source event's id (32 hex digits)
  uint64_t seq = 0;      // the source event's journal position
  std::string adapter;   // the source adapter: the record goes to its write-back adapters
  std::string state;     // pending, submitted, processing, completed, failed
  uint32_t attempts = 0;
  std::string table;   // the CRM row the status belongs to
  std::string row_id;  // its id (a GUID)
  std::string error;   // empty: none
  // The adapter's captured answer: a JSON object's text (embedded as an object), or any other
  // text (stored as a string); empty: none.
  std::string answer;
  // Increasing across events, attempts, replays and restarts: a write-back drops a status older
  // than the one a row already shows.
  uint64_t order = 0;
  std::string at;  // when it was recorded, ISO 8601 UTC
};

// JSON; the error is cut to a valid UTF-8 excerpt of at most 4000 bytes.
std::string EncodeStatusRecord(const StatusRecord& record);
// InvalidArgument for a body that is not a status record (not JSON, or without a state).
Result<StatusRecord> DecodeStatusRecord(std::string_view body);

}  // namespace dvrouter
