#include "adapters/lake/lake_adapter.h"

#include <dirent.h>
#include <fcntl.h>
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "router/common/clock.h"
#include "router/common/fs.h"
#include "router/common/json.h"
#include "router/common/thread_name.h"
#include "router/decode/attributes.h"

namespace dvrouter {

// The most a lake group's row buffer reserves ahead (Deliver).
constexpr size_t kMaxGroupReserve = 8u << 20;

namespace {

// An I/O error on one table's file. Permanent when the event's own path can never work (too
// long, invalid); anything else (disk full, I/O error, a directory an operator can fix) is
// retried (IsRetryable decides from the code).
Status FileError(const std::string& what, int err) {
  const Status st = ErrnoStatus(what, err);
  if (err == ENAMETOOLONG || err == EINVAL) return InvalidArgument(st.message());
  return Unavailable(st.message());
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back(std::move(name));
  }
  ::closedir(d);
  return out;
}

bool IsDir(const std::string& path) {
  struct stat sb {};
  return ::stat(path.c_str(), &sb) == 0 && S_ISDIR(sb.st_mode);
}

// "part-<first>-<last>[-rN].jsonl" -> last; false when not a final lake file.
bool ParsePartName(const std::string& name, uint64_t* first, uint64_t* last) {
  unsigned long long f = 0, l = 0;
  int consumed = 0;
  if (std::sscanf(name.c_str(), "part-%llu-%llu%n", &f, &l, &consumed) != 2) return false;
  if (!name.ends_with(".jsonl")) return false;
  *first = f;
  *last = l;
  return true;
}

Status WriteAll(int fd, const std::string& data, const std::string& what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return FileError("write " + what, n < 0 ? errno : EIO);
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace

LakeAdapter::LakeAdapter(AdapterConfig config, prometheus::Registry* registry)
    : config_(std::move(config)) {
  if (registry != nullptr) {
    using prometheus::BuildCounter;
    const prometheus::Labels labels{{"adapter", config_.name}};
    rows_ = &BuildCounter()
                 .Name("dvrouter_lake_rows_total")
                 .Help("Rows the lake adapter made final")
                 .Register(*registry)
                 .Add(labels);
    files_ = &BuildCounter()
                  .Name("dvrouter_lake_files_total")
                  .Help("Lake files finalized (fsynced and renamed)")
                  .Register(*registry)
                  .Add(labels);
    bytes_ = &BuildCounter()
                  .Name("dvrouter_lake_bytes_total")
                  .Help("Bytes written to lake files")
                  .Register(*registry)
                  .Add(labels);
    duplicates_ = &BuildCounter()
                       .Name("dvrouter_lake_duplicates_skipped_total")
                       .Help("Redelivered events already in a final lake file, not written again")
                       .Register(*registry)
                       .Add(labels);
  }
}

LakeAdapter::~LakeAdapter() { Stop(); }

Status LakeAdapter::EncodeRow(const Delivery& d, std::string* out, std::string* partition_dir) {
  const EventHeader& h = *d.header;
  // The table names a directory: only a logical name (no '/', '..', nor one too long for a path).
  if (!IsLogicalName(h.primary_entity_name)) {
    return InvalidArgument("table name '" + Utf8Excerpt(h.primary_entity_name, 200) +
                           "' is not a Dataverse logical name");
  }
  ChangeSet scratch;
  const ChangeSet* cs = nullptr;
  if (Status st = ExtractChanges(d.body, d.changes, &scratch, &cs); !st.ok()) {
    return InvalidArgument("the event's Target cannot be converted: " + st.ToString());
  }
  const ChangeSet& changes = *cs;
  const int64_t op_ms = h.operation_created_on_ms != 0 ? h.operation_created_on_ms : d.received_ms;
  // Appended piece by piece into the caller's reused buffers: no temporary string per field.
  out->clear();
  out->append("{\"event_id\":\"");
  d.key.AppendHex(out);
  out->append("\",\"seq\":");
  AppendDecimal(out, d.seq);
  out->append(",\"table\":");
  AppendJsonString(out, h.primary_entity_name);
  out->append(",\"row_id\":");
  AppendJsonString(out, h.primary_entity_id);
  out->append(",\"message\":");
  AppendJsonString(out, h.message_name);
  out->append(",\"stage\":");
  AppendDecimal(out, h.stage);
  out->append(",\"operation_time\":\"");
  const size_t op_time_at = out->size();
  AppendIsoUtc(out, op_ms);
  partition_dir->assign(h.primary_entity_name);
  partition_dir->append("/date=");
  partition_dir->append(*out, op_time_at, 10);
  out->append("\",\"received_at\":\"");
  AppendIsoUtc(out, d.received_ms);
  out->append("\",\"attributes\":");
  if (changes.has_target && !changes.is_reference) {
    out->append(changes.attributes);
  } else {
    out->append("{}");
  }
  out->push_back('}');
  return Status::Ok();
}

Status LakeAdapter::Start(uint64_t redelivery_from_seq) {
  if (Status st = MakeDirectories(lake_.dir); !st.ok()) return st;
  // Remove temporary files of a crash; remember the seqs of final files that may come again.
  uint64_t removed = 0;
  for (const std::string& table : ListDir(lake_.dir)) {
    const std::string tdir = lake_.dir + "/" + table;
    if (!IsDir(tdir)) continue;
    for (const std::string& date : ListDir(tdir)) {
      const std::string ddir = tdir + "/" + date;
      if (!IsDir(ddir)) continue;
      for (const std::string& name : ListDir(ddir)) {
        const std::string path = ddir + "/" + name;
        if (name.starts_with(".part-") && name.ends_with(".tmp")) {
          if (::unlink(path.c_str()) == 0) ++removed;
          continue;
        }
        uint64_t first = 0, last = 0;
        if (!ParsePartName(name, &first, &last) || last < redelivery_from_seq) continue;
        FILE* f = std::fopen(path.c_str(), "r");
        if (f == nullptr) return ErrnoStatus("open " + path, errno);
        char* line = nullptr;
        size_t cap = 0;
        while (::getline(&line, &cap, f) > 0) {
          const char* at = std::strstr(line, "\"seq\":");
          const char* id = std::strstr(line, "\"event_id\":\"");
          if (at == nullptr || id == nullptr || std::strlen(id) < 12 + 32) continue;
          const uint64_t seq = std::strtoull(at + 6, nullptr, 10);
          if (seq >= redelivery_from_seq) seen_[seq] = std::string(id + 12, 32);
        }
        std::free(line);
        std::fclose(f);
      }
    }
  }
  if (removed > 0) {
    std::fprintf(stderr, "dvrouter: lake %s: removed %llu unfinished files of an earlier run\n",
                 lake_.dir.c_str(), static_cast<unsigned long long>(removed));
  }
  known_dirs_.insert(lake_.dir);
  writer_ = std::thread([this] { WriterLoop(); });
  return Status::Ok();
}

void LakeAdapter::Deliver(std::span<const Delivery> batch, DeliveryDone* done) {
  auto p = std::make_unique<Pending>();
  p->done = done;
  p->results.resize(batch.size());
  std::map<std::string, size_t> group_of;
  std::string row, dir;
  uint64_t skipped = 0;
  std::vector<char> skip(batch.size(), 0);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = 0; i < batch.size(); ++i) {
      if (seen_.empty() || batch[i].replay) continue;
      auto it = seen_.find(batch[i].seq);
      if (it != seen_.end() && it->second == batch[i].key.ToHex()) {
        seen_.erase(it);
        ++skipped;
        skip[i] = 1;
        p->results[i].outcome = DeliveryOutcome::kDelivered;
      }
    }
    skipped_ += skipped;
  }
  if (skipped > 0 && duplicates_) duplicates_->Increment(static_cast<double>(skipped));
  bool any = false;
  for (size_t i = 0; i < batch.size(); ++i) {
    PrefetchAhead(batch, i);
    if (skip[i]) continue;
    Status st = EncodeRow(batch[i], &row, &dir);
    if (!st.ok()) {
      p->results[i].outcome = DeliveryOutcome::kPermanent;
      p->results[i].error = "lake: " + std::string(st.message());
      continue;
    }
    auto [it, inserted] = group_of.try_emplace(dir, p->groups.size());
    if (inserted) {
      Group& fresh = p->groups.emplace_back();
      fresh.dir = lake_.dir + "/" + dir;
      // Room for the rest of the batch at this row's size, up to kMaxGroupReserve: one
      // allocation instead of a doubling series of copies for the usual batch; past the cap (a
      // large first row, many rows) the string grows as it needs.
      fresh.rows.reserve(std::min(kMaxGroupReserve, (row.size() + 1) * (batch.size() - i) / 4 * 5));
    }
    Group& g = p->groups[it->second];
    g.rows += row;
    g.rows += '\n';
    g.min_seq = std::min(g.min_seq, batch[i].seq);
    g.max_seq = std::max(g.max_seq, batch[i].seq);
    g.events.emplace_back(batch[i].seq, batch[i].key);
    g.index.push_back(i);
    p->results[i].outcome = DeliveryOutcome::kDelivered;
    any = true;
  }
  if (!any) {
    done->OnDelivered(p->results);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      queue_.push_back(std::move(p));
      cv_.notify_one();
      return;
    }
  }
  for (const Group& g : p->groups) FailGroup(*p, g, Unavailable("the lake adapter is stopping"));
  done->OnDelivered(p->results);
}

