// One file on purpose, though over 800 lines: the writer (group commit), recovery, the dedupe
// index, reads and the budget's reclaimer all work on the segment table under one state lock,
// and its invariants (what may be deleted while a read or an append is in progress) are easier
// to check in one place. Its parts, top to bottom: segment and frame scanning helpers, the SEQ
// and META files, Impl (recover, write, commit, reclaim), the public methods. docs/architecture.md,
// "Journal", describes the format and the rules.
#include "router/journal/file_journal.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "router/common/fs.h"
#include "router/common/thread_name.h"
#include "router/journal/dictionary_store.h"
#include "router/journal/record.h"
#include "router/journal/segment_spare.h"

namespace dvrouter {

ssize_t JournalIo::Writev(int fd, const iovec* iov, int iovcnt) {
  return ::writev(fd, iov, iovcnt);
}
int JournalIo::Fdatasync(int fd) { return ::fdatasync(fd); }
int JournalIo::Ftruncate(int fd, off_t size) { return ::ftruncate(fd, size); }
JournalIo* JournalIo::Default() {
  static JournalIo io;  // trivial destructor: no state
  return &io;
}

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view kSegmentSuffix = ".seg";
// Where the next segment is preallocated (SegmentSpare); no segment listing matches it.
constexpr std::string_view kSpareName = "next.spare";

struct KeyHash {
  size_t operator()(const EventKey& k) const { return static_cast<size_t>(k.lo ^ (k.hi >> 1)); }
};

int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

std::string SegmentName(uint64_t first_seq) {
  char name[32];
  std::snprintf(name, sizeof(name), "%020llu", static_cast<unsigned long long>(first_seq));
  return std::string(name) + std::string(kSegmentSuffix);
}

// Every segment in dir, by first sequence.
Result<std::map<uint64_t, std::string>> ListSegments(const std::string& dir) {
  return ListNumberedFiles(dir, kSegmentSuffix);
}

Status ReadFile(const std::string& path, uint64_t limit, std::string* out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open " + path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus("fstat " + path, err);
  }
  uint64_t size = std::min<uint64_t>(static_cast<uint64_t>(st.st_size), limit);
  out->resize(size);
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, out->data() + done, size - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = n < 0 ? errno : EIO;
      ::close(fd);
      return ErrnoStatus("read " + path, err);
    }
    done += static_cast<uint64_t>(n);
  }
  ::close(fd);
  return Status::Ok();
}

// 0, or the errno of the failed read (EIO for a file that ends early).
int PreadAll(int fd, char* out, size_t size, uint64_t offset) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : EIO;
    done += static_cast<size_t>(n);
  }
  return 0;
}

Status PreadFull(int fd, char* out, size_t size, uint64_t offset, const std::string& what) {
  const int err = PreadAll(fd, out, size, offset);
  return err == 0 ? Status::Ok() : ErrnoStatus("read " + what, err);
}

struct SegmentScan {
  uint64_t valid_end = 0;            // offset just past the last valid record
  uint64_t corrupt_records = 0;      // invalid regions that valid records follow
  bool torn_tail = false;            // bytes after valid_end that hold no valid record
  uint64_t min_dict = 0;             // the lowest dictionary a valid record names (0: none)
  uint64_t unreadable_reported = 0;  // unreadable bodies met (only the first is logged)
};

// Walks the frames in data[0, size). An invalid frame followed by a valid one is skipped and
// counted (corruption in the middle must not cost the acknowledged records after it); invalid
// bytes with no valid frame after them are a torn tail.
// `base` is data[0]'s offset in the segment. With `chunked`, a frame cut off by the end of data
// ends the scan at valid_end (the caller reads on from there) instead of counting as torn.
// The bytes of a request's body as the journal stores them.
std::string_view Stored(const AppendRequest& r) {
  return r.stored.codec == Codec::kNone ? r.body : std::string_view(r.stored.bytes);
}

// A frame naming a partition the journal does not have is as corrupt as a bad checksum.
Status DecodeChecked(const char* data, size_t available, uint32_t partitions,
                     journal::FrameMeta* meta, EventHeader* header, std::string_view* body,
                     uint32_t* len) {
  Status st = journal::DecodeFrame(data, available, meta, header, body, len);
  if (st.ok() && meta->partition >= partitions) {
    return InvalidArgument("frame partition " + std::to_string(meta->partition) +
                           " is out of range");
  }
  return st;
}

// With `bodies` false the visitor gets no body (recovery needs the keys only, and a compressed
// body would have to be decompressed for nothing).
// Compressed bodies are read with the dictionaries in `dicts`.
SegmentScan ScanFrames(const char* data, size_t size, uint64_t segment, uint32_t partitions,
                       const DictionarySet& dicts, const std::function<bool(const RecordView&)>& fn,
                       bool* stopped, uint64_t base = 0, bool chunked = false, bool bodies = true) {
  SegmentScan scan;
  EventHeader header;
  journal::FrameMeta meta;
  std::string raw;  // a decompressed body
  size_t pos = 0;
  *stopped = false;
  while (pos < size) {
    std::string_view body;
    uint32_t len = 0;
    Status st = DecodeChecked(data + pos, size - pos, partitions, &meta, &header, &body, &len);
    if (st.ok()) {
      RecordView view;
      view.handle = RecordHandle{meta.seq, segment, base + pos, len, meta.partition};
      view.key = meta.key;
      view.received_ms = meta.received_ms;
      view.header = &header;
      pos += len;
      scan.valid_end = pos;
      std::shared_ptr<const BodyDictionary> dict;
      if (meta.dict_id != 0) {
        if (scan.min_dict == 0 || meta.dict_id < scan.min_dict) scan.min_dict = meta.dict_id;
        dict = dicts.Find(meta.dict_id);
        // Without its dictionary the record cannot be read back: counted even when no body is
        // wanted (recovery), so the loss shows in the corrupt-record count.
        if (!dict && !(bodies && fn)) ++scan.corrupt_records;
      }
      if (bodies && fn) {
        Result<std::string_view> plain = journal::RawBody(meta, body, &raw, dict.get());
        if (!plain.ok()) {
          // Its checksum holds, its compressed bytes do not (or its dictionary is missing):
          // skipped and counted as corrupt; the first of a scan is reported.
          if (scan.unreadable_reported++ == 0) {
            std::fprintf(stderr, "dvrouter: journal record %llu is unreadable and skipped: %s\n",
                         static_cast<unsigned long long>(meta.seq),
                         plain.status().ToString().c_str());
          }
          ++scan.corrupt_records;
          continue;
        }
        view.body = *plain;
      }
      if (fn && !fn(view)) {
        *stopped = true;
        return scan;
      }
      continue;
    }
    if (chunked && st.code() == StatusCode::kNotFound) return scan;
    // Resynchronize: look for the next offset that holds a whole valid frame.
    size_t next = pos + 1;
    bool found = false;
    for (; next + journal::kFrameHeaderBytes <= size; ++next) {
      const void* hit = std::memchr(data + next + 4, 0x01, size - next - 4);
      if (hit == nullptr) break;
      next = static_cast<size_t>(static_cast<const char*>(hit) - data) - 4;
      if (next + journal::kFrameHeaderBytes > size) break;
      uint32_t magic;
      std::memcpy(&magic, data + next + 4, 4);
      if (magic != journal::kFrameMagic) continue;
      std::string_view b;
      uint32_t l = 0;
      if (DecodeChecked(data + next, size - next, partitions, &meta, &header, &b, &l).ok()) {
        found = true;
        break;
      }
    }
    if (!found) {
      scan.torn_tail = true;
      return scan;
    }
    ++scan.corrupt_records;
    pos = next;
  }
  return scan;
}

constexpr size_t kScanChunk = 1u << 20;

// Scans the committed bytes [start, limit) of one segment in bounded chunks.
Status ScanSegment(const std::string& path, uint64_t first, uint32_t partitions,
                   const DictionarySet& dicts, uint64_t start, uint64_t limit,
                   const std::function<bool(const RecordView&)>& fn, bool* stopped) {
  *stopped = false;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open " + path, errno);
  std::string buf;
  size_t chunk = kScanChunk;
  uint64_t pos = start;
  Status st;
  while (pos < limit && !*stopped) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(chunk, limit - pos));
    const bool whole_rest = want == limit - pos;
    buf.resize(want);
    st = PreadFull(fd, buf.data(), want, pos, path);
    if (!st.ok()) break;
    SegmentScan scan =
        ScanFrames(buf.data(), want, first, partitions, dicts, fn, stopped, pos, !whole_rest);
    if (scan.valid_end == 0 && !*stopped) {
      if (whole_rest) break;  // nothing valid in the rest of the segment
      chunk *= 2;             // a record larger than the chunk
      continue;
    }
    if (whole_rest && !*stopped) break;
    pos += scan.valid_end;
    chunk = kScanChunk;
  }
  ::close(fd);
  return st;
}

// Sequence numbers are reserved ahead in <dir>/SEQ ("next=N"), durably, before any of them is
// handed out: after a crash that lost the newest records (unsafe_no_fsync, a damaged tail) the
// journal resumes above every sequence an adapter may have seen, so no new event is ever taken
// for an older version of its row. A clean stop writes the exact next sequence.
constexpr uint64_t kSeqReserve = 1ull << 20;
constexpr std::string_view kSeqKey = "next=";

// The most bytes one write call takes: a group is written in calls of at most this much. On the
// VM measured, uncompressed groups (~290 KiB) written in one call with fdatasync after each cost
// far more CPU per event than in 64 KiB calls; the cause is not established (docs/architecture.md,
// "Group commit"; bench/README.md, "Issue 23, fifth round").
constexpr size_t kMaxWriteBytes = 64u << 10;

// The newest META format this version reads (MetaText's comment says what each one adds).
constexpr int kNewestMetaFormat = 4;
// The formats it reads, as its refusals name them.
std::string ReadableMetaFormats() { return "format=1 to " + std::to_string(kNewestMetaFormat); }

