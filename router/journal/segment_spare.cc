// Only a synced spare is handed out, so the writer's first fdatasync in it has no extents to
// record. Between its 1 MiB writes the thread looks for a cancel: Discard waits at most one.
#include "router/journal/segment_spare.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "router/common/thread_name.h"

namespace dvrouter {
namespace {
constexpr size_t kChunk = 1u << 20;
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

void SegmentSpare::Make() {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kNone) return;
  state_ = State::kWanted;
  cancel_ = false;
  cv_.notify_all();
}

Result<bool> SegmentSpare::TakeAs(const std::string& to) {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != State::kReady) return false;
  state_ = State::kNone;
  if (::rename(path_.c_str(), to.c_str()) != 0) {
    const int err = errno;
    ::unlink(path_.c_str());
    ++failures_;
    return ErrnoStatus("rename " + path_ + " to " + to, err);
  }
  return true;
}

void SegmentSpare::Discard() {
  std::unique_lock<std::mutex> lock(mu_);
  cancel_ = true;
  cv_.wait(lock, [&] { return state_ != State::kMaking; });
  if (state_ == State::kReady) ::unlink(path_.c_str());
  state_ = State::kNone;
}

bool SegmentSpare::Pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_ != State::kNone;
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
  const Status st = WriteZeros(fd, bytes_, &cancel_, path_);
  ::close(fd);
  return st;
}

Status WriteZeros(int fd, uint64_t bytes, const std::atomic<bool>* cancel,
                  const std::string& what) {
  const std::vector<char> zeros(kChunk, 0);
  uint64_t done = 0;
  while (done < bytes && !(cancel != nullptr && cancel->load())) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, bytes - done));
    const ssize_t w = ::pwrite(fd, zeros.data(), n, static_cast<off_t>(done));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return ErrnoStatus("write " + what, w < 0 ? errno : EIO);
    done += static_cast<uint64_t>(w);
  }
  if (!(cancel != nullptr && cancel->load()) && ::fdatasync(fd) != 0)
    return ErrnoStatus("fdatasync " + what, errno);
  return Status::Ok();
}

}  // namespace dvrouter
