// What differs between two real webhook bodies of one kind: every GUID and every long run of
// digits (timestamps, ticks). BodyVariation finds them in a body once and writes fresh values per
// event, so that load and benchmarks compress what real traffic would, not one body's copies.
// Pure; any thread (the positions are read only after Find).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace dvrouter::bench {

inline uint64_t Mix(uint64_t x) {  // splitmix64: a cheap, good-enough deterministic hash
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

inline void WriteHex(uint64_t v, int digits, char* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i, v >>= 4) out[i] = kHex[v & 0xf];
}

inline bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Whether text[at, at + 36) is a GUID (8-4-4-4-12 hex digits).
inline bool GuidAt(const std::string& text, size_t at) {
  if (at + 36 > text.size()) return false;
  for (size_t i = 0; i < 36; ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? text[at + i] != '-' : !IsHex(text[at + i])) return false;
  }
  return true;
}

struct BodyVariation {
  std::vector<size_t> guid_at;                       // GUIDs (36 characters)
  std::vector<std::pair<size_t, size_t>> digits_at;  // runs of 10 or more digits: position, length

  // The GUIDs and digit runs of `body`, except the GUIDs at `keep` and the zero GUID.
  static BodyVariation Find(const std::string& body, const std::vector<size_t>& keep = {}) {
    BodyVariation v;
    for (size_t at = 0; at < body.size();) {
      if ((at == 0 || !IsHex(body[at - 1])) && GuidAt(body, at)) {
        if (std::find(keep.begin(), keep.end(), at) == keep.end() &&
            body.compare(at, 36, "00000000-0000-0000-0000-000000000000") != 0) {
          v.guid_at.push_back(at);
        }
        at += 36;
        continue;
      }
      if (body[at] >= '0' && body[at] <= '9' && (at == 0 || !IsHex(body[at - 1]))) {
        size_t end = at;
        while (end < body.size() && body[end] >= '0' && body[end] <= '9') ++end;
        if (end - at >= 10 && (end == body.size() || !IsHex(body[end]))) {
          v.digits_at.emplace_back(at, end - at);
        }
        at = end;
        continue;
      }
      ++at;
    }
    return v;
  }

  // Fresh values for `seed` into *body (a copy of the body Find read): random hex GUIDs, and the
  // last 9 digits of each run (a timestamp stays a plausible one).
  void Apply(uint64_t seed, std::string* body) const {
    uint64_t h = Mix(seed);
    for (size_t at : guid_at) {
      const uint64_t hi = Mix(h), lo = Mix(hi);
      h = lo;
      char* out = body->data() + at;
      WriteHex(hi >> 32, 8, out);
      WriteHex((hi >> 16) & 0xffff, 4, out + 9);
      WriteHex(hi & 0xffff, 4, out + 14);
      WriteHex(lo >> 48, 4, out + 19);
      WriteHex(lo & 0xffffffffffffull, 12, out + 24);
    }
    for (const auto& [at, len] : digits_at) {
      h = Mix(h);
      uint64_t v = h;
      for (size_t i = 0; i < std::min<size_t>(len, 9); ++i, v /= 10) {
        (*body)[at + len - 1 - i] = static_cast<char>('0' + v % 10);
      }
    }
  }
};

}  // namespace dvrouter::bench
