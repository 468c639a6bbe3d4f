// The zeros go to the disk in 256 KiB writes, each waited for (sync_file_range) before the
// next, spread over the time Make allows: one fdatasync of a whole segment held the writer's
// syncs behind it for up to 25 ms (docs/architecture.md, "Preallocated segments"). Only a synced
// spare is handed out, so the writer's first fdatasync in it has no extents to record. Between
// writes the thread looks for a cancel: Discard waits at most one.
#include "router/journal/segment_spare.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "router/common/thread_name.h"

namespace dvrouter {
namespace {
constexpr size_t kChunk = 256u << 10;
}  // namespace

SegmentSpare::SegmentSpare(std::string path, uint64_t bytes)
    : path_(std::move(path)), bytes_(bytes) {
  ::unlink(path_.c_str());
  thread_ = std::thread([this] { Loop(); });
}

SegmentSpare::~SegmentSpare() {
  Discard();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void SegmentSpare::Make(std::chrono::microseconds spread) {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kNone) return;
  state_ = State::kWanted;
  spread_ = spread;
  cancel_ = false;
  cv_.notify_all();
}

Result<bool> SegmentSpare::TakeAs(const std::string& to) {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kReady) return false;
  state_ = State::kNone;
  // Never over an existing file: a segment's records are never replaced by zeros.
  if (::renameat2(AT_FDCWD, path_.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) != 0) {
    const int err = errno;
    ::unlink(path_.c_str());
    ++failures_;
    unsupported_ = err == EINVAL || err == ENOSYS || err == EOPNOTSUPP;
    return ErrnoStatus("rename " + path_ + " to " + to, err);
  }
  return true;
}

void SegmentSpare::Discard() {
  std::unique_lock<std::mutex> lock(mu_);
  cancel_ = true;
  cv_.notify_all();  // a thread waiting for its next write's time
  cv_.wait(lock, [&] { return state_ != State::kMaking; });
  if (state_ == State::kReady) ::unlink(path_.c_str());
  state_ = State::kNone;
}

bool SegmentSpare::Pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_ != State::kNone;
}

bool SegmentSpare::Ready() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_ == State::kReady;
}

bool SegmentSpare::Unsupported() const {
  std::lock_guard<std::mutex> lock(mu_);
  return unsupported_;
}

uint64_t SegmentSpare::failures() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failures_;
}

void SegmentSpare::Loop() {
  SetThreadName("dv-journal-pre");
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || state_ == State::kWanted; });
    if (stop_) return;
    state_ = State::kMaking;
    lock.unlock();
    const Status st = MakeFile();
    const bool cancelled = cancel_.load();
    if (!st.ok() || cancelled) ::unlink(path_.c_str());
    if (!st.ok() && !cancelled) {
      std::fprintf(stderr, "dvrouter: journal: no preallocated segment: %s\n",
                   st.ToString().c_str());
    }
    lock.lock();
    if (!st.ok() && !cancelled) ++failures_;
    state_ = st.ok() && !cancelled ? State::kReady : State::kNone;
    cv_.notify_all();
  }
}

Status SegmentSpare::MakeFile() {
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("open " + path_, errno);
  std::chrono::microseconds spread;
  {
    std::lock_guard<std::mutex> lock(mu_);
    spread = spread_;
  }
  const auto start = std::chrono::steady_clock::now();
  // Each write waits for its share of the spread; false once cancelled.
  const auto pace = [&](uint64_t done) {
    const auto due = start + spread * static_cast<int64_t>(done / kChunk) /
                                 static_cast<int64_t>((bytes_ + kChunk - 1) / kChunk);
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_until(lock, due, [&] { return cancel_.load(); });
    return !cancel_.load();
  };
  const Status st = WriteZeros(fd, bytes_, pace, path_);
  ::close(fd);
  return st;
}

Status WriteZeros(int fd, uint64_t bytes, const std::function<bool(uint64_t done)>& pace,
                  const std::string& what) {
  const std::vector<char> zeros(kChunk, 0);
  uint64_t done = 0;
  while (done < bytes) {
    if (pace && !pace(done)) return Status::Ok();
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, bytes - done));
    const ssize_t w = ::pwrite(fd, zeros.data(), n, static_cast<off_t>(done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return ErrnoStatus("write " + what, w < 0 ? errno : EIO);
    // Written out before the next: the disk's queue never holds more than one write of zeros.
    if (::sync_file_range(fd, static_cast<off_t>(done), w,
                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                              SYNC_FILE_RANGE_WAIT_AFTER) != 0) {
      return ErrnoStatus("sync_file_range " + what, errno);
    }
    done += static_cast<uint64_t>(w);
  }
  if (::fdatasync(fd) != 0) return ErrnoStatus("fdatasync " + what, errno);
  return Status::Ok();
}

}  // namespace dvrouter
