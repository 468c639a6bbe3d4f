// deploy/ must not drift from the code: every metric its dashboards, alerts and docs name exists.
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <set>

#include "adapters/clickhouse/clickhouse_adapter.h"
#include "adapters/dataverse/dataverse_adapter.h"
#include "adapters/erp/erp_adapter.h"
#include "adapters/lake/lake_adapter.h"
#include "adapters/sql/sqlite_adapter.h"
#include "router/delivery/engine.h"
#include "router/metrics/metrics.h"
#include "tests/support/test_util.h"

namespace dvrouter {
namespace {

TEST(Deploy, EveryMetricNamedInDeployExists) {
  // The router's series plus those the delivery engine and the adapters register.
  RouterMetrics metrics;
  AdapterConfig lake_config;
  lake_config.name = "lake";
  lake_config.type = "lake";
  LakeAdapter lake(lake_config, &metrics.registry());
  // The other adapters' series (registered by their constructors; nothing is started).
  AdapterConfig sql_config;
  sql_config.name = "sql";
  sql_config.type = "sqlite";
  SqliteAdapter sql(sql_config, &metrics.registry());
  AdapterConfig ch_config;
  ch_config.name = "ch";
  ch_config.type = "clickhouse";
  ClickHouseAdapter ch(ch_config, &metrics.registry());
  AdapterConfig erp_config;
  erp_config.name = "erp";
  erp_config.type = "erp";
  erp_config.erp.base_url = "http://127.0.0.1:1";
  ErpAdapter erp(erp_config, &metrics.registry());
  AdapterConfig dv_config;
  dv_config.name = "crm";
  dv_config.type = "dataverse";
  dv_config.dataverse.url = "http://127.0.0.1:1";
  DataverseAdapter dv(dv_config, &metrics.registry());
  EngineOptions options;
  options.registry = &metrics.registry();
  DeliveryEngine engine(options, {EngineAdapter{lake_config, &lake}});
  const std::string exported = metrics.Serialize();
  std::set<std::string> families;
  for (size_t at = exported.find("# TYPE "); at != std::string::npos;
       at = exported.find("# TYPE ", at + 1)) {
    const size_t start = at + 7;
    families.insert(exported.substr(start, exported.find(' ', start) - start));
  }
  ASSERT_GT(families.size(), 10u);
  size_t checked = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(
           std::string(DVROUTER_SOURCE_DIR) + "/deploy")) {
    if (!entry.is_regular_file()) continue;
    const std::string text = testing::ReadFileOrDie(entry.path().string());
    // Plain scan (std::regex trips GCC 12 warnings under sanitizers).
    for (size_t at = text.find("dvrouter_"); at != std::string::npos;
         at = text.find("dvrouter_", at + 1)) {
      if (at > 0 &&
          (std::isalnum(static_cast<unsigned char>(text[at - 1])) || text[at - 1] == '_' ||
           text[at - 1] == '-' || text[at - 1] == '/' || text[at - 1] == '.')) {
        continue;
      }
      size_t end = at;
      while (end < text.size() &&
             (std::islower(static_cast<unsigned char>(text[end])) || text[end] == '_')) {
        ++end;
      }
      const std::string name = text.substr(at, end - at);
      bool known = false;
      for (const auto& family : families) {
        // Histograms export family_bucket, family_sum and family_count.
        if (name == family || name == family + "_bucket" || name == family + "_sum" ||
            name == family + "_count") {
          known = true;
        }
      }
      EXPECT_TRUE(known) << entry.path() << " names " << name << ", which dvrouter does not export";
      ++checked;
    }
  }
  EXPECT_GT(checked, 20u);
}

}  // namespace
}  // namespace dvrouter
