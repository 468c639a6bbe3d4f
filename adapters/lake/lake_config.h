// LakeConfig: the settings of a `lake` adapter (JSON lines per table and day, lake_adapter.h),
// their parser and their check-config lines. Built once while the configuration is parsed, then
// read-only.
#pragma once

#include <cstdint>
#include <string>

#include "router/config/config.h"

namespace dvrouter {

struct LakeConfig : AdapterSettingsOf<LakeConfig> {
  std::string dir;                    // default <journal.data_dir>/lake
  bool dir_defaulted = true;          // dir follows journal.data_dir (SetDataDir)
  uint64_t roll_bytes = 64ull << 20;  // a file is finalized past this size...
  uint64_t roll_ms = 1000;            // ...or this long after its first row

  void Describe(const std::string& prefix, std::ostream& out) const override;
  void SetDataDir(const std::string& data_dir) override;
};

extern const AdapterKind kLakeKind;

}  // namespace dvrouter
