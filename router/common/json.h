// Small JSON text helpers shared by the components that write JSON by hand (error bodies, lake
// rows, converted attributes). Pure functions: any thread.
#pragma once

#include <string>
#include <string_view>

namespace dvrouter {

// Appends `s` as a JSON string literal, quotes included; control characters are escaped.
void AppendJsonString(std::string* out, std::string_view s);

}  // namespace dvrouter
