#include "adapters/lake/lake_config.h"

#include <ostream>

#include "router/config/section.h"

namespace dvrouter {

namespace {

Result<std::unique_ptr<AdapterSettings>> ParseLake(Section& a, const AdapterParseContext& ctx) {
  auto out = std::make_unique<LakeConfig>();
  out->dir = ctx.data_dir + "/lake";
  DV_TRY(a.String("dir", &out->dir));
  out->dir_defaulted = out->dir == ctx.data_dir + "/lake";
  if (out->dir.empty()) return KeyError(a.Path("dir"), "must not be empty");
  DV_TRY(a.Bytes("roll_bytes", 4096, 4ull << 30, &out->roll_bytes));
  DV_TRY(a.DurationMs("roll_interval", 10, 3'600'000, &out->roll_ms));
  return std::unique_ptr<AdapterSettings>(std::move(out));
}

constexpr std::string_view kExamples[] = {"dir: /var/lib/dvrouter/lake\n"};

}  // namespace

void LakeConfig::Describe(const std::string& k, std::ostream& o) const {
  o << k << "dir: " << dir << "\n"
    << k << "roll_bytes: " << roll_bytes << "\n"
    << k << "roll_interval: " << roll_ms << "ms\n";
}

void LakeConfig::SetDataDir(const std::string& data_dir) {
  if (dir_defaulted) dir = data_dir + "/lake";
}

const AdapterKind kLakeKind{.type = "lake", .parse = &ParseLake, .examples = kExamples};

}  // namespace dvrouter
