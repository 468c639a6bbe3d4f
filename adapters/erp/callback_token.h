// The per-event callback token of the ERP adapter: HMAC-SHA256(callback secret,
// "<adapter>/<event id>") in lowercase hex. The adapter sends it in each call's X-Callback-Url
// (`?token=<hex>`) and accepts a callback that carries its event's token, so one leaked callback
// URL confirms that event only (docs/adapters/erp.md, "Callbacks"). Pure functions, any thread.
#pragma once

#include <string>
#include <string_view>

namespace dvrouter {

// 64 hex characters.
std::string CallbackToken(std::string_view secret, std::string_view adapter,
                          std::string_view event_id);

// HMAC-SHA256(key, data) as lowercase hex (the token's primitive; tested on RFC 4231's vectors).
std::string HmacSha256Hex(std::string_view key, std::string_view data);

}  // namespace dvrouter