// What a META file says: its format (0 unless a line "format=1" to "format=kNewestMetaFormat"
// opens it) and its partition count (0 when it names none).
struct MetaFields {
  int format = 0;
  uint64_t partitions = 0;
};
MetaFields ParseMeta(const std::string& text) {
  MetaFields m;
  for (int f = 1; f <= kNewestMetaFormat; ++f) {
    if (text.rfind("format=" + std::to_string(f) + "\n", 0) == 0) m.format = f;
  }
  constexpr std::string_view kKey = "\npartitions=";
  if (const size_t at = text.find(kKey); at != std::string::npos) {
    m.partitions = std::strtoull(text.c_str() + at + kKey.size(), nullptr, 10);
  }
  return m;
}

// The sequence SEQ says to resume at; 0 when there is no SEQ file.
Result<uint64_t> ReadSeqMark(const std::string& dir) {
  std::string text;
  Status st = ReadFile(dir + "/SEQ", 4096, &text);
  if (st.code() == StatusCode::kNotFound) return uint64_t{0};
  if (!st.ok()) return st;
  uint64_t value = 0;
  size_t digits = 0;
  if (text.rfind(kSeqKey, 0) == 0) {
    for (size_t i = kSeqKey.size(); i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
      if (value > (UINT64_MAX - 9) / 10)
        return InvalidArgument("journal " + dir + "/SEQ: overflow");
      value = value * 10 + static_cast<uint64_t>(text[i] - '0');
      ++digits;
    }
  }
  if (digits == 0 || text.size() != kSeqKey.size() + digits + 1 || text.back() != '\n') {
    return InvalidArgument("journal " + dir +
                           "/SEQ is not a sequence mark (expected \"next=<number>\\n\"); "
                           "it is written by dvrouter only: restore it or remove it to resume "
                           "after the newest record found");
  }
  return value;
}

}  // namespace

// A read-only descriptor shared by concurrent Read() calls; closed when the last one is done.
struct ReadFd {
  explicit ReadFd(int f) : fd(f) {}
  ~ReadFd() { ::close(fd); }
  ReadFd(const ReadFd&) = delete;
  ReadFd& operator=(const ReadFd&) = delete;
  int fd;
};

// Spare bytes a read tail frame keeps past its end: simdjson's padding (Decoder::kPadding).
constexpr size_t kReadSlack = 64;

// The read tail: the plain frames of the newest committed records, prepared by the appending
// threads from the body they received (EncodeUnsealedFrame) and put here by the writer once the
// record is durable, so the delivery worker that routes a record right after its commit reads
// neither the disk nor zstd (docs/architecture.md, "Journal compression"); each with the Target's
// place the decoder found in its body ("The Target's place"). A ring of
// opt.read_tail_records slots by seq; a Read takes its frame out (the caller's buffer takes the
// slot's place and is reused), later Reads of the record go to the disk. Frames over
// kMaxTailFrame are not kept. Any thread (one mutex: the writer once per group, readers once per
// record).
class ReadTail {
 public:
  static constexpr size_t kMaxTailFrame = 64u << 10;
  static constexpr size_t kMinFrameCapacity = 16u << 10;

  explicit ReadTail(size_t records) : slots_(records) {}
  // Writer: the frames of a durable group (committed[k] is batch[group[k]]'s record); each
  // request gets the replaced slot's buffer back to reuse.
  void Put(const std::vector<RecordHandle>& committed, const std::vector<size_t>& group,
           const std::vector<AppendRequest*>& batch) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t k = 0; k < group.size(); ++k) {
      std::string& frame = batch[group[k]]->plain_frame;
      if (frame.empty()) continue;
      Slot& slot = slots_[committed[k].seq % slots_.size()];
      slot.seq = committed[k].seq;
      slot.frame.swap(frame);
      frame.clear();
      slot.target_offset = batch[group[k]]->header->target_offset;
      slot.target_length = batch[group[k]]->header->target_length;
    }
  }
  // Moves the frame of `seq` into *out (whose buffer takes its place) and gives the Target's
  // place the decoder found in its body (EventHeader::target_*, which frames do not carry);
  // false when not kept.
  bool Take(uint64_t seq, std::string* out, uint32_t* target_offset, uint32_t* target_length) {
    std::lock_guard<std::mutex> lock(mu_);
    Slot& slot = slots_[seq % slots_.size()];
    if (slot.seq != seq || slot.frame.empty()) return false;
    slot.seq = 0;
    *target_offset = slot.target_offset;
    *target_length = slot.target_length;
    slot.frame.swap(*out);
    slot.frame.clear();
    if (slot.frame.capacity() > kMaxTailFrame) std::string().swap(slot.frame);
    reads_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  uint64_t reads() const { return reads_.load(std::memory_order_relaxed); }

 private:
  struct Slot {
    uint64_t seq = 0;
    std::string frame;
    uint32_t target_offset = 0;
    uint32_t target_length = 0;
  };
  std::mutex mu_;
  std::vector<Slot> slots_;
  std::atomic<uint64_t> reads_{0};
};

namespace {

// The frame Read got for `handle` (from the tail or the segment), decoded: its seq and partition
// must be the handle's.
Status DecodeRead(const RecordHandle& handle, const std::string& buffer, journal::FrameMeta* meta,
                  EventHeader* header, std::string_view* body,
                  journal::Checksum checksum = journal::Checksum::kVerify) {
  uint32_t len = 0;
  Status st =
      journal::DecodeFrame(buffer.data(), buffer.size(), meta, header, body, &len, checksum);
  if (st.ok() && (meta->seq != handle.seq || meta->partition != handle.partition)) {
    st = InvalidArgument("sequence or partition differs");
  }
  return st;
}

void FillView(const RecordHandle& handle, const journal::FrameMeta& meta, EventHeader* header,
              std::string_view body, RecordView* out) {
  out->handle = handle;
  out->key = meta.key;
  out->received_ms = meta.received_ms;
  out->header = header;
  out->body = body;
}

}  // namespace

struct FileJournal::Impl {
  FileJournalOptions opt;
  JournalIo* io = nullptr;
  int lock_fd = -1;

  // Segments and sizes: written by the writer, read by Scan/Stats.
  struct SegmentInfo {
    uint64_t bytes = 0;       // committed
    int64_t first_ms = 0;     // received_ms of its first record; 0 while it has none
    uint64_t min_dict = 0;    // the lowest dictionary its records name (0: none)
    uint64_t file_bytes = 0;  // its file's size where larger than `bytes` (zeros not cut)
    uint64_t OnDisk() const { return std::max(bytes, file_bytes); }
  };
  mutable std::mutex state_mu;
  std::map<uint64_t, SegmentInfo> segments;  // by first seq
  uint64_t deleting_bytes = 0;  // of segments taken out of `segments`, not yet unlinked
  // Their lowest dictionaries (those that name one), until their unlink succeeds: a segment that
  // outlives a failed unlink or a crash keeps its dictionaries.
  std::map<uint64_t, uint64_t> deleting_dicts;           // first seq -> lowest dictionary
  std::condition_variable deleted_cv;                    // deleting_bytes went down
  std::map<uint64_t, std::shared_ptr<ReadFd>> read_fds;  // for Read(), opened on demand
  std::atomic<uint64_t> next_seq{1};
  std::atomic<uint64_t> total_bytes{0};
  uint64_t corrupt_records = 0;
  uint64_t truncated_bytes = 0;
  std::atomic<uint64_t> budget_refusals{0};
  std::atomic<uint64_t> reclaimed_bytes{0};
  std::unique_ptr<ReadTail> tail;  // set in Open from opt.read_tail_records
  // Compression dictionaries (docs/architecture.md, "Compression dictionaries"): those on disk;
  // the dictionary thread makes and deletes them, appending threads compress with the active one.
  std::unique_ptr<DictionaryStore> dicts;
  std::mutex dict_gc_mu;  // the writer's from a body's dictionary check to its segment's record
  // The dictionary thread, started with the first dictionary, and the one it is to make.
  std::mutex dict_mu;
  std::condition_variable dict_cv;
  bool dict_work = false;
  bool dict_stop = false;
  uint64_t dict_id = 0;
  DictionaryMaterial dict_material;
  std::thread dict_thread;
  int meta_format = 0;             // what META says (opening thread, then the dictionary thread)
  bool dict_write_failed = false;  // reported once (the dictionary thread)

  // Writer state (writer thread only, after Open).
  int seg_fd = -1;
  uint64_t seg_first = 0;
  uint64_t seg_size = 0;
  uint64_t seg_file_bytes = 0;  // the current segment's file: seg_size, or more if preallocated
  // The next segment, preallocated (opt.preallocate with fsync). While it is asked for, its
  // bytes are in total_bytes (spare_counted); MakeRoom gives them back before refusing, and no
  // other is asked for until the next roll (spare_held_back).
  std::unique_ptr<SegmentSpare> spare;
  bool spare_counted = false;
  bool spare_held_back = false;
  bool spare_off = false;  // the filesystem cannot take spares (SegmentSpare::Unsupported)
  std::atomic<uint64_t> rolls_without_spare{0};
  Clock::time_point seg_opened;            // when the current segment became the writer's
  std::chrono::microseconds last_fill{0};  // how long the previous one took to fill (0: unknown)
  bool needs_truncate = false;             // a failed write left bytes past seg_size
  uint64_t seq_reserved = 0;               // SEQ's mark: sequences below it may be handed out
  DictionarySampler sampler;
  // Page cache bound (opt.page_cache_bytes): synced bytes still cached, oldest first. The
  // current segment's cached range is [seg_cached_from, seg_size); earlier segments' are listed.
  struct CachedRange {
    uint64_t first;  // segment
    uint64_t from, to;
  };
  std::deque<CachedRange> cached_segments;
  uint64_t seg_cached_from = 0;
  uint64_t cached_bytes = 0;
  struct DedupeEntry {
    uint64_t seq;
    int64_t received_ms;
    uint64_t batch_epoch;
    size_t batch_index;
  };
  std::unordered_map<EventKey, DedupeEntry, KeyHash> dedupe;
  struct OrderEntry {
    EventKey key;
    uint64_t seq;
    int64_t received_ms;
  };
  std::deque<OrderEntry> dedupe_order;  // insertion order; bounded like the map
  std::atomic<uint64_t> dedupe_size{0};
  uint64_t batch_epoch = 0;