Status LakeAdapter::EnsureDir(const std::string& dir) {
  if (known_dirs_.count(dir)) return Status::Ok();
  // <lake dir>/<table>/date=...: each level below the lake directory (Start created that one),
  // with its errno kept to classify a failure.
  for (size_t slash = lake_.dir.size();;) {
    slash = dir.find('/', slash + 1);
    const std::string level = dir.substr(0, slash);
    if (::mkdir(level.c_str(), 0755) != 0 && errno != EEXIST) {
      return FileError("mkdir " + level, errno);
    }
    if (slash == std::string::npos) break;
  }
  struct stat sb {};
  if (::stat(dir.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode)) return FileError(dir, ENOTDIR);
  // Make the new directory entries durable: each level's parent.
  for (std::string d = dir; d.size() > lake_.dir.size();) {
    const size_t slash = d.rfind('/');
    const std::string parent = d.substr(0, slash);
    if (Status st = SyncDirectory(parent); !st.ok()) return Unavailable(st.message());
    known_dirs_.insert(d);
    d = parent;
  }
  return Status::Ok();
}

void LakeAdapter::FailGroup(Pending& p, const Group& g, const Status& why) {
  const DeliveryOutcome outcome =
      IsRetryable(why.code()) ? DeliveryOutcome::kRetryable : DeliveryOutcome::kPermanent;
  for (size_t i : g.index) {
    p.results[i].outcome = outcome;
    p.results[i].error = "lake: " + std::string(why.message());
  }
}

