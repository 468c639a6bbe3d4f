// The explicit factory table: adapter type name -> constructor. Adding an adapter type means one
// line here and its key section in router/config (where each type's settings are parsed).
#pragma once

#include <memory>
#include <span>
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
  std::string_view name;
  AdapterFactory make;
};

std::span<const AdapterType> AdapterTypes();
// NotFound for a type the table does not know.
Result<std::unique_ptr<Adapter>> MakeAdapter(const AdapterConfig& config,
                                             const AdapterContext& context);

}  // namespace dvrouter
