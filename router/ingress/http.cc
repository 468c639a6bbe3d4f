#include "router/ingress/http.h"

#include "router/common/json.h"

namespace dvrouter {

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool PercentDecode(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      out->push_back(' ');
    } else if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out->push_back(c);
    }
  }
  return true;
}

}  // namespace

std::string_view TargetPath(std::string_view target) {
  size_t q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

bool QueryParameter(std::string_view target, std::string_view name, std::string* value) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return false;
  std::string_view query = target.substr(q + 1);
  std::string key;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string_view raw_key = pair.substr(0, eq);
    std::string_view raw_value = eq == std::string_view::npos ? "" : pair.substr(eq + 1);
    if (!PercentDecode(raw_key, &key) || key != name) continue;
    return PercentDecode(raw_value, value);
  }
  return false;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Walk the expected secret's full length whatever the input, so timing reveals nothing about
  // how many leading bytes matched.
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    unsigned char bc = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(static_cast<unsigned char>(a[i]) ^ bc);
  }
  return diff == 0;
}

HttpResponse ErrorResponse(int status, std::string_view error, std::string_view message) {
  HttpResponse r;
  r.status = status;
  r.body = "{\"error\":";
  AppendJsonString(&r.body, error);
  r.body += ",\"message\":";
  AppendJsonString(&r.body, message);
  r.body += "}";
  return r;
}

HttpResponse ErrorResponse(const Status& st) {
  switch (st.code()) {
    case StatusCode::kNotFound:
      return ErrorResponse(404, "not_found", st.message());
    case StatusCode::kInvalidArgument:
      return ErrorResponse(400, "bad_request", st.message());
    case StatusCode::kUnavailable:
      return ErrorResponse(503, "unavailable", st.message());
    case StatusCode::kPermissionDenied:
      return ErrorResponse(401, "unauthorized", st.message());
    case StatusCode::kFailedPrecondition:
      return ErrorResponse(409, "conflict", st.message());
    default:
      return ErrorResponse(500, "internal", st.message());
  }
}

}  // namespace dvrouter