  struct Slot {
    AppendResult result;
    size_t dup_of = SIZE_MAX;  // index of the original within this batch
    size_t prefix_off = 0;
    uint32_t prefix_len = 0;
  };
  std::vector<AppendRequest*> batch;
  std::vector<Slot> slots;
  std::vector<size_t> group;  // batch indices written in the current group
  std::string frame_buf;
  std::vector<iovec> iov;
  std::vector<RecordHandle> committed;

  // Queue between Append() callers and the writer.
  std::mutex queue_mu;
  std::condition_variable queue_cv;
  std::vector<AppendRequest*> pending;
  bool stopping = false;
  std::thread writer;

  // The reclaimer: deletes delivered segments ahead of the writer's need (ReclaimTarget).
  std::mutex reclaim_mu;
  std::condition_variable reclaim_cv;
  std::atomic<bool> reclaim_wanted{false};
  bool reclaim_stop = false;
  std::thread reclaimer;

  ~Impl() {
    if (seg_fd >= 0) ::close(seg_fd);
    if (lock_fd >= 0) ::close(lock_fd);
  }

  int64_t Now() const { return opt.now_ms ? opt.now_ms() : SystemNowMs(); }

  Status Recover();
  void MaybeMakeDictionary();
  void DictionaryLoop();
  uint64_t LowestNamedDictionary();
  void DeleteUnnamedDictionaries();
  bool DictionariesOn() const { return opt.compression == Codec::kZstd && opt.dictionaries; }
  Status CheckMeta(bool has_segments, bool* upgrade);
  std::string MetaText(int format) const;
  Status ReserveSeqs(uint64_t until);
  uint64_t DeleteForRoom(uint64_t limit, bool on_writer);
  uint64_t Unlink(const std::vector<std::pair<uint64_t, uint64_t>>& doomed);
  bool MakeRoom(uint64_t need);
  uint64_t ReclaimTarget() const;
  void WakeReclaimer();
  void ReclaimerLoop();
  Status SyncFile(const std::string& path);
  // An existing segment (recovery), a new empty one, or the spare renamed to it.
  enum class SegmentOrigin { kExisting, kNew, kSpare };
  Status OpenSegmentForAppend(uint64_t first, SegmentOrigin origin);
  void StartPreallocating();
  void DropCachedPages();
  // Synced pages are dropped only with fsync (DONTNEED would start writeback of dirty ones).
  bool PageCacheBounded() const { return opt.fsync && opt.page_cache_bytes != 0; }
  void ExpireDedupe(int64_t now);
  void ForgetOldest();
  void RememberKey(const EventKey& key, uint64_t seq, int64_t received_ms, size_t index);
  void WriterLoop();
  // How many waiting events end the group window: a full group.
  size_t WindowEvents() const { return std::min(opt.group_window_events, opt.max_batch_events); }
  void ProcessBatch();
  Status Roll();
  void MaybeMakeSpare();
  void ReleaseSpare();
  bool TruncateToCommitted();
  uint64_t Growth(uint64_t bytes) const;
  void CommitGroup();
  Status WriteAll(size_t total);
  void ReportSize();
};

Status FileJournal::Impl::Recover() {
  if (::mkdir(opt.dir.c_str(), 0755) == 0) {
    // The new directory's entry must survive a crash too.
    const size_t slash = opt.dir.find_last_of('/');
    const std::string parent = slash == std::string::npos ? "." : opt.dir.substr(0, slash);
    if (Status st = SyncDirectory(parent.empty() ? "/" : parent); !st.ok()) return st;
  } else if (errno != EEXIST) {
    return ErrnoStatus("mkdir " + opt.dir, errno);
  }
  const std::string lock_path = opt.dir + "/LOCK";
  lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) return ErrnoStatus("open " + lock_path, errno);
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    return Unavailable("journal " + opt.dir + " is in use by another process (LOCK held)");
  }

  // The dedupe index gets its buckets now: growing it doubles them, and a rehash of 350 000
  // entries on the writer held every answer for ~35 ms (bench/README.md, "Issue 23, sixth
  // round"). Up to 4M entries (32 MiB of buckets); a larger bound grows past that.
  dedupe.reserve(std::min<size_t>(opt.dedupe_max_entries, size_t{4} << 20));
  Result<std::map<uint64_t, std::string>> list = ListSegments(opt.dir);
  if (!list.ok()) return list.status();
  // A spare an earlier run left (preallocation on then) is never read, whatever the mode now.
  ::unlink((opt.dir + "/" + std::string(kSpareName)).c_str());
  bool upgrade_meta = false;
  if (Status st = CheckMeta(!list->empty(), &upgrade_meta); !st.ok()) return st;
  dicts = std::make_unique<DictionaryStore>(opt.dir, opt.compression_level);
  if (Status st = dicts->Load(/*activate=*/DictionariesOn()); !st.ok()) return st;
  Result<uint64_t> seq_mark = ReadSeqMark(opt.dir);
  if (!seq_mark.ok()) return seq_mark.status();
  const int64_t now = Now();
  uint64_t last_seq = 0;
  std::string data;
  for (auto it = list->begin(); it != list->end(); ++it) {
    if (Status r = ReadFile(it->second, UINT64_MAX, &data); !r.ok()) return r;
    bool stopped = false;
    int64_t first_ms = 0;
    uint64_t seg_last = 0;  // this segment's last valid record
    SegmentScan scan = ScanFrames(
        data.data(), data.size(), it->first, opt.partitions, dicts->set(),
        [&](const RecordView& v) {
          if (first_ms == 0) first_ms = v.received_ms;
          seg_last = std::max(seg_last, v.handle.seq);
          last_seq = std::max(last_seq, v.handle.seq);
          if (now - v.received_ms <= opt.dedupe_window_ms) {
            RememberKey(v.key, v.handle.seq, v.received_ms, SIZE_MAX);
          }
          return true;
        },
        &stopped, 0, false, /*bodies=*/false);
    corrupt_records += scan.corrupt_records;
    uint64_t size = data.size();
    const bool last = std::next(it) == list->end();
    // Zeros that preallocation left after the last record (SegmentSpare) were never records:
    // an older segment followed by one named right after its last record (it was rolled), or the
    // newest as a whole preallocated file. Zeros anywhere else count as before.
    const bool preallocated =
        last ? size == opt.segment_bytes : seg_last != 0 && std::next(it)->first == seg_last + 1;
    uint64_t torn_end = size;  // the torn bytes end here; zeros past it are preallocation's
    while (preallocated && scan.torn_tail && torn_end > scan.valid_end && data[torn_end - 1] == 0) {
      --torn_end;
    }
    if (scan.torn_tail && torn_end == scan.valid_end) {
      if (::truncate(it->second.c_str(), static_cast<off_t>(scan.valid_end)) != 0) {
        return ErrnoStatus("truncate " + it->second, errno);
      }
      size = scan.valid_end;
    } else if (scan.torn_tail && !last) {
      // Only the newest segment is being written when a crash happens: invalid bytes at the end
      // of an older one are damage to acknowledged data. Keep them for inspection, count them.
      ++corrupt_records;
      std::fprintf(stderr, "dvrouter: journal segment %s: invalid bytes after offset %llu kept\n",
                   it->second.c_str(), static_cast<unsigned long long>(scan.valid_end));
    } else if (scan.torn_tail) {
      // Bytes after the last valid record were never acknowledged (a crash mid-write): cut them
      // so new records follow valid ones directly.
      truncated_bytes += torn_end - scan.valid_end;
      if (::truncate(it->second.c_str(), static_cast<off_t>(scan.valid_end)) != 0) {
        return ErrnoStatus("truncate " + it->second, errno);
      }
      size = scan.valid_end;
    }
    // What recovery read may have been in the page cache only (a crash between write and
    // fdatasync): make it durable before any of it is treated as journaled (the dedupe index
    // answers 200 for it from now on).
    if (Status sync = SyncFile(it->second); !sync.ok()) return sync;
    segments[it->first] = SegmentInfo{size, first_ms, scan.min_dict};
    total_bytes += size;
  }
  if (Status sync = SyncDirectory(opt.dir); !sync.ok()) return sync;
  next_seq = std::max(last_seq + 1, *seq_mark);
  if (Status st = ReserveSeqs(next_seq + kSeqReserve); !st.ok()) return st;
  // Compressed records may join a format 1 journal from now on: say so before the first one
  // (and only once it opened: a failed start leaves it readable by the version before).
  if (upgrade_meta) {
    if (Status st = WriteFileAtomically(opt.dir, "META", MetaText(2)); !st.ok()) return st;
    meta_format = 2;
  }
  // Dedupe entries were added in sequence order; keep the expiry queue ordered by time.
  std::sort(dedupe_order.begin(), dedupe_order.end(),
            [](const OrderEntry& a, const OrderEntry& b) { return a.received_ms < b.received_ms; });

  if (segments.empty()) return OpenSegmentForAppend(next_seq, SegmentOrigin::kNew);
  return OpenSegmentForAppend(segments.rbegin()->first, SegmentOrigin::kExisting);
}

// META records the format and the partition count the journal was created with: format=1
// frames are all uncompressed; format=2 frames may be compressed; format=3 frames may be
// compressed with a dictionary; format=4 dictionaries may be zstd dictionaries with entropy
// tables (a version that does not know a format refuses the journal instead of reading
// compressed bytes as a body, or skipping what it cannot read). A directory
// with segments but no META is refused: recreating META from the configuration could give the
// records another partition count than the one they were written with.
std::string FileJournal::Impl::MetaText(int format) const {
  return "format=" + std::to_string(format) + "\npartitions=" + std::to_string(opt.partitions) +
         "\n";
}

