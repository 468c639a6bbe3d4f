#include "router/common/json.h"

#include <simdjson.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__SSSE3__)
#include <tmmintrin.h>
#endif

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cstring>
#include <utility>
#include <vector>

namespace dvrouter {

namespace {

// How each byte is written in a JSON string literal: 0 as it is, 1 as a backslash and the
// letter kEscapeSecond holds ('"', '\\', and \n \r \t), 2 as \u00XX (the other controls).
constexpr std::array<uint8_t, 256> kEscapeKind = [] {
  std::array<uint8_t, 256> kind{};
  for (int c = 0; c < 0x20; ++c) kind[c] = 2;
  for (unsigned char c : {'"', '\\', '\n', '\r', '\t'}) kind[c] = 1;
  return kind;
}();
constexpr std::array<char, 256> kEscapeSecond = [] {
  std::array<char, 256> second{};
  for (int c = 0; c < 256; ++c) second[c] = static_cast<char>(c);
  second['\n'] = 'n';
  second['\r'] = 'r';
  second['\t'] = 't';
  return second;
}();

#if defined(__SSE2__)
// A bit per byte of `v` that is '"' or '\\', and one per byte that is a control below 0x20.
int QuoteMask(__m128i v) {
  return _mm_movemask_epi8(
      _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
}
int ControlMask(__m128i v) {
  // c <= 0x1f (unsigned) exactly when min(c, 0x1f) == c.
  return _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v));
}
#endif

#if defined(__SSSE3__)
// For each set of bytes among 8 that need a backslash (a bit each), the shuffle that writes the
// 8 bytes with a backslash before each of those: source bytes 0-7 are the text, 8-15 backslashes.
constexpr std::array<std::array<uint8_t, 16>, 256> kInsertBackslashes = [] {
  std::array<std::array<uint8_t, 16>, 256> table{};
  for (int mask = 0; mask < 256; ++mask) {
    size_t j = 0;
    for (uint8_t i = 0; i < 8; ++i) {
      if ((mask >> i) & 1) table[mask][j++] = 8;
      table[mask][j++] = i;
    }
    while (j < 16) table[mask][j++] = 0x80;  // zero, past the written length
  }
  return table;
}();

// Writes the 8 bytes in the low half of `text`, a backslash before each byte `mask` names, at
// *o (16 bytes of room), and moves *o past them.
void Write8(__m128i text, int mask, char** o) {
  const __m128i source = _mm_unpacklo_epi64(text, _mm_set1_epi8('\\'));
  const __m128i shuffle =
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(kInsertBackslashes[mask].data()));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(*o), _mm_shuffle_epi8(source, shuffle));
  *o += 8 + std::popcount(static_cast<unsigned>(mask));
}
#endif

}  // namespace

// Bytes are handled 16 at a time into room reserved ahead: a block without a byte to escape is
// stored whole, a block whose only escapes are quotes and backslashes is written with two
// shuffles (kInsertBackslashes), any other block byte by byte. The ClickHouse row escapes a whole
// JSON document this way (its attributes column), where a quote comes every few bytes, so this
// is on the delivery hot path (bench/README.md, "JSON string escaping").
void AppendJsonString(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  // Room for the widest block (16 bytes, each a \u00XX escape) and the closing quote.
  constexpr size_t kBlockRoom = 16 * 6 + 1;
  const size_t start = out->size();
  // Plain text plus an escape in one byte of eight, as JSON text has, grown if that is short.
  out->resize(start + 1 + s.size() + s.size() / 8 + kBlockRoom);
  char* o = out->data() + start;
  char* limit = out->data() + out->size() - kBlockRoom;
  *o++ = '"';
  const char* p = s.data();
  const char* const end = p + s.size();
  while (p < end) {
    if (o > limit) {
      const size_t used = static_cast<size_t>(o - out->data());
      out->resize(out->size() + static_cast<size_t>(end - p) * 2 + kBlockRoom);
      o = out->data() + used;
      limit = out->data() + out->size() - kBlockRoom;
    }
    const size_t n = std::min<size_t>(16, static_cast<size_t>(end - p));
#if defined(__SSE2__)
    if (n == 16) {
      const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      const int quotes = QuoteMask(v);
      const int controls = ControlMask(v);
      if ((quotes | controls) == 0) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o), v);
        o += 16;
        p += 16;
        continue;
      }
#if defined(__SSSE3__)
      if (controls == 0) {  // only quotes and backslashes: each 8 bytes in one shuffle
        Write8(v, quotes & 0xff, &o);
        Write8(_mm_srli_si128(v, 8), quotes >> 8, &o);
        p += 16;
        continue;
      }
#endif
    }
#endif
    for (size_t i = 0; i < n; ++i) {
      const auto c = static_cast<unsigned char>(p[i]);
      const uint8_t kind = kEscapeKind[c];
      if (kind <= 1) {
        // Plain: the byte itself (written twice, the pointer moves one); a short escape:
        // the backslash, then its letter.
        o[0] = kind != 0 ? '\\' : static_cast<char>(c);
        o[1] = kEscapeSecond[c];
        o += 1 + kind;
      } else {
        const char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xf]};
        std::memcpy(o, esc, 6);
        o += 6;
      }
    }
    p += n;
  }
  *o++ = '"';
  out->resize(static_cast<size_t>(o - out->data()));
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
