// The operator console's files (router/ui/assets), embedded in the binary at build time by
// router/ui/embed.cmake and served by the admin listener under /ui/ (docs/operations.md,
// "Console"). Read-only after first use: any thread.
#pragma once

#include <string_view>
#include <vector>

namespace dvrouter {

struct ConsoleAsset {
  std::string_view name;  // file name, e.g. "console.js"
  std::string_view content;
};

const std::vector<ConsoleAsset>& ConsoleAssets();

}  // namespace dvrouter
