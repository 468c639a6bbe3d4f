#include "adapters/registry.h"

#include "adapters/lake/lake_adapter.h"

namespace dvrouter {

namespace {

Result<std::unique_ptr<Adapter>> MakeLake(const AdapterConfig& c, const AdapterContext& ctx) {
  return std::unique_ptr<Adapter>(new LakeAdapter(c, ctx.registry));
}

constexpr AdapterType kTypes[] = {
    {"lake", &MakeLake},
};

}  // namespace

std::span<const AdapterType> AdapterTypes() { return kTypes; }

Result<std::unique_ptr<Adapter>> MakeAdapter(const AdapterConfig& config,
                                             const AdapterContext& context) {
  for (const AdapterType& t : kTypes) {
    if (t.name == config.type) return t.make(config, context);
  }
  return NotFound("adapters." + config.name + ": unknown adapter type '" + config.type + "'");
}

}  // namespace dvrouter
