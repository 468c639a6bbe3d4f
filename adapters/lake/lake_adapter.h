// LakeAdapter: the embedded warehouse. One JSON line per event, in files partitioned by table
// and day:
//
//   <dir>/<table>/date=YYYY-MM-DD/part-<first seq>-<last seq>.jsonl
//
// A row: {"event_id","seq","table","row_id","message","stage","operation_time","received_at",
// "attributes"} with Target's attributes converted (attributes.h: dates ISO-8601 UTC, OptionSet
// and Money as numbers, EntityReference as {id, logicalname, name}). The day is the operation's
// (OperationCreatedOn, UTC).
//
// Files are written under a temporary name (.part-*.tmp) and finalized together every
// `roll_interval`, or sooner when one exceeds `roll_bytes`: fdatasync, rename (never over an
// existing file), directory fsync. A reader never sees a partial file. An event is reported
// delivered only once its file is final, so a crash loses nothing that was acknowledged to the
// engine; temporary files found at Start are from a crash and are removed (their events were
// not acknowledged and come again). Events finalized after the last persisted cursor also come
// again: Start reads the seqs of the final files that may hold them and skips those events, so
// a crash never duplicates a row. Operator replays (Delivery::replay) are written again.
//
// Failures are narrowed to the events they concern: an event whose table is not a logical name
// or whose Target cannot be converted is permanent at once; a file that cannot be created,
// written or made final fails only the events written into it (permanent for ENAMETOOLONG and
// EINVAL, retryable otherwise), while the other files of the roll become final and their events
// delivered. One failing event never holds back another table's.
//
// Threads: Deliver converts rows on the calling worker thread (a per-thread parser) and hands
// them to the lake's own writer thread, which does all file I/O; `done` runs on the writer
// thread (or the caller's, when no row needed writing).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "adapters/adapter.h"
#include "adapters/lake/lake_config.h"
#include "router/config/config.h"

namespace prometheus {
class Registry;
class Counter;
}  // namespace prometheus

namespace dvrouter {

class LakeAdapter final : public Adapter {
 public:
  LakeAdapter(AdapterConfig config, prometheus::Registry* registry);
  ~LakeAdapter() override;

  std::string_view name() const override { return config_.name; }
  Status Start(uint64_t redelivery_from_seq) override;
  // Rows are appended in hand-over order by one writer thread; see Adapter.
  RecordOrdering record_ordering() const override { return RecordOrdering::kPipelined; }
  void Deliver(std::span<const Delivery> batch, DeliveryDone* done) override;
  void Stop() override;

  // Encodes one event's row (without newline); pure apart from the per-thread parser.
  static Status EncodeRow(const Delivery& d, std::string* out, std::string* partition_dir);

  uint64_t skipped_duplicates() const;

 private:
  struct Group {  // rows of one batch for one file
    std::string dir;
    std::string rows;
    uint64_t min_seq = UINT64_MAX, max_seq = 0;
    std::vector<std::pair<uint64_t, EventKey>> events;
    std::vector<size_t> index;  // the events' places in the batch (Pending::results)
  };
  struct Pending {
    std::vector<Group> groups;
    std::vector<DeliveryResult> results;  // a group's wait for its file to become final
    DeliveryDone* done = nullptr;
  };
  struct OpenFile {
    int fd = -1;
    std::string tmp_path;
    uint64_t bytes = 0;
    uint64_t min_seq = UINT64_MAX, max_seq = 0;
    std::vector<std::pair<Pending*, const Group*>> groups;  // its rows
  };

  void WriterLoop();
  // Appends a batch's rows to their files; a group that cannot be written fails alone.
  void Write(Pending& p);
  Status Append(Pending& p, const Group& g);
  // Makes every open file final, then answers every waiting batch.
  void RollAll();
  // fdatasync, rename to the final name (never over a file), directory fsync.
  Status Finalize(const std::string& dir, OpenFile& f);
  // Drops a file that cannot be made final and fails the events written into it.
  void FailFile(OpenFile& f, const Status& why);
  // Answers a group's events with `why`: retryable or permanent by IsRetryable.
  static void FailGroup(Pending& p, const Group& g, const Status& why);
  Status EnsureDir(const std::string& dir);

  AdapterConfig config_;
  const LakeConfig& lake_ = config_.Settings<LakeConfig>();  // the type's own settings
  prometheus::Counter* rows_ = nullptr;
  prometheus::Counter* files_ = nullptr;
  prometheus::Counter* bytes_ = nullptr;
  prometheus::Counter* duplicates_ = nullptr;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Pending>> queue_;
  bool stopping_ = false;
  // Final rows that may be delivered again: seq -> event id (a seq alone could belong to another
  // journal's event).
  std::unordered_map<uint64_t, std::string> seen_;
  uint64_t skipped_ = 0;

  // Writer thread only.
  std::map<std::string, OpenFile> open_;           // by directory (table + date)
  std::vector<std::unique_ptr<Pending>> waiting_;  // written, not yet final
  std::set<std::string> known_dirs_;
  int64_t first_write_ms_ = 0;
  uint64_t tmp_counter_ = 0;
  std::thread writer_;
};

}  // namespace dvrouter
