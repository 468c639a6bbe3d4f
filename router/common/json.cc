#include "router/common/json.h"

#include <simdjson.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <cctype>
#include <utility>
#include <vector>

namespace dvrouter {

namespace {

// Bytes a JSON string literal cannot hold as they are: '"', '\\' and the controls below 0x20.
constexpr bool NeedsEscape(unsigned char c) { return c < 0x20 || c == '"' || c == '\\'; }

// Where the next byte that needs escaping is in [p, end), or end.
const char* NextEscape(const char* p, const char* end) {
#if defined(__SSE2__)
  const __m128i quote = _mm_set1_epi8('"');
  const __m128i backslash = _mm_set1_epi8('\\');
  const __m128i control_max = _mm_set1_epi8(0x1f);
  for (; end - p >= 16; p += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    // c <= 0x1f (unsigned) exactly when min(c, 0x1f) == c.
    const __m128i hit =
        _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                     _mm_cmpeq_epi8(_mm_min_epu8(v, control_max), v));
    if (const int mask = _mm_movemask_epi8(hit); mask != 0)
      return p + __builtin_ctz(static_cast<unsigned>(mask));
  }
#endif
  while (p < end && !NeedsEscape(static_cast<unsigned char>(*p))) ++p;
  return p;
}

}  // namespace

// Runs of plain bytes are found 16 at a time and appended whole; only the bytes that need an
// escape are handled one by one. The ClickHouse row escapes a whole JSON document this way (its
// attributes column), so this is on the delivery hot path.
void AppendJsonString(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->reserve(out->size() + s.size() + s.size() / 8 + 2);
  out->push_back('"');
  const char* p = s.data();
  const char* const end = p + s.size();
  while (p < end) {
    const char* run_end = NextEscape(p, end);
    out->append(p, static_cast<size_t>(run_end - p));
    if (run_end == end) break;
    const char c = *run_end;
    p = run_end + 1;
    switch (c) {
      case '"':
        out->append("\\\"", 2);
        break;
      case '\\':
        out->append("\\\\", 2);
        break;
      case '\n':
        out->append("\\n", 2);
        break;
      case '\r':
        out->append("\\r", 2);
        break;
      case '\t':
        out->append("\\t", 2);
        break;
      default: {
        const char esc[6] = {'\\', 'u', '0', '0', kHex[(c >> 4) & 0xf], kHex[c & 0xf]};
        out->append(esc, 6);
      }
    }
  }
  out->push_back('"');
}

// The members of a JSON object, in order, each value as its exact JSON text (numbers keep
// their digits: 100.00 stays 100.00).
Status JsonObjectMembers(std::string_view json, const char* what,
                         std::vector<std::pair<std::string, std::string>>* out) {
  thread_local simdjson::ondemand::parser parser;
  const simdjson::padded_string padded(json);
  simdjson::ondemand::document doc;
  simdjson::ondemand::object obj;
  auto fail = [&](simdjson::error_code e) {
    return InvalidArgument(std::string(what) + ": " + simdjson::error_message(e));
  };
  if (auto e = parser.iterate(padded).get(doc)) return fail(e);
  if (auto e = doc.get_object().get(obj)) return fail(e);
  for (auto field : obj) {
    std::string_view key, raw;
    if (auto e = field.unescaped_key().get(key)) return fail(e);
    simdjson::ondemand::value v;
    if (auto e = field.value().get(v)) return fail(e);
    simdjson::ondemand::json_type type;
    if (auto e = v.type().get(type)) return fail(e);
    simdjson::error_code e = simdjson::SUCCESS;
    if (type == simdjson::ondemand::json_type::object) {
      simdjson::ondemand::object o;
      e = v.get_object().get(o);
      if (!e) e = o.raw_json().get(raw);
    } else if (type == simdjson::ondemand::json_type::array) {
      simdjson::ondemand::array a;
      e = v.get_array().get(a);
      if (!e) e = a.raw_json().get(raw);
    } else {
      raw = v.raw_json_token();
    }
    if (e) return fail(e);
    while (!raw.empty() && std::isspace(static_cast<unsigned char>(raw.back()))) {
      raw.remove_suffix(1);
    }
    out->emplace_back(std::string(key), std::string(raw));
  }
  return Status::Ok();
}

std::string Utf8Excerpt(std::string_view s, size_t max_bytes) {
  if (s.size() > max_bytes) s = s.substr(0, max_bytes);
  if (simdjson::validate_utf8(s.data(), s.size())) return std::string(s);
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n > 0 && i + n <= s.size() && simdjson::validate_utf8(s.data() + i, n)) {
      out.append(s.data() + i, n);
      i += n;
    } else {
      out += '?';
      ++i;
    }
  }
  return out;
}

}  // namespace dvrouter