void LakeAdapter::FailFile(OpenFile& f, const Status& why) {
  std::fprintf(stderr, "dvrouter: lake adapter %s: %s (its events %s)\n", config_.name.c_str(),
               why.ToString().c_str(),
               IsRetryable(why.code()) ? "will be retried" : "go to the DLQ");
  if (f.fd >= 0) ::close(f.fd);
  f.fd = -1;
  ::unlink(f.tmp_path.c_str());
  for (const auto& [p, g] : f.groups) FailGroup(*p, *g, why);
}

Status LakeAdapter::Append(Pending& p, const Group& g) {
  if (Status st = EnsureDir(g.dir); !st.ok()) return st;
  OpenFile& f = open_[g.dir];
  if (f.fd < 0) {
    f.tmp_path = g.dir + "/.part-" + std::to_string(::getpid()) + "-" +
                 std::to_string(++tmp_counter_) + ".jsonl.tmp";
    f.fd = ::open(f.tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (f.fd < 0) {
      const int err = errno;
      open_.erase(g.dir);
      return FileError("create " + g.dir + "/.part-*.tmp", err);
    }
  }
  if (Status st = WriteAll(f.fd, g.rows, f.tmp_path); !st.ok()) {
    FailFile(f, st);  // a partial write spoils the file: its earlier rows fail with it
    open_.erase(g.dir);
    return st;
  }
  f.bytes += g.rows.size();
  f.min_seq = std::min(f.min_seq, g.min_seq);
  f.max_seq = std::max(f.max_seq, g.max_seq);
  f.groups.emplace_back(&p, &g);
  if (bytes_) bytes_->Increment(static_cast<double>(g.rows.size()));
  return Status::Ok();
}

void LakeAdapter::Write(Pending& p) {
  for (const Group& g : p.groups) {
    if (Status st = Append(p, g); !st.ok()) {
      std::fprintf(stderr, "dvrouter: lake adapter %s: %s (%zu events %s)\n", config_.name.c_str(),
                   st.ToString().c_str(), g.index.size(),
                   IsRetryable(st.code()) ? "will be retried" : "go to the DLQ");
      FailGroup(p, g, st);
    }
  }
}

Status LakeAdapter::Finalize(const std::string& dir, OpenFile& f) {
  if (::fdatasync(f.fd) != 0) return FileError("fdatasync " + f.tmp_path, errno);
  ::close(f.fd);
  f.fd = -1;
  const std::string base =
      dir + "/part-" + std::to_string(f.min_seq) + "-" + std::to_string(f.max_seq);
  std::string final_path = base + ".jsonl";
  // Never replace a file: an operator replay can produce the same range again.
  for (int n = 1; ::renameat2(AT_FDCWD, f.tmp_path.c_str(), AT_FDCWD, final_path.c_str(),
                              RENAME_NOREPLACE) != 0;
       ++n) {
    if (errno != EEXIST) return FileError("rename " + f.tmp_path, errno);
    final_path = base + "-r" + std::to_string(n) + ".jsonl";
  }
  if (Status st = SyncDirectory(dir); !st.ok()) {
    // Final but not known to be durable: take it back so that the retry writes its rows once;
    // if that fails too, the retry skips them as already written.
    if (::unlink(final_path.c_str()) != 0) {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [p, g] : f.groups) {
        for (const auto& [seq, key] : g->events) seen_[seq] = key.ToHex();
      }
    }
    return Unavailable(st.message());
  }
  return Status::Ok();
}

