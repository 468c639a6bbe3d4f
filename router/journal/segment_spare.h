// SegmentSpare: the journal's next segment, written full of zeros and synced ahead of need on its
// own thread (dv-journal-pre). The writer renames it into place when it rolls: appends then
// overwrite blocks that are already written, so their fdatasync has neither a new size nor new
// extents to record (docs/architecture.md, "Preallocated segments").
//
// Threads: Make, TakeAs and Discard from the journal's writer (or its owner while the writer is
// not running); Pending, Ready, Unsupported, failures and WriteZeros from any thread. The zeros
// are written on dv-journal-pre.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "router/common/status.h"

namespace dvrouter {

// Writes `bytes` zeros at the start of fd in 256 KiB calls, each written out before the next,
// then fdatasyncs: blocks written and synced, so later writes over them change neither the size
// nor the extents. `pace` (optional) is called before each call with the bytes done; false
// stops early (Ok, the file incomplete).
Status WriteZeros(int fd, uint64_t bytes, const std::function<bool(uint64_t done)>& pace,
                  const std::string& what);

class SegmentSpare {
 public:
  // The spare is made at `path`, a name no segment listing matches; a file an earlier run left
  // there is removed. Each spare is `bytes` long.
  SegmentSpare(std::string path, uint64_t bytes);
  ~SegmentSpare();  // stops the thread and removes a spare not taken
  SegmentSpare(const SegmentSpare&) = delete;
  SegmentSpare& operator=(const SegmentSpare&) = delete;

  // Starts making a spare unless one is made or being made, its writes spread evenly over
  // `spread` (0: as fast as the disk takes them). Returns at once.
  void Make(std::chrono::microseconds spread = std::chrono::microseconds(0));
  // Renames a made spare to `to` (the caller syncs the directory): true. False, and nothing
  // renamed, while none is ready (being made, failed, or never asked for).
  Result<bool> TakeAs(const std::string& to);
  // Stops making the spare and removes it. Waits for the thread to leave the file.
  void Discard();
  // A spare is made or being made.
  bool Pending() const;
  // A spare is made: TakeAs would take it.
  bool Ready() const;
  // A rename failed because the filesystem cannot rename without replacing.
  bool Unsupported() const;
  // Spares that could not be made (each is removed; the writer then grows its segment).
  uint64_t failures() const;

 private:
  enum class State { kNone, kWanted, kMaking, kReady };
  void Loop();
  Status MakeFile();  // on dv-journal-pre, without the lock

  const std::string path_;
  const uint64_t bytes_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  State state_ = State::kNone;
  std::chrono::microseconds spread_{0};
  std::atomic<bool> cancel_{false};  // Discard or the destructor: stop making it
  bool stop_ = false;
  uint64_t failures_ = 0;
  bool unsupported_ = false;
  std::thread thread_;
};

}  // namespace dvrouter