Status FileJournal::Impl::CheckMeta(bool has_segments, bool* upgrade) {
  const int format = opt.compression == Codec::kNone ? 1 : 2;
  *upgrade = false;
  std::string meta;
  Status st = ReadFile(opt.dir + "/META", 4096, &meta);
  if (st.code() == StatusCode::kNotFound) {
    if (has_segments) {
      return FailedPrecondition("journal " + opt.dir +
                                " holds segments but no META file; refusing to start rather than "
                                "guess the partition count they were written with: restore META "
                                "(\"format=2\\npartitions=<N>\\n\") from a backup");
    }
    meta_format = format;
    return WriteFileAtomically(opt.dir, "META", MetaText(format));
  }
  if (!st.ok()) return st;
  const MetaFields fields = ParseMeta(meta);
  if (fields.format == 0 || meta.find("\npartitions=") == std::string::npos) {
    return InvalidArgument("journal " + opt.dir + "/META is not a dvrouter journal header (" +
                           ReadableMetaFormats() + ")");
  }
  meta_format = fields.format;
  const uint64_t p = fields.partitions;
  if (p != opt.partitions) {
    return InvalidArgument("journal " + opt.dir + " was created with " + std::to_string(p) +
                           " partitions but the configuration says " +
                           std::to_string(opt.partitions) +
                           "; the partition count is fixed when a journal is created");
  }
  *upgrade = fields.format == 1 && format == 2;
  return Status::Ok();
}

Status FileJournal::Impl::ReserveSeqs(uint64_t until) {
  Status st =
      WriteFileAtomically(opt.dir, "SEQ", std::string(kSeqKey) + std::to_string(until) + "\n");
  if (st.ok()) seq_reserved = until;
  return st;
}

// When the sampler says the kinds of event appended have changed, hands the next dictionary's
// material (samples) to the dictionary thread (docs/architecture.md, "Compression dictionaries"),
// unless it is still making the last one. Writer thread, after a batch's callbacks: making one
// takes file syncs the writer's groups must not wait for.
void FileJournal::Impl::MaybeMakeDictionary() {
  if (!sampler.Due()) return;
  {
    std::lock_guard<std::mutex> lock(dict_mu);
    if (dict_work || dict_stop) return;
    // Sequences never go back, also across crashes (SEQ): no id is used twice. A group that
    // failed gives its sequences back: DictionaryLoop checks the id against the newest.
    dict_id = next_seq.load(std::memory_order_relaxed);
    dict_material = sampler.Take();
    dict_work = true;
  }
  dict_cv.notify_one();
  if (!dict_thread.joinable()) dict_thread = std::thread([this] { DictionaryLoop(); });
}

// The dictionary thread (dv-journal-dict): makes each dictionary durable before appending
// threads may compress with it, then deletes those no segment names any longer.
void FileJournal::Impl::DictionaryLoop() {
  SetThreadName("dv-journal-dict");
  for (;;) {
    uint64_t id;
    DictionaryMaterial material;
    {
      std::unique_lock<std::mutex> lock(dict_mu);
      dict_cv.wait(lock, [&] { return dict_work || dict_stop; });
      if (dict_stop) return;
      id = dict_id;
      material = std::move(dict_material);
    }
    // Every dictionary held or listed, the active one among them, has an id up to highest_listed.
    if (!material.content.empty() && id > dicts->highest_listed()) {
      std::string content = DictionaryContent(material, opt.compression_level);
      Status st;
      // A version that reads no dictionaries, or no zstd dictionaries, must refuse the journal,
      // not skip these records.
      const int format = IsZstdDictionary(content) ? 4 : 3;
      if (meta_format < format) {
        st = WriteFileAtomically(opt.dir, "META", MetaText(format));
        if (st.ok()) meta_format = format;
      }
      if (st.ok()) st = dicts->Make(id, std::move(content));
      if (!st.ok() && !dict_write_failed) {
        std::fprintf(stderr,
                     "dvrouter: journal: a compression dictionary could not be written (%s); "
                     "bodies are compressed as before\n",
                     st.ToString().c_str());
        dict_write_failed = true;
      }
      if (st.ok()) DeleteUnnamedDictionaries();
    }
    std::lock_guard<std::mutex> lock(dict_mu);
    dict_work = false;
  }
}

// The lowest dictionary a segment on disk names: retained, or being deleted (its unlink may
// fail, or a crash come first). UINT64_MAX when none does.
uint64_t FileJournal::Impl::LowestNamedDictionary() {
  uint64_t lowest = UINT64_MAX;
  std::lock_guard<std::mutex> lock(state_mu);
  for (const auto& [first, info] : segments) {
    if (info.min_dict != 0) lowest = std::min(lowest, info.min_dict);
  }
  for (const auto& [first, min_dict] : deleting_dicts) lowest = std::min(lowest, min_dict);
  return lowest;
}

// Deletes the dictionaries below the lowest one a segment on disk names, never the current one.
// The directory is synced between the two looks at the segments: the unlinks of segments gone
// before it are then durable (none comes back after a power loss without its dictionaries), and
// those gone after it were seen by the first look. The second look is under dict_gc_mu, which
// the writer holds from checking a body's dictionary to recording it in its segment. Any thread.
void FileJournal::Impl::DeleteUnnamedDictionaries() {
  if (dicts->set().size() == 0) return;
  const uint64_t before_sync = LowestNamedDictionary();
  if (!SyncDirectory(opt.dir).ok()) return;  // tried again after the next deletion
  // Turned off, no body is compressed with a dictionary any more: nothing to wait for (and the
  // writer may be the caller, MakeRoom's).
  std::unique_lock<std::mutex> gc(dict_gc_mu, std::defer_lock);
  if (DictionariesOn()) gc.lock();
  dicts->DeleteBelow(std::min(before_sync, LowestNamedDictionary()));
}

Status FileJournal::Impl::SyncFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open " + path, errno);
  const int rc = io->Fdatasync(fd);
  const int err = errno;
  ::close(fd);
  return rc == 0 ? Status::Ok() : ErrnoStatus("fdatasync " + path + " during recovery", err);
}

Status FileJournal::Impl::OpenSegmentForAppend(uint64_t first, SegmentOrigin origin) {
  const std::string path = opt.dir + "/" + SegmentName(first);
  const int flags = O_WRONLY | O_CLOEXEC | (origin == SegmentOrigin::kNew ? O_CREAT | O_EXCL : 0);
  int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) {
    const int err = errno;
    if (origin == SegmentOrigin::kSpare) ::unlink(path.c_str());
    return ErrnoStatus("open " + path, err);
  }
  // A segment this call made (new, or the spare renamed) is not left behind by a failure.
  const auto fail = [&](Status st) {
    ::close(fd);
    if (origin != SegmentOrigin::kExisting) ::unlink(path.c_str());
    return st;
  };
  if (origin != SegmentOrigin::kExisting) {
    if (Status st = SyncDirectory(opt.dir); !st.ok()) return fail(st);
  }
  struct stat sb {};
  if (::fstat(fd, &sb) != 0) return fail(ErrnoStatus("fstat " + path, errno));
  // A spare's zeros are not records: writes start at its beginning (no O_APPEND).
  const uint64_t file_bytes = static_cast<uint64_t>(sb.st_size);
  const uint64_t records = origin == SegmentOrigin::kSpare ? 0 : file_bytes;
  if (::lseek(fd, static_cast<off_t>(records), SEEK_SET) < 0) {
    return fail(ErrnoStatus("lseek " + path, errno));
  }
  if (seg_fd >= 0) {
    // Listed only while the bound is in force (otherwise nothing would ever take them off).
    if (PageCacheBounded() && seg_size > seg_cached_from)
      cached_segments.push_back({seg_first, seg_cached_from, seg_size});
    ::close(seg_fd);
  }
  seg_fd = fd;
  seg_first = first;
  seg_opened = Clock::now();
  seg_file_bytes = file_bytes;
  seg_size = records;
  seg_cached_from = 0;
  cached_bytes += seg_size;  // recovery has just read it
  std::lock_guard<std::mutex> lock(state_mu);
  segments.try_emplace(first, SegmentInfo{seg_size, 0});
  return Status::Ok();
}

void FileJournal::Impl::RememberKey(const EventKey& key, uint64_t seq, int64_t received_ms,
                                    size_t index) {
  dedupe.insert_or_assign(key, DedupeEntry{seq, received_ms, batch_epoch, index});
  dedupe_order.push_back(OrderEntry{key, seq, received_ms});
  // Bound both the map and the queue: the queue also holds entries of keys that were refreshed
  // or whose append failed.
  while (!dedupe_order.empty() && (dedupe.size() > opt.dedupe_max_entries ||
                                   dedupe_order.size() > 2 * opt.dedupe_max_entries)) {
    ForgetOldest();
  }
  dedupe_size.store(dedupe.size(), std::memory_order_relaxed);
}

void FileJournal::Impl::ForgetOldest() {
  const OrderEntry& oldest = dedupe_order.front();
  // Erase only the entry this queue slot created, not a later record with the same key.
  auto it = dedupe.find(oldest.key);
  if (it != dedupe.end() && it->second.seq == oldest.seq) dedupe.erase(it);
  dedupe_order.pop_front();
}

void FileJournal::Impl::ExpireDedupe(int64_t now) {
  while (!dedupe_order.empty() && now - dedupe_order.front().received_ms > opt.dedupe_window_ms) {
    ForgetOldest();
  }
  dedupe_size.store(dedupe.size(), std::memory_order_relaxed);
}

