// EventHeader: what dvrouter reads out of one Dataverse webhook notification.
//
// It is filled once at the ingress (decode.h) and serialized into the journal record beside the
// raw body, so nothing downstream parses the body again to route it. Strings are owned; an
// EventHeader is reused by its I/O session across requests so its buffers stop growing after the
// first few events. A plain value type: not thread-safe, move it between threads.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace dvrouter {

// 128-bit digest of the dedupe key (docs/architecture.md, "Event identity").
struct EventKey {
  uint64_t hi = 0;
  uint64_t lo = 0;
  friend bool operator==(const EventKey&, const EventKey&) = default;
  // 32 lowercase hex digits: the event id shown to operators and sent as idempotency key.
  std::string ToHex() const;
  // The same 32 digits appended to *out (row encoders on the delivery path).
  void AppendHex(std::string* out) const;
};

// Is `s` a GUID in its 36-character form (hex digits and dashes)?
bool IsGuid(std::string_view s);

// Is `s` a Dataverse logical name, ^[a-z][a-z0-9_]{0,127}$ ("none" included)? Table names come
// from webhook bodies and end up in file paths and URLs: nothing else is let through.
inline constexpr size_t kMaxLogicalNameBytes = 128;
bool IsLogicalName(std::string_view s);

// MessageName of status records (EventHeader::status_record).
inline constexpr std::string_view kStatusMessage = "dvrouter.Status";

struct EventHeader {
  // From the body (RemoteExecutionContext). GUIDs are canonical: lowercase, 36 characters.
  std::string message_name;             // MessageName: Create, Update, Delete, custom actions...
  std::string primary_entity_name;      // PrimaryEntityName: table logical name, "none" if unbound
  std::string primary_entity_id;        // PrimaryEntityId
  int32_t stage = 0;                    // Stage: 10, 20, 40
  int32_t mode = 0;                     // Mode: 0 sync, 1 async
  int32_t depth = 0;                    // Depth
  std::string correlation_id;           // CorrelationId
  std::string operation_id;             // OperationId (may be empty)
  std::string request_id;               // RequestId (null in async steps: empty)
  std::string owning_extension_id;      // OwningExtension.Id: the sdkmessageprocessingstep
  std::string initiating_user_id;       // InitiatingUserId
  int64_t operation_created_on_ms = 0;  // OperationCreatedOn, ms since the Unix epoch (UTC)
  std::string organization_name;        // OrganizationName

  // From the HTTP request headers Dataverse sets.
  std::string organization_host;       // x-ms-dynamics-organization
  std::string header_entity_name;      // x-ms-dynamics-entity-name
  std::string header_request_name;     // x-ms-dynamics-request-name
  std::string http_request_id;         // x-request-id
  std::string correlation_request_id;  // x-ms-correlation-request-id
  bool size_exceeded = false;          // x-ms-dynamics-msg-size-exceeded present: context stripped
  // Not from Dataverse: a status record the delivery engine journals for write-back adapters
  // (message kStatusMessage, OwningExtension.Id the source adapter's name, body the status as
  // JSON; engine.h). The ingress never sets it, so no webhook can pose as one.
  bool status_record = false;
  // Not from Dataverse: where the value the attribute extractor converts (InputParameters'
  // Target, router/decode/attributes.h) lies in the body, [target_offset, target_offset +
  // target_length), as the decoder found it; length 0: not known. Kept in memory only (the
  // journal's read tail carries it to delivery; frames do not, so a record read back from a
  // segment has none and its body is parsed whole).
  uint32_t target_offset = 0;
  uint32_t target_length = 0;

  void Clear();

  // OwningExtension.Id + (OperationId, else RequestId) + MessageName + PrimaryEntityId, hashed.
  EventKey DedupeKey() const;
};

}  // namespace dvrouter
