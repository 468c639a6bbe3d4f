// The DLQ's replay markers: opening a dlq.log whose entries were all replayed (what a router
// does at start-up after a day of a sink rejecting everything), and marking a whole DLQ replayed
// in one MarkReplayed. Each marker is one lookup of its entry by id, so both grow linearly
// with the entries; run at 5k and 50k entries, the time per entry stays flat.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "router/delivery/dlq.h"

namespace dvrouter::bench {
namespace {

// $TMPDIR/dvrouter-bench-dlq-<pid>, removed at exit.
const std::string& BenchDir() {
  struct Dir {
    std::string path;
    Dir() {
      const char* tmp = std::getenv("TMPDIR");
      path = std::string(tmp ? tmp : "/tmp") + "/dvrouter-bench-dlq-" + std::to_string(::getpid());
      std::filesystem::create_directories(path);
    }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static Dir dir;
  return dir.path;
}

std::vector<uint64_t> AllIds(uint64_t n) {
  std::vector<uint64_t> ids;
  for (uint64_t id = 1; id <= n; ++id) ids.push_back(id);
  return ids;
}

// A dlq.log with n entries (about 300 bytes each), none replayed; written once per size.
const std::string& UnreplayedDlq(uint64_t n) {
  static std::map<uint64_t, std::string> paths;
  auto [it, added] = paths.emplace(n, BenchDir() + "/unreplayed-" + std::to_string(n) + ".log");
  if (added) {
    std::filesystem::remove(it->second);
    auto q = DeadLetterQueue::Open(it->second);
    std::vector<DlqEntry> entries(n);
    for (uint64_t i = 0; i < n; ++i) {
      DlqEntry& e = entries[i];
      e.adapter = "erp";
      e.seq = i + 1;
      e.event_id = std::to_string(0x1000000000000000ull + i);
      e.table = "contact";
      e.row_id = "4b5f4d1e-0000-4000-8000-000000000000";
      e.message = "Update";
      e.reason = "permanent";
      e.attempts = 1;
      e.last_error = "HTTP 400: rejected";
      e.record = std::string(64, 'r');
    }
    if (!q.ok() || !(*q)->Append(&entries).ok()) std::abort();
  }
  return it->second;
}

// The same entries, each followed (at the end of the file) by its replay marker.
const std::string& ReplayedDlq(uint64_t n) {
  static std::map<uint64_t, std::string> paths;
  auto [it, added] = paths.emplace(n, BenchDir() + "/replayed-" + std::to_string(n) + ".log");
  if (added) {
    std::filesystem::copy_file(UnreplayedDlq(n), it->second,
                               std::filesystem::copy_options::overwrite_existing);
    auto q = DeadLetterQueue::Open(it->second);
    if (!q.ok() || !(*q)->MarkReplayed(AllIds(n)).ok()) std::abort();
  }
  return it->second;
}

void BM_DlqOpenAllReplayed(benchmark::State& state) {
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  const std::string& path = ReplayedDlq(n);
  for (auto _ : state) {
    auto q = DeadLetterQueue::Open(path);
    if (!q.ok() || (*q)->Pending("erp") != 0) state.SkipWithError("open failed");
    benchmark::DoNotOptimize(q);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
}
BENCHMARK(BM_DlqOpenAllReplayed)->Arg(5'000)->Arg(50'000)->Unit(benchmark::kMillisecond);

// One MarkReplayed of every entry (one write and one fdatasync); the copy and Open are not timed.
void BM_DlqMarkAllReplayed(benchmark::State& state) {
  const uint64_t n = static_cast<uint64_t>(state.range(0));
  const std::string& source = UnreplayedDlq(n);
  const std::string path = BenchDir() + "/mark-" + std::to_string(n) + ".log";
  const std::vector<uint64_t> ids = AllIds(n);
  for (auto _ : state) {
    state.PauseTiming();
    std::filesystem::copy_file(source, path, std::filesystem::copy_options::overwrite_existing);
    auto q = DeadLetterQueue::Open(path);
    if (!q.ok()) state.SkipWithError("open failed");
    state.ResumeTiming();
    if (!(*q)->MarkReplayed(ids).ok()) state.SkipWithError("mark failed");
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
}
BENCHMARK(BM_DlqMarkAllReplayed)->Arg(5'000)->Arg(50'000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace dvrouter::bench
