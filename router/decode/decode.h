// Decoder: extracts the EventHeader from a Dataverse webhook body with simdjson On-Demand.
//
// One Decoder per I/O thread (it owns a simdjson parser and its buffers; never share one between
// threads). The body is read in place when the caller's buffer has kPadding spare bytes of
// capacity after the data (the ingress reserves them), otherwise it is copied once into the
// decoder's own padded buffer. Only the header fields are read: the rest of the body is checked
// as JSON, never materialized, and the place of InputParameters' Target is noted for delivery
// (EventHeader::target_*). Errors never throw: they come back as InvalidArgument naming the
// field.
// PrimaryEntityName and SecondaryEntityName (when present and not null) must be logical names
// (IsLogicalName, event.h): table names reach file paths and URLs downstream.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

#include "router/common/status.h"
#include "router/decode/event.h"

namespace dvrouter {

// Headers Dataverse sets on the POST; empty string_view when absent.
struct WebhookHttpHeaders {
  std::string_view organization;            // x-ms-dynamics-organization
  std::string_view entity_name;             // x-ms-dynamics-entity-name
  std::string_view request_name;            // x-ms-dynamics-request-name
  std::string_view request_id;              // x-request-id
  std::string_view correlation_request_id;  // x-ms-correlation-request-id
  bool size_exceeded = false;               // x-ms-dynamics-msg-size-exceeded present
};

class Decoder {
 public:
  // simdjson's required padding, checked against SIMDJSON_PADDING in decode.cc.
  static constexpr size_t kPadding = 64;

  // max_body_bytes caps the parser's capacity; larger bodies are refused.
  explicit Decoder(size_t max_body_bytes);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Decodes `len` bytes at `data`; `capacity` is how many bytes from `data` may be read (at
  // least len; len + kPadding avoids a copy). Clears *out first.
  Status Decode(const char* data, size_t len, size_t capacity, EventHeader* out);

  // How many bodies had to be copied because their buffer lacked padding.
  size_t copies() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

void ApplyHttpHeaders(const WebhookHttpHeaders& headers, EventHeader* out);

// "/Date(1506409448000-0700)/" (slashes escaped or not) or ISO-8601 to ms since the epoch (UTC).
// The /Date()/ offset is informational: the number is already UTC.
Result<int64_t> ParseDataverseDate(std::string_view text);

// Accepts 36-character GUIDs in any case and writes them lowercase; leaves *out as it was when
// it refuses.
bool CanonicalGuid(std::string_view in, std::string* out);

}  // namespace dvrouter
