#include "adapters/registry.h"

#include "adapters/clickhouse/clickhouse_adapter.h"
#include "adapters/dataverse/dataverse_adapter.h"
#include "adapters/erp/erp_adapter.h"
#include "adapters/lake/lake_adapter.h"
#include "adapters/sql/postgres_adapter.h"
#include "adapters/sql/sqlite_adapter.h"

namespace dvrouter {

namespace {

Result<std::unique_ptr<Adapter>> MakeLake(const AdapterConfig& c, const AdapterContext& ctx) {
  return std::unique_ptr<Adapter>(new LakeAdapter(c, ctx.registry));
}

Result<std::unique_ptr<Adapter>> MakePostgres(const AdapterConfig& c, const AdapterContext& ctx) {
  return std::unique_ptr<Adapter>(new PostgresAdapter(c, ctx.registry));
}

Result<std::unique_ptr<Adapter>> MakeSqlite(const AdapterConfig& c, const AdapterContext& ctx) {
  return std::unique_ptr<Adapter>(new SqliteAdapter(c, ctx.registry));
}

Result<std::unique_ptr<Adapter>> MakeClickHouse(const AdapterConfig& c, const AdapterContext& ctx) {
  return std::unique_ptr<Adapter>(new ClickHouseAdapter(c, ctx.registry));
}

Result<std::unique_ptr<Adapter>> MakeErp(const AdapterConfig& c, const AdapterContext& ctx) {
  return std::unique_ptr<Adapter>(new ErpAdapter(c, ctx.registry));
}

Result<std::unique_ptr<Adapter>> MakeDataverse(const AdapterConfig& c, const AdapterContext& ctx) {
  return std::unique_ptr<Adapter>(new DataverseAdapter(c, ctx.registry));
}

constexpr AdapterType kTypes[] = {
    {"lake", &MakeLake},     {"postgres", &MakePostgres},
    {"sqlite", &MakeSqlite}, {"clickhouse", &MakeClickHouse},
    {"erp", &MakeErp},       {"dataverse", &MakeDataverse},
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
