// Journal append with group commit, 13.5 KB events. Each iteration hands `group` appends to the
// journal at once (as `group` concurrent webhook requests would) and waits for all callbacks.
// fsync=1 is the default durability; fsync=0 is the unsafe mode, the ceiling without the disk
// flush; zstd=1 compresses bodies (the default), zstd=0 stores them as they are; all measured
// in the same run. Also: compression per body, appends while the budget deletes history, and
// group commits into preallocated segments against growing ones.
#include <benchmark/benchmark.h>

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <vector>

#include "bench/bench_util.h"
#include "bench/body_variation.h"
#include "router/journal/file_journal.h"
#include "router/journal/record.h"

namespace dvrouter::bench {
namespace {

// Each iteration appends `group` copies of a 13.5 KB body with fresh keys and waits for all of
// them. Sets items and bytes processed.
void AppendGroups(benchmark::State& state, Journal* journal, int group) {
  const std::string body = LoadFixture("create-msdyn_agentstatus-postop-sync.json");
  EventHeader header;
  header.message_name = "Create";
  header.primary_entity_name = "msdyn_agentstatus";
  header.primary_entity_id = "4b1e3d75-a749-ef11-acce-00224802d26d";
  header.owning_extension_id = "09097f27-6123-4c61-b463-af00adb2e082";
  std::vector<AppendRequest> requests(static_cast<size_t>(group));
  AppendWaiter waiter;
  bool ok = true;
  uint64_t n = 0;
  for (auto _ : state) {
    waiter.remaining = static_cast<size_t>(group);
    for (auto& r : requests) {
      r.key = EventKey{0x5eed, ++n};
      r.header = &header;
      r.body = body;
      r.callback = &waiter;
      journal->Append(&r);
    }
    ok = waiter.Wait() && ok;
  }
  if (!ok) state.SkipWithError("appends failed");
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * group);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * group *
                          static_cast<int64_t>(body.size()));
}

// A fresh journal in $TMPDIR/<name>, or null (the benchmark then skips with the reason).
std::unique_ptr<FileJournal> OpenFresh(benchmark::State& state, const std::string& dir,
                                       FileJournalOptions o) {
  std::filesystem::remove_all(dir);
  o.dir = dir;
  o.dedupe_window_ms = 1;  // every key is fresh anyway; keep the index small
  auto journal = FileJournal::Open(o);
  if (!journal.ok()) {
    state.SkipWithError(std::string(journal.status().message()).c_str());
    return nullptr;
  }
  return std::move(journal).value();
}

// Args: group, fsync, compression (zstd level 1, the default).
void BM_JournalAppend(benchmark::State& state) {
  const std::string dir = std::filesystem::temp_directory_path() / "dvrouter-bench-journal";
  FileJournalOptions o;
  o.fsync = state.range(1) != 0;
  o.compression = state.range(2) != 0 ? Codec::kZstd : Codec::kNone;
  o.disk_budget_bytes = 64ull << 30;
  auto journal = OpenFresh(state, dir, o);
  if (!journal) return;
  AppendGroups(state, journal.get(), static_cast<int>(state.range(0)));
  journal.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_JournalAppend)
    ->ArgNames({"group", "fsync", "zstd"})
    ->ArgsProduct({{1, 16, 128}, {1, 0}, {0, 1}})
    ->UseRealTime()
    ->MinTime(2.0);

// Delivered history yielding to the budget: every append past it deletes the oldest segment on
// the writer thread. Reports the time of each deletion against the group commit's fdatasync in
// the same run (the deletion must not hold the writer longer than one sync): their medians and
// maxima, in microseconds. Arg: segment MiB (the budget is 8 segments).
struct Timings final : JournalObserver {
  std::mutex mu;
  std::vector<double> syncs, reclaims, writer_reclaims;
  void OnWrite(double, uint64_t) override {}
  void OnSync(double seconds, size_t) override {
    std::lock_guard<std::mutex> lock(mu);
    syncs.push_back(seconds);
  }
  void OnSize(uint64_t, uint64_t) override {}
  void OnRefused(const Status&) override {}
  void OnReclaimed(double seconds, uint64_t, bool on_writer) override {
    std::lock_guard<std::mutex> lock(mu);
    (on_writer ? writer_reclaims : reclaims).push_back(seconds);
  }
};

struct AllDelivered final : CommitListener {
  void OnCommitted(const RecordHandle&) override {}
  uint64_t ReclaimableBelow() override { return UINT64_MAX; }
};

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(q * static_cast<double>(v.size() - 1))];
}