void FileJournal::Impl::WriterLoop() {
  SetThreadName("dv-journal");
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(queue_mu);
      queue_cv.wait(lock, [&] { return !pending.empty() || stopping; });
      if (pending.empty()) return;
      if (opt.group_window_us > 0 && !stopping && pending.size() < WindowEvents()) {
        // A group would be the few events that woke the writer: wait for more, so the per-group
        // costs (write, fdatasync, wake-ups) are paid less often, until the window ends or a
        // full group waits (Append wakes the writer then; docs/architecture.md, "Group commit").
        queue_cv.wait_for(lock, std::chrono::microseconds(opt.group_window_us),
                          [&] { return pending.size() >= WindowEvents() || stopping; });
      }
      if (pending.size() <= opt.max_batch_events) {
        batch.swap(pending);
      } else {
        auto cut = pending.begin() + static_cast<std::ptrdiff_t>(opt.max_batch_events);
        batch.assign(pending.begin(), cut);
        pending.erase(pending.begin(), cut);
      }
    }
    ProcessBatch();
    batch.clear();
  }
}

void FileJournal::Impl::ProcessBatch() {
  // No dictionary goes between a body's check below and its segment's record of it (CommitGroup).
  std::unique_lock<std::mutex> gc(dict_gc_mu, std::defer_lock);
  if (DictionariesOn()) gc.lock();
  const int64_t now = Now();
  ExpireDedupe(now);
  ++batch_epoch;
  slots.assign(batch.size(), Slot{});
  group.clear();
  frame_buf.clear();
  size_t group_bytes = 0;  // frames in `group`, not yet written
  // Every sequence this batch may hand out is reserved durably first (see kSeqReserve).
  const uint64_t first_seq = next_seq.load(std::memory_order_relaxed);
  if (first_seq + batch.size() > seq_reserved) {
    if (Status st = ReserveSeqs(first_seq + batch.size() + kSeqReserve); !st.ok()) {
      for (Slot& slot : slots) slot.result.status = st;
      if (opt.observer) opt.observer->OnRefused(st);
      for (size_t i = 0; i < batch.size(); ++i) batch[i]->callback->OnAppendDone(slots[i].result);
      return;
    }
  }

  for (size_t i = 0; i < batch.size(); ++i) {
    AppendRequest* req = batch[i];
    Slot& slot = slots[i];
    if (auto it = dedupe.find(req->key);
        it != dedupe.end() && now - it->second.received_ms <= opt.dedupe_window_ms) {
      slot.result.duplicate = true;
      slot.result.seq = it->second.seq;
      if (it->second.batch_epoch == batch_epoch) slot.dup_of = it->second.batch_index;
      continue;
    }
    if (needs_truncate) {
      if (!TruncateToCommitted()) {
        slot.result.status = ErrnoStatus("truncate journal segment after failed write", errno);
        continue;
      }
      needs_truncate = false;
    }
    if (req->stored.dict_id != 0 && !dicts->Find(req->stored.dict_id)) {
      // Its dictionary was deleted after this body was compressed with it
      // (DeleteUnnamedDictionaries): no record may name a dictionary the journal lacks.
      const std::shared_ptr<const BodyDictionary> active = dicts->Active();
      journal::CompressBody(req->body, opt.compression_level, active.get(), &req->stored);
    }
    // Encode first to know the exact frame size; undo if the budget refuses it.
    const size_t prefix_off = frame_buf.size();
    journal::FrameMeta meta{next_seq.load(std::memory_order_relaxed),
                            req->received_ms,
                            req->key,
                            req->partition,
                            req->stored.codec,
                            static_cast<uint32_t>(req->body.size()),
                            req->stored.dict_id,
                            req->stored.dict_check};
    const std::string_view stored = Stored(*req);
    const uint32_t len = journal::EncodeFramePrefix(meta, *req->header, stored, &frame_buf);
    if (len - journal::kFrameHeaderBytes > journal::kMaxPayloadBytes ||
        req->body.size() > journal::kMaxPayloadBytes) {
      // Recovery would refuse such a frame: never acknowledge what cannot be read back.
      frame_buf.resize(prefix_off);
      slot.result.status = InvalidArgument("event larger than the journal's frame limit");
      continue;
    }
    // Status records (the write-back's) are admitted beyond the budget: a source's saved cursor
    // waits for them, and with it everything the budget could free (docs/architecture.md,
    // "Journal budget and retention"). They are small, and deleted with the rest.
    if (!req->header->status_record &&
        total_bytes.load(std::memory_order_relaxed) + Growth(group_bytes + len) >
            opt.disk_budget_bytes &&
        !MakeRoom(Growth(group_bytes + len))) {
      frame_buf.resize(prefix_off);
      budget_refusals.fetch_add(1, std::memory_order_relaxed);
      slot.result.status =
          ResourceExhausted("journal disk budget of " + std::to_string(opt.disk_budget_bytes) +
                            " bytes is full of events some adapter has not finished");
      continue;
    }
    if (seg_size + group_bytes + len > opt.segment_bytes && seg_size + group_bytes > 0) {
      // Commit what precedes this record into the current segment, then start a new one. The
      // prefix just encoded stays in frame_buf past the group's bytes: move it aside.
      std::string held = frame_buf.substr(prefix_off);
      frame_buf.resize(prefix_off);
      CommitGroup();
      group_bytes = 0;
      if (Status st = Roll(); !st.ok()) {
        slot.result.status = st;
        continue;
      }
      frame_buf = std::move(held);
      // The group may have failed and given back its sequence numbers: re-encode.
      if (meta.seq != next_seq.load(std::memory_order_relaxed)) {
        frame_buf.clear();
        meta.seq = next_seq.load(std::memory_order_relaxed);
        journal::EncodeFramePrefix(meta, *req->header, stored, &frame_buf);
      }
      slot.prefix_off = 0;
      slot.prefix_len = static_cast<uint32_t>(frame_buf.size());
    } else {
      slot.prefix_off = prefix_off;
      slot.prefix_len = static_cast<uint32_t>(frame_buf.size() - prefix_off);
    }
    slot.result.seq = meta.seq;
    next_seq.store(meta.seq + 1, std::memory_order_relaxed);
    RememberKey(req->key, meta.seq, req->received_ms, i);
    group.push_back(i);
    group_bytes += len;
    if (DictionariesOn() && !req->header->status_record) {
      sampler.Observe(req->header->primary_entity_name, req->header->message_name, req->body);
    }
  }
  CommitGroup();

  for (size_t i = 0; i < batch.size(); ++i) {
    Slot& slot = slots[i];
    if (slot.dup_of != SIZE_MAX) slot.result.status = slots[slot.dup_of].result.status;
    batch[i]->callback->OnAppendDone(slot.result);
  }
  if (DictionariesOn()) MaybeMakeDictionary();
}

