// The one table of adapter types: each type's name, its settings parser (adapters/<type>/
// <type>_config.h) and its constructor. Adding an adapter type means one line here. Also the
// configuration entry points bound to this table.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "adapters/adapter.h"
#include "router/common/status.h"
#include "router/config/config.h"

namespace prometheus {
class Registry;
}

namespace dvrouter {

struct AdapterContext {
  prometheus::Registry* registry = nullptr;  // adapters register their own metrics here
};

using AdapterFactory = Result<std::unique_ptr<Adapter>> (*)(const AdapterConfig&,
                                                            const AdapterContext&);

struct AdapterType {
  const AdapterKind* kind;  // name, settings parser, batch defaults
  AdapterFactory make;
};

std::span<const AdapterType> AdapterTypes();
// The parser's view of the same table.
AdapterKinds BuiltinAdapterKinds();
// NotFound for a type the table does not know.
Result<std::unique_ptr<Adapter>> MakeAdapter(const AdapterConfig& config,
                                             const AdapterContext& context);

// router/config's parser with the built-in adapter types.
Result<Config> ParseConfig(std::string_view yaml, const std::string& base_dir = ".");
Result<Config> LoadConfigFile(const std::string& path);
std::string ConfigReference();

}  // namespace dvrouter
