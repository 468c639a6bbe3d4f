// Hot-path micro-benchmarks: header extraction from real Dataverse bodies, GUIDs made
// canonical, dedupe key and partition hash. Bytes/s are body bytes.
#include <benchmark/benchmark.h>
#include <simdjson.h>

#include <cstring>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "router/decode/attributes.h"
#include "router/decode/decode.h"
#include "router/partition/partition.h"

namespace dvrouter::bench {
namespace {

void BM_Decode(benchmark::State& state) {
  std::string body = LoadFixture(kFixtures[state.range(0)]);
  const size_t len = body.size();
  body.reserve(len + Decoder::kPadding);  // as the ingress keeps it
  Decoder decoder(1 << 20);
  EventHeader header;
  for (auto _ : state) {
    Status st = decoder.Decode(body.data(), len, body.capacity(), &header);
    if (!st.ok()) state.SkipWithError(std::string(st.message()).c_str());
    benchmark::DoNotOptimize(header.operation_created_on_ms);
  }
  state.SetLabel(kFixtures[state.range(0)]);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * len));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_Decode)->DenseRange(0, 3);

// CanonicalGuid over 4 096 different GUIDs, as the ingress and the workers meet them (one body's
// GUIDs differ from the next one's): a benchmark of one GUID over and over lets the branch
// predictor learn its digits. Arg 0: lowercase, as Dataverse sends them; 1: uppercase.
void BM_CanonicalGuid(benchmark::State& state) {
  std::vector<std::string> guids(4096);
  uint64_t x = 0x9e3779b97f4a7c15ull;
  const char* digits = state.range(0) == 0 ? "0123456789abcdef" : "0123456789ABCDEF";
  for (std::string& g : guids) {
    for (int i = 0; i < 36; ++i) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;  // xorshift64
      g += (i == 8 || i == 13 || i == 18 || i == 23) ? '-' : digits[x & 15];
    }
  }
  std::string out;
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(CanonicalGuid(guids[i++ & 4095], &out));
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_CanonicalGuid)->Arg(0)->Arg(1);

// Baselines in the same run: validating the body's UTF-8 (the floor of any parse that looks at
// every byte) and copying it once.
void BM_Utf8ValidateBaseline(benchmark::State& state) {
  const std::string body = LoadFixture(kFixtures[state.range(0)]);
  for (auto _ : state) benchmark::DoNotOptimize(simdjson::validate_utf8(body.data(), body.size()));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_Utf8ValidateBaseline)->Arg(2);

void BM_MemcpyBaseline(benchmark::State& state) {
  const std::string body = LoadFixture(kFixtures[state.range(0)]);
  std::string copy(body.size(), '\0');
  for (auto _ : state) {
    std::memcpy(copy.data(), body.data(), body.size());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_MemcpyBaseline)->Arg(2);

void BM_DedupeKeyAndPartition(benchmark::State& state) {
  std::string body = LoadFixture("update-contact-postop-async.json");
  body.reserve(body.size() + Decoder::kPadding);
  Decoder decoder(1 << 20);
  EventHeader header;
  if (!decoder.Decode(body.data(), body.size(), body.capacity(), &header).ok()) {
    state.SkipWithError("decode failed");
  }
  for (auto _ : state) {
    EventKey key = header.DedupeKey();
    uint32_t p = PartitionOf(header.primary_entity_name, header.primary_entity_id, 64);
    benchmark::DoNotOptimize(key);
    benchmark::DoNotOptimize(p);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_DedupeKeyAndPartition);

// RecordHash (the ordering key, once per routed event) against the streaming XXH3 it used for
// every key (StreamingRecordHash, still its path for long keys), in the same run: arg 0 the
// streaming baseline, 1 RecordHash.
void BM_RecordHash(benchmark::State& state) {
  const std::string table = "msdyn_agentstatus";
  const std::string row = "6d81597f-0f9f-e711-8122-000d3aa2331c";
  const bool streaming = state.range(0) == 0;
  for (auto _ : state) {
    uint64_t h = streaming ? StreamingRecordHash(table, row) : RecordHash(table, row);
    benchmark::DoNotOptimize(h);
  }
  state.SetLabel(streaming ? "streaming XXH3 (before)" : "RecordHash");
}
BENCHMARK(BM_RecordHash)->Arg(0)->Arg(1);

}  // namespace
}  // namespace dvrouter::bench

namespace dvrouter::bench {
namespace {

// Target attributes converted to plain JSON: the per-event work of the delivery side (lake rows,
// SQL upserts, ERP bodies), measured on the webhook fixtures that carry a Target: from the whole
// body (target=0), or from the Target's place the decoder noted (target=1, what delivery does
// with a record from the journal's read tail: ChangeMemo::SetTarget).
void BM_ExtractAttributes(benchmark::State& state) {
  static const char* const kWithTarget[] = {"create-msdyn_agentstatus-postop-sync.json",
                                            "update-contact-postop-async.json",
                                            "update-msdyn_agentstatus-postop-async.json"};
  std::string body = LoadFixture(kWithTarget[state.range(0)]);
  const size_t len = body.size();
  body.reserve(len + Decoder::kPadding);
  Decoder decoder(1 << 20);
  EventHeader header;
  if (!decoder.Decode(body.data(), len, body.capacity(), &header).ok() ||
      header.target_length == 0) {
    state.SkipWithError("fixture does not decode with a Target");
    return;
  }
  const bool alone = state.range(1) != 0;
  AttributeExtractor extractor(1 << 20);
  ChangeSet changes;
  for (auto _ : state) {
    Status st =
        alone ? extractor.ExtractTarget(body.data() + header.target_offset, header.target_length,
                                        body.capacity() - header.target_offset, &changes)
              : extractor.Extract(body.data(), len, body.capacity(), &changes);
    if (!st.ok()) state.SkipWithError(std::string(st.message()).c_str());
    benchmark::DoNotOptimize(changes.attributes.data());
  }
  state.SetLabel(std::string(kWithTarget[state.range(0)]) + ", Target " +
                 std::to_string(header.target_length) + " of " + std::to_string(len) + " B");
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * len));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_ExtractAttributes)->ArgNames({"fixture", "target"})->ArgsProduct({{0, 1, 2}, {0, 1}});

}  // namespace
}  // namespace dvrouter::bench