Status FileJournal::Impl::WriteAll(size_t total) {
  size_t done = 0;
  size_t first = 0;
  while (done < total) {
    // The next at most kMaxWriteBytes of the group, the last iovec cut to fit.
    size_t count = 0, bytes = 0;
    while (first + count < iov.size() && count < IOV_MAX && bytes < kMaxWriteBytes) {
      bytes += iov[first + count++].iov_len;
    }
    const iovec last = iov[first + count - 1];
    if (bytes > kMaxWriteBytes) iov[first + count - 1].iov_len -= bytes - kMaxWriteBytes;
    ssize_t n = io->Writev(seg_fd, iov.data() + first, static_cast<int>(count));
    iov[first + count - 1] = last;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("write journal segment " + SegmentName(seg_first), errno);
    if (n == 0) return ErrnoStatus("write journal segment " + SegmentName(seg_first), EIO);
    done += static_cast<size_t>(n);
    // Advance past fully written iovecs; trim a partly written one.
    size_t left = static_cast<size_t>(n);
    while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (left > 0) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return Status::Ok();
}

void FileJournal::Impl::CommitGroup() {
  if (group.empty()) return;
  iov.clear();
  committed.clear();
  size_t total = 0;
  uint64_t offset = seg_size;
  uint64_t min_dict = 0;
  for (size_t i : group) {
    const Slot& slot = slots[i];
    const uint64_t dict = batch[i]->stored.dict_id;
    if (dict != 0 && (min_dict == 0 || dict < min_dict)) min_dict = dict;
    iov.push_back({frame_buf.data() + slot.prefix_off, slot.prefix_len});
    const std::string_view stored = Stored(*batch[i]);
    iov.push_back({const_cast<char*>(stored.data()), stored.size()});
    const uint32_t len = static_cast<uint32_t>(slot.prefix_len + stored.size());
    committed.push_back(RecordHandle{slot.result.seq, seg_first, offset, len, batch[i]->partition});
    offset += len;
    total += len;
  }
  auto start = Clock::now();
  Status st = WriteAll(total);
  if (opt.observer && st.ok()) opt.observer->OnWrite(SecondsSince(start), total);
  if (st.ok() && opt.fsync) {
    start = Clock::now();
    if (io->Fdatasync(seg_fd) != 0) {
      st = ErrnoStatus("fdatasync journal segment " + SegmentName(seg_first), errno);
    } else if (opt.observer) {
      opt.observer->OnSync(SecondsSince(start), group.size());
    }
  }
  if (!st.ok()) {
    // Nothing of this group is acknowledged: cut whatever reached the file and give the
    // sequence numbers back, so the next group starts on a clean record boundary.
    if (!TruncateToCommitted()) needs_truncate = true;
    next_seq.store(slots[group.front()].result.seq, std::memory_order_relaxed);
    for (size_t i : group) {
      slots[i].result.status = st;
      dedupe.erase(batch[i]->key);
    }
    dedupe_size.store(dedupe.size(), std::memory_order_relaxed);
    if (opt.observer) opt.observer->OnRefused(st);
  } else {
    const uint64_t grown = Growth(total);
    seg_size += total;
    seg_file_bytes = std::max(seg_file_bytes, seg_size);
    if (total_bytes.fetch_add(grown, std::memory_order_relaxed) + grown > ReclaimTarget() &&
        reclaimer.joinable()) {
      WakeReclaimer();
    }
    MaybeMakeSpare();
    cached_bytes += total;
    DropCachedPages();
    {
      std::lock_guard<std::mutex> lock(state_mu);
      SegmentInfo& info = segments[seg_first];
      info.bytes = seg_size;
      if (info.first_ms == 0) info.first_ms = batch[group.front()]->received_ms;
      if (min_dict != 0 && (info.min_dict == 0 || min_dict < info.min_dict)) {
        info.min_dict = min_dict;
      }
    }
    // Durable now: readers may have their plain frames (before the listener hands out handles).
    if (tail) tail->Put(committed, group, batch);
    if (opt.listener) {
      for (const RecordHandle& h : committed) opt.listener->OnCommitted(h);
      opt.listener->OnGroupCommitted();
    }
    ReportSize();
  }
  group.clear();
  frame_buf.clear();
}

// Deletes the oldest segments every reader is done with (below the listener's
// ReclaimableBelow) until the journal holds at most `limit` bytes: delivered history yields to
// new events. Unlinks without syncing the directory: a segment that reappears after a power loss
// is only history, deleted again. The newest segment (the writer's) always stays.
uint64_t FileJournal::Impl::DeleteForRoom(uint64_t limit, bool on_writer) {
  const auto start = Clock::now();
  std::vector<std::pair<uint64_t, uint64_t>> doomed;  // first seq, bytes
  {
    std::lock_guard<std::mutex> lock(state_mu);
    // Asked under the lock Scan snapshots under: a reader that lowers the floor and then finds
    // its start retained keeps it.
    const uint64_t below = opt.listener ? opt.listener->ReclaimableBelow() : 0;
    uint64_t total = total_bytes.load(std::memory_order_relaxed);
    for (auto it = segments.begin(); total > limit;) {
      auto next = std::next(it);
      // A segment's records end where the next one begins.
      if (next == segments.end() || next->first > below) break;
      total -= std::min(total, it->second.OnDisk());
      doomed.emplace_back(it->first, it->second.OnDisk());
      deleting_bytes += it->second.OnDisk();
      if (it->second.min_dict != 0) deleting_dicts[it->first] = it->second.min_dict;
      read_fds.erase(it->first);
      it = segments.erase(it);
    }
  }
  const uint64_t freed = Unlink(doomed);
  // With dictionaries on, the dictionary thread deletes them after making the next.
  if (freed > 0 && !DictionariesOn()) DeleteUnnamedDictionaries();
  if (freed > 0) {
    reclaimed_bytes.fetch_add(freed, std::memory_order_relaxed);
    if (opt.observer) opt.observer->OnReclaimed(SecondsSince(start), freed, on_writer);
    ReportSize();
  }
  return freed;
}

// Unlinks segments already taken out of `segments` (their bytes in deleting_bytes) and stops
// counting them. A segment that cannot be unlinked stays counted (the disk still holds it) until
// a restart lists it again. Returns the bytes freed.
uint64_t FileJournal::Impl::Unlink(const std::vector<std::pair<uint64_t, uint64_t>>& doomed) {
  uint64_t freed = 0;
  for (const auto& [first, bytes] : doomed) {
    const std::string path = opt.dir + "/" + SegmentName(first);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      std::fprintf(stderr, "dvrouter: journal: unlink %s: %s (its %llu bytes stay counted)\n",
                   path.c_str(), std::strerror(errno), static_cast<unsigned long long>(bytes));
    } else {
      total_bytes.fetch_sub(bytes, std::memory_order_relaxed);
      freed += bytes;
      std::lock_guard<std::mutex> lock(state_mu);
      deleting_dicts.erase(first);
    }
  }
  if (!doomed.empty()) {
    std::lock_guard<std::mutex> lock(state_mu);
    for (const auto& d : doomed) deleting_bytes -= d.second;
    deleted_cv.notify_all();
  }
  return freed;
}

// On the writer, when an append does not fit: normally the reclaimer has made room already.
// Segments another thread is deleting right now count as room once they are gone: the writer
// waits for that (an unlink) rather than refusing, or deleting more history than it needs.
bool FileJournal::Impl::MakeRoom(uint64_t need) {
  if (need > opt.disk_budget_bytes) return false;
  for (;;) {
    DeleteForRoom(opt.disk_budget_bytes - need, /*on_writer=*/true);
    if (total_bytes.load(std::memory_order_relaxed) + need <= opt.disk_budget_bytes) return true;
    if (spare_counted) {  // events before zeros: the spare goes, and no other until the next roll
      ReleaseSpare();
      spare_held_back = true;
      continue;
    }
    std::unique_lock<std::mutex> lock(state_mu);
    if (deleting_bytes == 0) return false;
    deleted_cv.wait(lock, [&] { return deleting_bytes == 0; });
  }
}

// Past the low-water mark (the budget less one segment, or a quarter of it), the writer wakes
// the reclaimer, which deletes delivered segments ahead of need: deleting a file whose pages are
// cached takes milliseconds, several group commits' worth, and must not happen on the writer.
uint64_t FileJournal::Impl::ReclaimTarget() const {
  return opt.disk_budget_bytes - std::min(opt.segment_bytes, opt.disk_budget_bytes / 4);
}

void FileJournal::Impl::WakeReclaimer() {
  if (!reclaim_wanted.exchange(true, std::memory_order_acq_rel)) {
    std::lock_guard<std::mutex> lock(reclaim_mu);
    reclaim_cv.notify_one();
  }
}

void FileJournal::Impl::ReclaimerLoop() {
  SetThreadName("dv-journal-gc");
  std::unique_lock<std::mutex> lock(reclaim_mu);
  for (;;) {
    reclaim_cv.wait(lock, [&] { return reclaim_stop || reclaim_wanted.load(); });
    if (reclaim_stop) return;
    reclaim_wanted.store(false, std::memory_order_release);
    lock.unlock();
    DeleteForRoom(ReclaimTarget(), /*on_writer=*/false);
    lock.lock();
    // Still above the mark: the rest is undelivered. Ask the readers again in a while, not at
    // every group commit.
    if (total_bytes.load(std::memory_order_relaxed) > ReclaimTarget()) {
      reclaim_cv.wait_for(lock, std::chrono::milliseconds(20), [&] { return reclaim_stop; });
    }
  }
}

// Keeps the journal's page cache near opt.page_cache_bytes. Without this the page cache grows
// with every byte journaled until the kernel reclaims it under pressure, evicting other
// processes' pages (a database on the same host) before the journal's; and on a VM whose host
// backs guest memory lazily, each fresh page-cache page costs a host fault on first write
// (bench/README.md). Only synced pages are dropped (DONTNEED would start writeback of dirty
// ones instead), so this runs with fsync only. Readers of older records (a delivery backlog,
// replays) read them from the disk.
void FileJournal::Impl::DropCachedPages() {
  static constexpr uint64_t kStep = 8ull << 20;  // one fadvise per 8 MiB journaled
  if (!PageCacheBounded() || cached_bytes < kStep ||
      cached_bytes - kStep < opt.page_cache_bytes) {  // (no overflow near UINT64_MAX)
    return;
  }
  uint64_t excess = cached_bytes - opt.page_cache_bytes;
  while (excess > 0 && !cached_segments.empty()) {
    CachedRange& r = cached_segments.front();
    const uint64_t n = std::min(excess, r.to - r.from);
    // A segment retention already deleted has no pages left to drop.
    const int fd = ::open((opt.dir + "/" + SegmentName(r.first)).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ::posix_fadvise(fd, static_cast<off_t>(r.from), static_cast<off_t>(n), POSIX_FADV_DONTNEED);
      ::close(fd);
    }
    r.from += n;
    excess -= n;
    cached_bytes -= n;
    if (r.from == r.to) cached_segments.pop_front();
  }
  if (excess > 0) {
    const uint64_t n = std::min(excess, seg_size - seg_cached_from);
    ::posix_fadvise(seg_fd, static_cast<off_t>(seg_cached_from), static_cast<off_t>(n),
                    POSIX_FADV_DONTNEED);
    seg_cached_from += n;
    cached_bytes -= n;
  }
}

Status FileJournal::Impl::Roll() {
  if (needs_truncate) return Unavailable("journal segment could not be truncated after a failure");
  if (seg_size == 0) return Status::Ok();  // the current segment is still empty
  // The old segment's records were all synced by CommitGroup; the zeros after them go.
  if (seg_file_bytes > seg_size) {
    if (io->Ftruncate(seg_fd, static_cast<off_t>(seg_size)) == 0) {
      total_bytes.fetch_sub(seg_file_bytes - seg_size, std::memory_order_relaxed);
      seg_file_bytes = seg_size;
    } else {
      // The zeros stay on disk, and in the budget until the segment is deleted.
      std::fprintf(stderr, "dvrouter: journal: truncate %s to its records: %s\n",
                   SegmentName(seg_first).c_str(), std::strerror(errno));
      std::lock_guard<std::mutex> lock(state_mu);
      segments[seg_first].file_bytes = seg_file_bytes;
    }
  }
  last_fill = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - seg_opened);
  const uint64_t first = next_seq.load(std::memory_order_relaxed);
  bool from_spare = false;
  if (spare_counted) {
    Result<bool> taken = spare->TakeAs(opt.dir + "/" + SegmentName(first));
    from_spare = taken.ok() && *taken;
    if (!taken.ok()) {
      // A filesystem that cannot rename without replacing gets no more spares.
      spare_off = spare->Unsupported();
      std::fprintf(stderr, "dvrouter: journal: preallocated segment not used: %s%s\n",
                   taken.status().ToString().c_str(), spare_off ? " (preallocation off)" : "");
    }
    if (!from_spare && !spare->Pending()) ReleaseSpare();  // it failed: its bytes come back
  }
  if (spare && !from_spare) rolls_without_spare.fetch_add(1, std::memory_order_relaxed);
  Status st = OpenSegmentForAppend(first, from_spare ? SegmentOrigin::kSpare : SegmentOrigin::kNew);
  if (from_spare) {
    spare_counted = false;  // its bytes are the new segment's now (or gone with it)
    if (!st.ok()) total_bytes.fetch_sub(opt.segment_bytes, std::memory_order_relaxed);
  }
  spare_held_back = false;
  if (st.ok()) ReportSize();
  return st;
}

