// Text encodings shared by the router, the adapters and the CLI: percent-encoding of query
// parameters and base64 (DLQ records in JSON lines, HTTP Basic credentials).
//
// Threads: pure functions, any thread.
#pragma once

#include <string>
#include <string_view>

namespace dvrouter {

// Percent-encodes everything but unreserved characters (RFC 3986: A-Z a-z 0-9 - _ . ~), for
// query parameters and path segments.
std::string UrlEncode(std::string_view s);

// Standard base64 (RFC 4648, '+' '/', '=' padding).
std::string Base64Encode(std::string_view data);
// False on anything but canonical padded base64 (length a multiple of 4, padding only at the
// end); *out is then unspecified.
bool Base64Decode(std::string_view text, std::string* out);

}  // namespace dvrouter