void BM_JournalAppendUnderBudget(benchmark::State& state) {
  const uint64_t segment = static_cast<uint64_t>(state.range(0)) << 20;
  const std::string dir = std::filesystem::temp_directory_path() / "dvrouter-bench-budget";
  Timings timings;
  AllDelivered listener;
  FileJournalOptions o;
  o.segment_bytes = segment;
  o.disk_budget_bytes = 8 * segment;
  o.compression = Codec::kNone;  // the bytes to delete as they arrive
  o.observer = &timings;
  o.listener = &listener;
  auto journal = OpenFresh(state, dir, o);
  if (!journal) return;
  AppendGroups(state, journal.get(), 16);
  journal.reset();
  std::lock_guard<std::mutex> lock(timings.mu);
  state.counters["sync_p50_us"] = Quantile(timings.syncs, 0.5) * 1e6;
  state.counters["sync_max_us"] = Quantile(timings.syncs, 1.0) * 1e6;
  state.counters["reclaim_p50_us"] = Quantile(timings.reclaims, 0.5) * 1e6;
  state.counters["reclaim_max_us"] = Quantile(timings.reclaims, 1.0) * 1e6;
  state.counters["reclaims"] = static_cast<double>(timings.reclaims.size());
  // Deletions the writer had to make itself (the reclaimer was behind): it waited that long.
  state.counters["writer_reclaims"] = static_cast<double>(timings.writer_reclaims.size());
  state.counters["writer_reclaim_max_us"] = Quantile(timings.writer_reclaims, 1.0) * 1e6;
  std::filesystem::remove_all(dir);
}

double ProcessCpuSeconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Group commit into preallocated segments (prealloc=1, the router's default) against segments
// that grow (prealloc=0), fsync and zstd as the router runs: each iteration is one group of
// `group` events, so its wall time is one write and one fdatasync. sync_p50_us and sync_p99_us
// time the fdatasync alone; process_cpu_us is the CPU of all threads (the writer's and the
// spare's included) per group. Small segments, so that the spare's work is in the measurement.
void BM_JournalGroupSync(benchmark::State& state) {
  const std::string dir = std::filesystem::temp_directory_path() / "dvrouter-bench-prealloc";
  Timings timings;
  FileJournalOptions o;
  o.preallocate = state.range(1) != 0;
  o.segment_bytes = 8 << 20;
  o.disk_budget_bytes = 64ull << 30;
  o.observer = &timings;
  auto journal = OpenFresh(state, dir, o);
  if (!journal) return;
  const double cpu = ProcessCpuSeconds();
  AppendGroups(state, journal.get(), static_cast<int>(state.range(0)));
  state.counters["process_cpu_us"] = (ProcessCpuSeconds() - cpu) * 1e6 /
                                     static_cast<double>(std::max<int64_t>(state.iterations(), 1));
  journal.reset();
  std::lock_guard<std::mutex> lock(timings.mu);
  state.counters["sync_p50_us"] = Quantile(timings.syncs, 0.5) * 1e6;
  state.counters["sync_p99_us"] = Quantile(timings.syncs, 0.99) * 1e6;
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_JournalGroupSync)
    ->ArgNames({"group", "prealloc"})
    ->ArgsProduct({{1, 8}, {0, 1}})
    ->UseRealTime()
    ->MinTime(3.0);

BENCHMARK(BM_JournalAppendUnderBudget)
    ->ArgNames({"segment_mib"})
    ->Arg(8)
    ->Arg(64)
    ->UseRealTime()
    ->MinTime(3.0);

// Compression of one body as the ingress does it (journal.compression_level = level), per
// fixture: the stored share of the body (ratio) and the time per body. Arg: fixture index,
// level (negative: zstd's fast levels).
const char* kBodies[] = {
    "update-contact-postop-async.json", "update-msdyn_agentstatus-postop-async.json",
    "create-msdyn_agentstatus-postop-sync.json", "customaction-context-devkit-isodates.json"};

void BM_CompressBody(benchmark::State& state) {
  const std::string body = LoadFixture(kBodies[state.range(0)]);
  const int level = static_cast<int>(state.range(1));
  StoredBody stored;
  for (auto _ : state) {
    journal::CompressBody(body, level, nullptr, &stored);
    benchmark::DoNotOptimize(stored.bytes.data());
  }
  state.counters["stored_share"] =
      static_cast<double>(stored.codec == Codec::kZstd ? stored.bytes.size() : body.size()) /
      static_cast<double>(body.size());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
  state.SetLabel(kBodies[state.range(0)]);
}
BENCHMARK(BM_CompressBody)
    ->ArgNames({"fixture", "level"})
    ->ArgsProduct({{0, 1, 2, 3}, {1, -1, -3}});

// Compression of varied bodies of one fixture (every GUID and timestamp differs, as between real
// events: body_variation.h), without (dict 0) and with (dict 1) a dictionary the journal would
// have made from other varied bodies of the four fixtures (DictionarySampler), at `level`.
void BM_CompressVariedBody(benchmark::State& state) {
  const int level = static_cast<int>(state.range(1));
  DictionarySampler::Options so;
  so.min_events_between = 1;
  so.kind_min_events = 1;
  so.resample_every = 16;  // older samples for zstd's tables, as the journal has by then
  DictionarySampler sampler(so);
  for (uint64_t seed = 1; seed <= 64; ++seed) {
    for (const char* name : kBodies) {
      std::string body = LoadFixture(name);
      BodyVariation::Find(body).Apply(seed, &body);
      sampler.Observe(name, "", body);
    }
  }
  const std::shared_ptr<const BodyDictionary> dict =
      state.range(2) != 0 ? BodyDictionary::Make(1, DictionaryContent(sampler.Take(), level), level)
                          : nullptr;
  const std::string fixture = LoadFixture(kBodies[state.range(0)]);
  const BodyVariation variation = BodyVariation::Find(fixture);
  std::vector<std::string> bodies(256, fixture);
  for (size_t i = 0; i < bodies.size(); ++i) variation.Apply(1000 + i, &bodies[i]);
  StoredBody stored;
  size_t i = 0, in = 0, out = 0;
  for (auto _ : state) {
    const std::string& body = bodies[i++ % bodies.size()];
    journal::CompressBody(body, level, dict.get(), &stored);
    in += body.size();
    out += stored.codec == Codec::kZstd ? stored.bytes.size() : body.size();
  }
  state.counters["stored_share"] = static_cast<double>(out) / static_cast<double>(in);
  state.SetBytesProcessed(static_cast<int64_t>(in));
  state.SetLabel(kBodies[state.range(0)]);
}
BENCHMARK(BM_CompressVariedBody)
    ->ArgNames({"fixture", "level", "dict"})
    ->ArgsProduct({{0, 1, 2, 3}, {1, -1, -3}, {0, 1}});

void BM_DecompressBody(benchmark::State& state) {
  const std::string body = LoadFixture(kBodies[state.range(0)]);
  StoredBody stored;
  journal::CompressBody(body, 1, nullptr, &stored);
  journal::FrameMeta meta;
  meta.codec = stored.codec;
  meta.raw_length = static_cast<uint32_t>(body.size());
  std::string scratch;
  for (auto _ : state) {
    auto raw = journal::RawBody(meta, stored.bytes, &scratch);
    benchmark::DoNotOptimize(raw);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
  state.SetLabel(kBodies[state.range(0)]);
}
BENCHMARK(BM_DecompressBody)->ArgNames({"fixture"})->DenseRange(0, 3);

// The read tail's frame as a delivery worker takes it: its seq written, with the checksum too
// (seal=1, as before 2026-12-06) or not (seal=0, Journal::Read now), then decoded with the
// checksum verified (checksum=1) or trusted (checksum=0, the read tail's), per fixture.
void BM_TailFrameSealAndDecode(benchmark::State& state) {
  const std::string body = LoadFixture(kBodies[state.range(0)]);
  const auto check = state.range(1) != 0 ? journal::Checksum::kVerify : journal::Checksum::kTrusted;
  const bool seal = state.range(2) != 0;
  EventHeader header;
  header.message_name = "Update";
  header.primary_entity_name = "contact";
  header.primary_entity_id = "6d81597f-0f9f-e711-8122-000d3aa2331c";
  std::string frame;
  journal::EncodeUnsealedFrame(journal::FrameMeta{0, 1, {1, 2}, 3}, header, body, 64, &frame);
  journal::FrameMeta meta;
  EventHeader decoded;
  std::string_view view;
  uint32_t len = 0;
  uint64_t seq = 1;
  for (auto _ : state) {
    journal::WriteFrameSeq(seq++, &frame);
    if (seal) journal::WriteFrameChecksum(&frame);
    Status st =
        journal::DecodeFrame(frame.data(), frame.size(), &meta, &decoded, &view, &len, check);
    benchmark::DoNotOptimize(st);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * body.size()));
  state.SetLabel(kBodies[state.range(0)]);
}
BENCHMARK(BM_TailFrameSealAndDecode)
    ->ArgNames({"fixture", "checksum", "seal"})
    ->ArgsProduct({{0, 1, 2, 3}, {1, 0}, {1, 0}});

}  // namespace
}  // namespace dvrouter::bench
