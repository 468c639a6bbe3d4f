// Lake row encoding (Target attributes converted to plain JSON, the row assembled) per fixture
// body, against copying the body as the same-run baseline.
#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>
#include <string>

#include "adapters/lake/lake_adapter.h"
#include "router/decode/decode.h"

namespace dvrouter::bench {
namespace {

std::string Load(const std::string& name) {
  std::ifstream in(std::string(DVROUTER_FIXTURES_DIR) + "/" + name);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const char* kFixtures[] = {"update-contact-postop-async.json",
                           "update-msdyn_agentstatus-postop-async.json",
                           "create-msdyn_agentstatus-postop-sync.json"};

void BM_LakeEncodeRow(benchmark::State& state) {
  const std::string body = Load(kFixtures[state.range(0)]);
  EventHeader header;
  Decoder decoder(1 << 20);
  if (!decoder.Decode(body.data(), body.size(), body.size(), &header).ok()) {
    state.SkipWithError("fixture does not decode");
    return;
  }
  Delivery d;
  d.seq = 1;
  d.header = &header;
  d.body = body;
  std::string row, dir;
  for (auto _ : state) {
    if (!LakeAdapter::EncodeRow(d, &row, &dir).ok()) state.SkipWithError("encode failed");
    benchmark::DoNotOptimize(row.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetLabel(kFixtures[state.range(0)]);
}
BENCHMARK(BM_LakeEncodeRow)->DenseRange(0, 2);

// Baseline: copying the body into a reused string (the least any row encoding does).
void BM_BaselineCopyBody(benchmark::State& state) {
  const std::string body = Load(kFixtures[state.range(0)]);
  std::string out;
  for (auto _ : state) {
    out.assign(body);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_BaselineCopyBody)->DenseRange(0, 2);

}  // namespace
}  // namespace dvrouter::bench
