// FaultIo: the journal's syscalls with faults on command (like LevelDB's SpecialEnv): failing
// writes (optionally after writing part), failing fdatasync or ftruncate, and a gate that holds
// every fdatasync until the test opens it, and short writes; it counts the writes and their
// largest size. Knobs are atomics: set them from the test thread while the journal's writer runs.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "router/journal/file_journal.h"

namespace dvrouter::testing {

class FaultIo final : public JournalIo {
 public:
  std::atomic<int> write_errno{0};         // every write fails with this errno while set
  std::atomic<bool> partial_write{false};  // ...after writing half of the first buffer
  std::atomic<int> sync_errno{0};          // every fdatasync fails with this while set
  std::atomic<int> truncate_errno{0};      // every ftruncate fails with this while set
  std::atomic<int> syncs{0};               // fdatasync calls made (successful or not)
  std::atomic<size_t> short_write{0};      // while set, a write takes at most this many bytes
  std::atomic<size_t> largest_write{0};    // the most bytes one write call was given
  std::atomic<int> writes{0};              // write calls made

  ssize_t Writev(int fd, const iovec* iov, int n) override {
    if (int e = write_errno.load()) {
      if (partial_write.load() && n > 0 && iov[0].iov_len > 1) {
        (void)::write(fd, iov[0].iov_base, iov[0].iov_len / 2);  // leave a torn record behind
      }
      errno = e;
      return -1;
    }
    size_t bytes = 0;
    for (int i = 0; i < n; ++i) bytes += iov[i].iov_len;
    if (bytes > largest_write.load()) largest_write.store(bytes);  // the writer thread only
    ++writes;
    if (const size_t most = short_write.load(); most > 0 && bytes > most && iov[0].iov_len > 0) {
      // A short count, as a write the kernel cut: at most `most` bytes of the first buffer.
      return ::write(fd, iov[0].iov_base, std::min(iov[0].iov_len, most));
    }
    return JournalIo::Writev(fd, iov, n);
  }

  int Fdatasync(int fd) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++waiting_;
      cv_.notify_all();
      cv_.wait(lock, [&] { return !closed_; });
      --waiting_;
    }
    ++syncs;
    if (int e = sync_errno.load()) {
      errno = e;
      return -1;
    }
    return JournalIo::Fdatasync(fd);
  }

  int Ftruncate(int fd, off_t size) override {
    if (int e = truncate_errno.load()) {
      errno = e;
      return -1;
    }
    return JournalIo::Ftruncate(fd, size);
  }

  // While closed, every fdatasync waits (the writer thread blocks inside its group commit).
  void CloseGate() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  void OpenGate() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = false;
    }
    cv_.notify_all();
  }
  // Waits until a thread is blocked at the gate; false on timeout.
  bool WaitUntilBlocked(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return waiting_ > 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false;
  int waiting_ = 0;
};

}  // namespace dvrouter::testing