void LakeAdapter::RollAll() {
  uint64_t finalized = 0, rows = 0;
  for (auto& [dir, f] : open_) {
    if (Status st = Finalize(dir, f); !st.ok()) {
      FailFile(f, st);
      continue;
    }
    ++finalized;
    for (const auto& [p, g] : f.groups) rows += g->index.size();
  }
  open_.clear();
  if (files_) files_->Increment(static_cast<double>(finalized));
  if (rows_) rows_->Increment(static_cast<double>(rows));
  // Every row written is final or failed: complete the batches.
  for (auto& p : waiting_) p->done->OnDelivered(p->results);
  waiting_.clear();
  first_write_ms_ = 0;
}

void LakeAdapter::WriterLoop() {
  SetThreadName("dv-lake");
  std::deque<std::unique_ptr<Pending>> work;
  for (;;) {
    bool stopping;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (queue_.empty() && !stopping_) {
        if (first_write_ms_ == 0) {
          cv_.wait(lock, [&] { return !queue_.empty() || stopping_; });
        } else {
          const int64_t due = first_write_ms_ + static_cast<int64_t>(lake_.roll_ms);
          cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(1, due - SteadyNowMs())),
                       [&] { return !queue_.empty() || stopping_; });
        }
      }
      work.swap(queue_);
      stopping = stopping_;
    }
    bool big = false;
    for (auto& p : work) {
      Write(*p);
      waiting_.push_back(std::move(p));
      if (first_write_ms_ == 0) first_write_ms_ = SteadyNowMs();
    }
    work.clear();
    for (const auto& [dir, f] : open_) big |= f.bytes >= lake_.roll_bytes;
    // No file open with rows waiting: every one of them failed, answer now.
    if (!waiting_.empty() &&
        (big || stopping || open_.empty() ||
         SteadyNowMs() >= first_write_ms_ + static_cast<int64_t>(lake_.roll_ms))) {
      RollAll();
    }
    if (stopping) {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty()) return;
    }
  }
}

void LakeAdapter::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (writer_.joinable()) writer_.join();
}

uint64_t LakeAdapter::skipped_duplicates() const {
  std::lock_guard<std::mutex> lock(mu_);
  return skipped_;
}

}  // namespace dvrouter