// While preallocating: the spare is asked for as soon as the budget has room for it. Without
// room the reclaimer is woken: delivered history yields to the spare as to new events.
void FileJournal::Impl::MaybeMakeSpare() {
  if (!spare || spare_off || spare_counted || spare_held_back) return;
  const uint64_t total = total_bytes.load(std::memory_order_relaxed);
  if (total + opt.segment_bytes > opt.disk_budget_bytes) {
    // Only when the reclaimer has work (above its mark): not at every commit for nothing.
    if (reclaimer.joinable() && total > ReclaimTarget()) WakeReclaimer();
    return;
  }
  total_bytes.fetch_add(opt.segment_bytes, std::memory_order_relaxed);
  spare_counted = true;
  // Its zeros are spread over half the time the last segment took to fill (at most 10 s), so
  // that they share the disk with the journal's syncs instead of holding them up. The first
  // (no fill measured yet) goes as fast as its written-out 256 KiB writes allow.
  spare->Make(std::min<std::chrono::microseconds>(last_fill / 2, std::chrono::seconds(10)));
}

// The spare's bytes leave the budget: it failed, or MakeRoom needs them for events.
void FileJournal::Impl::ReleaseSpare() {
  spare->Discard();
  total_bytes.fetch_sub(opt.segment_bytes, std::memory_order_relaxed);
  spare_counted = false;
}

// On the opening thread: a new (empty) segment is preallocated in place (about 40 ms per 64 MiB
// here, before the first append), and the next one is begun in the background.
void FileJournal::Impl::StartPreallocating() {
  spare =
      std::make_unique<SegmentSpare>(opt.dir + "/" + std::string(kSpareName), opt.segment_bytes);
  if (seg_size == 0 && seg_file_bytes == 0 &&
      total_bytes.load(std::memory_order_relaxed) + 2 * opt.segment_bytes <=
          opt.disk_budget_bytes) {
    const Status st =
        WriteZeros(seg_fd, opt.segment_bytes, {}, opt.dir + "/" + SegmentName(seg_first));
    if (st.ok()) {
      seg_file_bytes = opt.segment_bytes;
      total_bytes.fetch_add(seg_file_bytes, std::memory_order_relaxed);
    } else if (io->Ftruncate(seg_fd, 0) != 0) {
      needs_truncate = true;
    }
  }
  MaybeMakeSpare();
}

// Cuts the current segment back to its committed records after a failed write, the zeros of a
// preallocated one with them: what a failed write left among zeros cannot be told from records.
bool FileJournal::Impl::TruncateToCommitted() {
  if (io->Ftruncate(seg_fd, static_cast<off_t>(seg_size)) != 0) return false;
  if (::lseek(seg_fd, static_cast<off_t>(seg_size), SEEK_SET) < 0) return false;
  if (seg_file_bytes > seg_size) {
    total_bytes.fetch_sub(seg_file_bytes - seg_size, std::memory_order_relaxed);
    seg_file_bytes = seg_size;
  }
  return true;
}

// How much the journal's files grow when `bytes` more are written to the current segment.
uint64_t FileJournal::Impl::Growth(uint64_t bytes) const {
  return seg_size + bytes > seg_file_bytes ? seg_size + bytes - seg_file_bytes : 0;
}

void FileJournal::Impl::ReportSize() {
  if (!opt.observer) return;
  uint64_t count;
  {
    std::lock_guard<std::mutex> lock(state_mu);
    count = segments.size();
  }
  opt.observer->OnSize(total_bytes.load(std::memory_order_relaxed), count);
}

FileJournal::FileJournal(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

FileJournal::~FileJournal() { Stop(); }

Result<std::unique_ptr<FileJournal>> FileJournal::Open(FileJournalOptions options) {
  if (options.dir.empty()) return InvalidArgument("journal directory is empty");
  if (options.partitions == 0) return InvalidArgument("journal partitions must be at least 1");
  if (options.max_batch_events == 0) options.max_batch_events = 1;
  if (options.group_window_events == 0) options.group_window_events = 1;
  auto impl = std::make_unique<Impl>();
  impl->opt = std::move(options);
  impl->sampler = DictionarySampler(impl->opt.dictionary);
  impl->io = impl->opt.io ? impl->opt.io : JournalIo::Default();
  if (Status st = impl->Recover(); !st.ok()) return st;
  if (impl->opt.preallocate && impl->opt.fsync) impl->StartPreallocating();
  impl->ReportSize();
  // Only a journal whose commits someone follows keeps a read tail: the listener's readers.
  if (impl->opt.listener && impl->opt.read_tail_records > 0) {
    impl->tail = std::make_unique<ReadTail>(impl->opt.read_tail_records);
  }
  Impl* raw = impl.get();
  impl->writer = std::thread([raw] { raw->WriterLoop(); });
  if (impl->opt.listener) impl->reclaimer = std::thread([raw] { raw->ReclaimerLoop(); });
  return std::unique_ptr<FileJournal>(new FileJournal(std::move(impl)));
}

void FileJournal::Append(AppendRequest* request) {
  if (impl_->opt.compression == Codec::kZstd) {
    std::shared_ptr<const BodyDictionary> dict;
    if (impl_->DictionariesOn()) dict = impl_->dicts->Active();
    journal::CompressBody(request->body, impl_->opt.compression_level, dict.get(),
                          &request->stored);
  } else {
    request->stored.codec = Codec::kNone;
    request->stored.dict_id = 0;
  }
  // The frame a delivery worker will read right after the commit, built from the body at hand
  // (the read tail). Room for simdjson's padding past it: readers parse the body in place.
  if (impl_->tail && request->body.size() + 4096 <= ReadTail::kMaxTailFrame) {
    // Buffers go round (request, tail, reader, back to the tail and to a request): one room for
    // the common body sizes (7-14 KB here) saves growing a smaller one for a larger body.
    if (request->body.size() >= ReadTail::kMinFrameCapacity / 4 &&
        request->plain_frame.capacity() < ReadTail::kMinFrameCapacity) {
      request->plain_frame.reserve(ReadTail::kMinFrameCapacity);
    }
    const journal::FrameMeta meta{
        0, request->received_ms, request->key, request->partition, Codec::kNone, 0};
    journal::EncodeUnsealedFrame(meta, *request->header, request->body, kReadSlack,
                                 &request->plain_frame);
  } else {
    request->plain_frame.clear();
  }
  if (request->plain_frame.capacity() > ReadTail::kMaxTailFrame) {
    std::string().swap(request->plain_frame);
  }
  {
    std::lock_guard<std::mutex> lock(impl_->queue_mu);
    if (!impl_->stopping) {
      impl_->pending.push_back(request);
      // The writer waits for the first event, then (in the group window) for a full group: the
      // appends in between do not wake it.
      const size_t n = impl_->pending.size();
      if (n == 1 || n == impl_->WindowEvents()) impl_->queue_cv.notify_one();
      return;
    }
  }
  AppendResult refused;
  refused.status = Unavailable("journal is stopping");
  request->callback->OnAppendDone(refused);
}

void FileJournal::Stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->queue_mu);
    impl_->stopping = true;
  }
  impl_->queue_cv.notify_all();
  if (!impl_->writer.joinable()) return;
  impl_->writer.join();
  if (impl_->spare_counted) impl_->ReleaseSpare();  // an unused spare is removed
  {
    std::lock_guard<std::mutex> lock(impl_->dict_mu);
    impl_->dict_stop = true;
  }
  impl_->dict_cv.notify_all();
  if (impl_->dict_thread.joinable()) impl_->dict_thread.join();
  if (impl_->reclaimer.joinable()) {
    {
      std::lock_guard<std::mutex> lock(impl_->reclaim_mu);
      impl_->reclaim_stop = true;
    }
    impl_->reclaim_cv.notify_all();
    impl_->reclaimer.join();
  }
  // A clean stop resumes at the exact next sequence (no reserved range skipped).
  const uint64_t next = impl_->next_seq.load(std::memory_order_relaxed);
  if (Status st = impl_->ReserveSeqs(next); !st.ok()) {
    std::fprintf(stderr, "dvrouter: journal: %s (the next start skips reserved sequences)\n",
                 st.ToString().c_str());
  }
}

