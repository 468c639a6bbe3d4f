#include "router/decode/event.h"

#include <cctype>

#define XXH_STATIC_LINKING_ONLY  // XXH3 state on the stack
#include <xxhash.h>

namespace dvrouter {

std::string EventKey::ToHex() const {
  std::string out;
  AppendHex(&out);
  return out;
}

void EventKey::AppendHex(std::string* out) const {
  static constexpr char kDigits[] = "0123456789abcdef";
  char text[32];
  for (int i = 0; i < 16; ++i) {
    text[i] = kDigits[(hi >> (60 - 4 * i)) & 0xf];
    text[16 + i] = kDigits[(lo >> (60 - 4 * i)) & 0xf];
  }
  out->append(text, sizeof(text));
}

void EventHeader::Clear() {
  message_name.clear();
  primary_entity_name.clear();
  primary_entity_id.clear();
  stage = mode = depth = 0;
  correlation_id.clear();
  operation_id.clear();
  request_id.clear();
  owning_extension_id.clear();
  initiating_user_id.clear();
  operation_created_on_ms = 0;
  organization_name.clear();
  organization_host.clear();
  header_entity_name.clear();
  header_request_name.clear();
  http_request_id.clear();
  correlation_request_id.clear();
  size_exceeded = false;
  status_record = false;
  target_offset = target_length = 0;
}

EventKey EventHeader::DedupeKey() const {
  // Fields are separated by a byte that cannot occur in any of them, so no two different
  // tuples hash the same input.
  XXH3_state_t state;
  XXH3_INITSTATE(&state);  // a stack state must be initialized: reset_withSeed reads its old seed
  XXH3_128bits_reset(&state);
  // An all-zero OperationId carries no identity: fall back to RequestId as for a missing one.
  static constexpr std::string_view kNilGuid = "00000000-0000-0000-0000-000000000000";
  const std::string& op =
      operation_id.empty() || operation_id == kNilGuid ? request_id : operation_id;
  for (const std::string* part : {&owning_extension_id, &op, &message_name, &primary_entity_id}) {
    XXH3_128bits_update(&state, part->data(), part->size());
    XXH3_128bits_update(&state, "\x1f", 1);
  }
  XXH128_hash_t h = XXH3_128bits_digest(&state);
  return EventKey{h.high64, h.low64};
}

bool IsGuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

bool IsLogicalName(std::string_view s) {
  if (s.empty() || s.size() > kMaxLogicalNameBytes || s[0] < 'a' || s[0] > 'z') return false;
  for (char c : s) {
    if ((c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_') return false;
  }
  return true;
}

}  // namespace dvrouter
