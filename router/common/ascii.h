// ASCII case folding for names that are ASCII by definition (Dataverse messages and logical names,
// HTTP header names, SQL keywords). Pure functions: any thread.
#pragma once

#include <string_view>

namespace dvrouter {

inline char AsciiLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

// Equal but for the case of ASCII letters.
inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (AsciiLower(a[i]) != AsciiLower(b[i])) return false;
  }
  return true;
}

}  // namespace dvrouter