JournalStats FileJournal::Stats() const {
  JournalStats s;
  s.next_seq = impl_->next_seq.load(std::memory_order_relaxed);
  s.bytes = impl_->total_bytes.load(std::memory_order_relaxed);
  s.dedupe_entries = impl_->dedupe_size.load(std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(impl_->queue_mu);
    s.pending = impl_->pending.size();
  }
  s.budget_bytes = impl_->opt.disk_budget_bytes;
  s.budget_refusals = impl_->budget_refusals.load(std::memory_order_relaxed);
  s.reclaimed_bytes = impl_->reclaimed_bytes.load(std::memory_order_relaxed);
  if (impl_->tail) s.tail_reads = impl_->tail->reads();
  // (spare is set before the writer starts and kept until the journal is destroyed)
  s.spare_ready = impl_->spare && impl_->spare->Ready();
  s.rolls_without_spare = impl_->rolls_without_spare.load(std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(impl_->state_mu);
  s.segments = impl_->segments.size();
  s.corrupt_records = impl_->corrupt_records;
  s.truncated_bytes = impl_->truncated_bytes;
  for (const auto& [first, info] : impl_->segments) {
    if (info.first_ms != 0) {
      s.oldest_received_ms = info.first_ms;
      break;
    }
  }
  return s;
}

uint64_t FileJournal::BytesFrom(uint64_t seq) const {
  std::lock_guard<std::mutex> lock(impl_->state_mu);
  uint64_t bytes = 0;
  for (auto it = impl_->segments.rbegin(); it != impl_->segments.rend(); ++it) {
    bytes += it->second.bytes;
    if (it->first <= seq) break;  // the segment that holds `seq`
  }
  return bytes;
}

Status FileJournal::Scan(uint64_t from_seq, const std::function<bool(const RecordView&)>& fn,
                         ScanHint hint) {
  std::vector<std::pair<uint64_t, uint64_t>> snapshot;  // first seq, committed bytes
  {
    std::lock_guard<std::mutex> lock(impl_->state_mu);
    for (const auto& [first, info] : impl_->segments) snapshot.emplace_back(first, info.bytes);
  }
  const bool hinted = std::any_of(snapshot.begin(), snapshot.end(),
                                  [&](const auto& s) { return s.first == hint.segment; });
  for (size_t i = 0; i < snapshot.size(); ++i) {
    // Skip segments that end before from_seq (the next one starts at or below it), and in a
    // hinted scan those before the hint's.
    if (i + 1 < snapshot.size() && snapshot[i + 1].first <= from_seq) continue;
    if (hinted && snapshot[i].first < hint.segment) continue;
    const uint64_t start = hinted && snapshot[i].first == hint.segment ? hint.offset : 0;
    const std::string path = impl_->opt.dir + "/" + SegmentName(snapshot[i].first);
    bool stopped = false;
    Status st = ScanSegment(
        path, snapshot[i].first, impl_->opt.partitions, impl_->dicts->set(), start,
        snapshot[i].second, [&](const RecordView& v) { return v.handle.seq < from_seq || fn(v); },
        &stopped);
    if (!st.ok()) {
      if (st.code() == StatusCode::kNotFound) {
        return NotFound("journal segment " + SegmentName(snapshot[i].first) +
                        " was removed by retention");
      }
      return st;
    }
    if (stopped) break;
  }
  return Status::Ok();
}

Status FileJournal::Read(const RecordHandle& handle, std::string* buffer, EventHeader* header,
                         RecordView* out) {
  std::shared_ptr<ReadFd> fd;
  {
    std::lock_guard<std::mutex> lock(impl_->state_mu);
    auto seg = impl_->segments.find(handle.segment);
    if (seg == impl_->segments.end()) {
      return NotFound("journal record " + std::to_string(handle.seq) + " is no longer retained");
    }
    if (handle.offset + handle.length > seg->second.bytes) {
      return InvalidArgument("journal record " + std::to_string(handle.seq) +
                             " lies past the committed end of its segment");
    }
    auto& slot = impl_->read_fds[handle.segment];
    if (!slot) {
      const std::string path = impl_->opt.dir + "/" + SegmentName(handle.segment);
      int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (raw < 0) return ErrnoStatus("open " + path, errno);
      slot = std::make_shared<ReadFd>(raw);
    }
    fd = slot;
  }
  // Spare capacity the caller reserved past the frame (simdjson's padding): kept past the body,
  // up to a bound (a reused buffer's capacity is not a request).
  constexpr size_t kMaxSlack = 4096;
  const size_t slack = std::min(
      kMaxSlack, buffer->capacity() > handle.length ? buffer->capacity() - handle.length : 0);
  uint32_t target_offset = 0, target_length = 0;
  if (impl_->tail && impl_->tail->Take(handle.seq, buffer, &target_offset, &target_length)) {
    // Committed moments ago: the plain frame the appending thread built, with its seq. Its
    // checksum stays blank (Journal::Read): hashing every delivered frame cost the workers
    // more than the DLQ's and the confirmations' writing it on the few frames they keep.
    journal::WriteFrameSeq(handle.seq, buffer);
    // The frame has simdjson's padding past it (EncodeUnsealedFrame); a small one in a large
    // buffer (the buffers go round) is moved to a buffer of its size: a record cache charges a
    // record by its buffer's capacity.
    const size_t fits = buffer->size() + kReadSlack;
    if (buffer->capacity() < fits ||
        (fits < ReadTail::kMinFrameCapacity / 4 && buffer->capacity() > 2 * fits)) {
      std::string exact;
      exact.reserve(fits);
      exact.append(*buffer);
      buffer->swap(exact);
    }
    journal::FrameMeta meta;
    std::string_view body;
    // Bytes that never left memory, their checksum blank: decoded without verifying one.
    if (Status st = DecodeRead(handle, *buffer, &meta, header, &body, journal::Checksum::kTrusted);
        !st.ok()) {
      return Internal("journal record " + std::to_string(handle.seq) +
                      " from the read tail does not decode: " + st.ToString());
    }
    header->target_offset = target_offset;
    header->target_length = target_length;
    FillView(handle, meta, header, body, out);
    return Status::Ok();
  }
  buffer->resize(handle.length);
  // (The hot path of delivery: the message is built only on failure.)
  if (const int err = PreadAll(fd->fd, buffer->data(), handle.length, handle.offset); err != 0) {
    return ErrnoStatus("read journal segment " + SegmentName(handle.segment), err);
  }
  journal::FrameMeta meta;
  std::string_view body;
  Status st = DecodeRead(handle, *buffer, &meta, header, &body);
  if (st.ok() && meta.codec != Codec::kNone) {
    // Callers get the plain frame (format 1): the same bytes a record cache entry, a DLQ entry
    // and a replay hold, whatever the journal stores.
    thread_local std::string raw;
    const std::shared_ptr<const BodyDictionary> dict =
        meta.dict_id != 0 ? impl_->dicts->Find(meta.dict_id) : nullptr;
    Result<std::string_view> plain = journal::RawBody(meta, body, &raw, dict.get());
    if (plain.ok()) {
      meta.codec = Codec::kNone;
      meta.dict_id = 0;
      meta.dict_check = 0;
      buffer->clear();
      buffer->reserve(handle.length + raw.size() + slack);
      journal::EncodeFramePrefix(meta, *header, raw, buffer);
      buffer->append(raw);
      body = std::string_view(buffer->data() + buffer->size() - raw.size(), raw.size());
    } else {
      st = plain.status();
    }
  }
  if (!st.ok()) {
    return Internal("journal record " + std::to_string(handle.seq) + " at " +
                    SegmentName(handle.segment) + ":" + std::to_string(handle.offset) +
                    " does not read back: " + st.ToString());
  }
  FillView(handle, meta, header, body, out);
  return Status::Ok();
}

Result<RetentionResult> FileJournal::DeleteBefore(uint64_t below_seq, int64_t min_age_ms) {
  RetentionResult result;
  std::vector<std::pair<uint64_t, uint64_t>> doomed;
  const int64_t now = impl_->Now();
  {
    std::lock_guard<std::mutex> lock(impl_->state_mu);
    // The listener's floor is read under the lock too (see MakeRoom).
    if (impl_->opt.listener) {
      below_seq = std::min(below_seq, impl_->opt.listener->ReclaimableBelow());
    }
    for (auto it = impl_->segments.begin(); it != impl_->segments.end();) {
      auto next = std::next(it);
      // The newest segment is the writer's; a segment's records end where the next one begins.
      if (next == impl_->segments.end() || next->first > below_seq) break;
      const std::string path = impl_->opt.dir + "/" + SegmentName(it->first);
      struct stat sb {};
      if (::stat(path.c_str(), &sb) != 0) break;
      const int64_t mtime_ms =
          static_cast<int64_t>(sb.st_mtim.tv_sec) * 1000 + sb.st_mtim.tv_nsec / 1'000'000;
      if (now - mtime_ms < min_age_ms) break;
      doomed.emplace_back(it->first, it->second.OnDisk());
      impl_->deleting_bytes += it->second.OnDisk();
      if (it->second.min_dict != 0) impl_->deleting_dicts[it->first] = it->second.min_dict;
      impl_->read_fds.erase(it->first);
      it = impl_->segments.erase(it);
    }
    result.first_retained_seq = impl_->segments.empty() ? 0 : impl_->segments.begin()->first;
  }
  result.bytes_deleted = impl_->Unlink(doomed);
  result.segments_deleted = doomed.size();
  if (!doomed.empty()) {
    if (Status st = SyncDirectory(impl_->opt.dir); !st.ok()) return st;
    if (!impl_->DictionariesOn()) impl_->DeleteUnnamedDictionaries();
    impl_->ReportSize();
  }
  return result;
}

Status FileJournal::ScanDirectory(const std::string& dir,
                                  const std::function<bool(const RecordView&)>& fn) {
  Result<std::map<uint64_t, std::string>> list = ListSegments(dir);
  if (!list.ok()) return list.status();
  // The partition count from META, when it can be read (frames beyond it are corrupt).
  uint32_t partitions = UINT32_MAX;
  std::string meta;
  if (ReadFile(dir + "/META", 4096, &meta).ok()) {
    const MetaFields fields = ParseMeta(meta);
    // A format this version does not know may hold records it would misread or skip: refused, as
    // Open refuses it. (A damaged or missing META is read past: frames carry what they need.)
    if (fields.format == 0 && meta.rfind("format=", 0) == 0) {
      return InvalidArgument("journal " + dir + "/META names " + meta.substr(0, meta.find('\n')) +
                             ", which this version does not read (" + ReadableMetaFormats() + ")");
    }
    const uint64_t p = fields.partitions;
    if (p > 0 && p <= UINT32_MAX) partitions = static_cast<uint32_t>(p);
  }
  DictionaryStore dicts(dir, 1);
  std::string data;
  for (const auto& [first, path] : *list) {
    if (Status st = ReadFile(path, UINT64_MAX, &data); !st.ok()) return st;
    // A router writing this journal makes a dictionary durable before any record names it: the
    // dictionaries of what was just read are on disk now.
    if (Status st = dicts.Load(/*activate=*/false); !st.ok()) return st;
    bool stopped = false;
    ScanFrames(data.data(), data.size(), first, partitions, dicts.set(), fn, &stopped);
    if (stopped) break;
  }
  return Status::Ok();
}

}  // namespace dvrouter
