// Small JSON text helpers shared by the components that write JSON by hand (error bodies, lake
// rows, converted attributes). Pure functions: any thread.
#pragma once

#include <charconv>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "router/common/status.h"

namespace dvrouter {

// Appends `s` as a JSON string literal, quotes included; control characters are escaped.
void AppendJsonString(std::string* out, std::string_view s);

// Appends the decimal digits of an integer (a JSON number): no temporary string.
template <std::integral T>
void AppendDecimal(std::string* out, T value) {
  char text[24];
  const auto end = std::to_chars(text, text + sizeof(text), value).ptr;
  out->append(text, static_cast<size_t>(end - text));
}

// `s` cut to at most `max_bytes`, as valid UTF-8: a character split by the cut and any invalid
// byte become '?'. For excerpts of foreign text (answers, errors) that end up in JSON.
std::string Utf8Excerpt(std::string_view s, size_t max_bytes = SIZE_MAX);

// The members of a JSON object, in order, each value as its exact JSON text (numbers keep their
// digits: 100.00 stays 100.00). InvalidArgument, prefixed with `what`, if it is not an object.
Status JsonObjectMembers(std::string_view json, const char* what,
                         std::vector<std::pair<std::string, std::string>>* out);

}  // namespace dvrouter
