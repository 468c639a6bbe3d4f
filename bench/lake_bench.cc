// Lake row encoding (Target attributes converted to plain JSON, the row assembled) per fixture
// body, against copying the body as the same-run baseline.
#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>
#include <string>

#include "adapters/lake/lake_adapter.h"
#include "router/common/json.h"
#include "router/decode/attributes.h"
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

// Escaping a JSON document into a JSON string (ClickHouse's attributes column): the Target's
// converted attributes of each fixture. Baseline in the same run: the byte-at-a-time escaper
// this replaced.
void EscapeByteAtATime(std::string* out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out->append("\\u00");
          out->push_back(kHex[(c >> 4) & 0xf]);
          out->push_back(kHex[c & 0xf]);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

template <bool kFast>
void BM_EscapeAttributes(benchmark::State& state) {
  const std::string body = Load(kFixtures[state.range(0)]);
  ChangeSet changes;
  if (!ThreadAttributeExtractor().Extract(body.data(), body.size(), body.size(), &changes).ok()) {
    state.SkipWithError("fixture does not convert");
    return;
  }
  std::string out;
  for (auto _ : state) {
    out.clear();
    if constexpr (kFast) {
      AppendJsonString(&out, changes.attributes);
    } else {
      EscapeByteAtATime(&out, changes.attributes);
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * changes.attributes.size()));
  state.SetLabel(std::string(kFixtures[state.range(0)]) + ", " +
                 std::to_string(changes.attributes.size()) + " B");
}
BENCHMARK(BM_EscapeAttributes<true>)->DenseRange(0, 2);
BENCHMARK(BM_EscapeAttributes<false>)->DenseRange(0, 2);

}  // namespace
}  // namespace dvrouter::bench
