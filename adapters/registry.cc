#include "adapters/registry.h"

#include "adapters/clickhouse/clickhouse_adapter.h"
#include "adapters/clickhouse/clickhouse_config.h"
#include "adapters/dataverse/dataverse_adapter.h"
#include "adapters/dataverse/dataverse_config.h"
#include "adapters/erp/erp_adapter.h"
#include "adapters/erp/erp_config.h"
#include "adapters/lake/lake_adapter.h"
#include "adapters/lake/lake_config.h"
#include "adapters/sql/postgres_adapter.h"
#include "adapters/sql/sql_config.h"
#include "adapters/sql/sqlite_adapter.h"

namespace dvrouter {

namespace {

template <class A>
Result<std::unique_ptr<Adapter>> Make(const AdapterConfig& c, const AdapterContext& ctx) {
  return std::unique_ptr<Adapter>(new A(c, ctx.registry));
}

const AdapterType kTypes[] = {
    {&kLakeKind, &Make<LakeAdapter>},     {&kPostgresKind, &Make<PostgresAdapter>},
    {&kSqliteKind, &Make<SqliteAdapter>}, {&kClickHouseKind, &Make<ClickHouseAdapter>},
    {&kErpKind, &Make<ErpAdapter>},       {&kDataverseKind, &Make<DataverseAdapter>},
};

const AdapterKind* const kKinds[] = {kTypes[0].kind, kTypes[1].kind, kTypes[2].kind,
                                     kTypes[3].kind, kTypes[4].kind, kTypes[5].kind};
static_assert(std::size(kKinds) == std::size(kTypes));

}  // namespace

std::span<const AdapterType> AdapterTypes() { return kTypes; }

AdapterKinds BuiltinAdapterKinds() { return kKinds; }

Result<std::unique_ptr<Adapter>> MakeAdapter(const AdapterConfig& config,
                                             const AdapterContext& context) {
  for (const AdapterType& t : kTypes) {
    if (t.kind->type == config.type) return t.make(config, context);
  }
  return NotFound("adapters." + config.name + ": unknown adapter type '" + config.type + "'");
}

Result<Config> ParseConfig(std::string_view yaml, const std::string& base_dir) {
  return ParseConfig(yaml, base_dir, kKinds);
}

Result<Config> LoadConfigFile(const std::string& path) { return LoadConfigFile(path, kKinds); }

std::string ConfigReference() { return ConfigReference(kKinds); }

}  // namespace dvrouter
