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
#include "router/common/json.h"
#include "router/common/thread_name.h"
#include "router/decode/attributes.h"
#include "router/delivery/cursor_store.h"

namespace dvrouter {

namespace {

// Table names come from the webhook body: keep them to safe path characters.
std::string SafeSegment(std::string_view name) {
  std::string out;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    out += ok ? c : (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : '_';
  }
  if (out.empty()) out = "_none";
  return out;
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
    if (n <= 0) return ErrnoStatus("write " + what, n < 0 ? errno : EIO);
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
  ChangeSet scratch;
  const ChangeSet* cs = nullptr;
  Status st = ExtractChanges(d.body, d.changes, &scratch, &cs);
  if (!st.ok()) return st;
  const ChangeSet& changes = *cs;
  const int64_t op_ms = h.operation_created_on_ms != 0 ? h.operation_created_on_ms : d.received_ms;
  const std::string op_time = FormatIsoUtc(op_ms);
  *partition_dir = SafeSegment(h.primary_entity_name) + "/date=" + op_time.substr(0, 10);
  out->clear();
  *out +=
      "{\"event_id\":\"" + d.key.ToHex() + "\",\"seq\":" + std::to_string(d.seq) + ",\"table\":";
  AppendJsonString(out, h.primary_entity_name);
  *out += ",\"row_id\":";
  AppendJsonString(out, h.primary_entity_id);
  *out += ",\"message\":";
  AppendJsonString(out, h.message_name);
  *out += ",\"stage\":" + std::to_string(h.stage) + ",\"operation_time\":\"" + op_time +
          "\",\"received_at\":\"" + FormatIsoUtc(d.received_ms) + "\",\"attributes\":";
  *out += changes.has_target && !changes.is_reference ? changes.attributes : "{}";
  *out += '}';
  return Status::Ok();
}

Status LakeAdapter::Start(uint64_t redelivery_from_seq) {
  if (Status st = MakeDirectories(config_.lake.dir); !st.ok()) return st;
  // Remove temporary files of a crash; remember the seqs of final files that may come again.
  uint64_t removed = 0;
  for (const std::string& table : ListDir(config_.lake.dir)) {
    const std::string tdir = config_.lake.dir + "/" + table;
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
                 config_.lake.dir.c_str(), static_cast<unsigned long long>(removed));
  }
  known_dirs_.insert(config_.lake.dir);
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
  p->written.assign(batch.size(), 0);
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
    if (skip[i]) continue;
    Status st = EncodeRow(batch[i], &row, &dir);
    if (!st.ok()) {
      p->results[i].outcome = DeliveryOutcome::kPermanent;
      p->results[i].error = "lake: the event's Target cannot be converted: " + st.ToString();
      continue;
    }
    auto [it, inserted] = group_of.try_emplace(dir, p->groups.size());
    if (inserted) p->groups.push_back(Group{config_.lake.dir + "/" + dir, "", UINT64_MAX, 0});
    Group& g = p->groups[it->second];
    g.rows += row;
    g.rows += '\n';
    g.min_seq = std::min(g.min_seq, batch[i].seq);
    g.max_seq = std::max(g.max_seq, batch[i].seq);
    g.events.emplace_back(batch[i].seq, batch[i].key);
    p->results[i].outcome = DeliveryOutcome::kDelivered;
    p->written[i] = 1;
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
  for (size_t i = 0; i < p->results.size(); ++i) {
    if (p->written[i]) {
      p->results[i].outcome = DeliveryOutcome::kRetryable;
      p->results[i].error = "lake adapter is stopping";
    }
  }
  done->OnDelivered(p->results);
}

Status LakeAdapter::EnsureDir(const std::string& dir) {
  if (known_dirs_.count(dir)) return Status::Ok();
  if (Status st = MakeDirectories(dir); !st.ok()) return st;
  // Make the new directory entries durable: each level's parent.
  for (std::string d = dir; d.size() > config_.lake.dir.size();) {
    const size_t slash = d.rfind('/');
    const std::string parent = d.substr(0, slash);
    if (Status st = SyncDirectory(parent); !st.ok()) return st;
    known_dirs_.insert(d);
    d = parent;
  }
  return Status::Ok();
}

Status LakeAdapter::Write(Pending& p) {
  for (Group& g : p.groups) {
    if (Status st = EnsureDir(g.dir); !st.ok()) return st;
    OpenFile& f = open_[g.dir];
    if (f.fd < 0) {
      f.tmp_path = g.dir + "/.part-" + std::to_string(::getpid()) + "-" +
                   std::to_string(++tmp_counter_) + ".jsonl.tmp";
      f.fd = ::open(f.tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (f.fd < 0) {
        const int err = errno;
        open_.erase(g.dir);
        return ErrnoStatus("create " + g.dir + "/.part-*.tmp", err);
      }
      f.bytes = 0;
      f.min_seq = UINT64_MAX;
      f.max_seq = 0;
    }
    if (Status st = WriteAll(f.fd, g.rows, f.tmp_path); !st.ok()) return st;
    f.bytes += g.rows.size();
    f.min_seq = std::min(f.min_seq, g.min_seq);
    f.max_seq = std::max(f.max_seq, g.max_seq);
    f.events.insert(f.events.end(), g.events.begin(), g.events.end());
    if (bytes_) bytes_->Increment(static_cast<double>(g.rows.size()));
  }
  return Status::Ok();
}

Status LakeAdapter::RollAll() {
  std::set<std::string> dirs;
  uint64_t finalized = 0;
  std::vector<const OpenFile*> renamed;
  // After a failure part way, the files already renamed are final: their rows must not be
  // written again when the engine retries them (once their directory entry is durable).
  auto fail = [&](Status st) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const OpenFile* f : renamed) {
      const std::string dir = f->tmp_path.substr(0, f->tmp_path.rfind('/'));
      if (!SyncDirectory(dir).ok()) continue;
      for (const auto& [seq, key] : f->events) seen_[seq] = key.ToHex();
    }
    return st;
  };
  for (auto& [dir, f] : open_) {
    if (f.fd < 0) continue;
    if (::fdatasync(f.fd) != 0) return fail(ErrnoStatus("fdatasync " + f.tmp_path, errno));
    ::close(f.fd);
    f.fd = -1;
    const std::string base =
        dir + "/part-" + std::to_string(f.min_seq) + "-" + std::to_string(f.max_seq);
    std::string final_path = base + ".jsonl";
    // Never replace a file: an operator replay can produce the same range again.
    for (int n = 1; ::renameat2(AT_FDCWD, f.tmp_path.c_str(), AT_FDCWD, final_path.c_str(),
                                RENAME_NOREPLACE) != 0;
         ++n) {
      if (errno != EEXIST) return fail(ErrnoStatus("rename " + f.tmp_path, errno));
      final_path = base + "-r" + std::to_string(n) + ".jsonl";
    }
    renamed.push_back(&f);
    dirs.insert(dir);
    ++finalized;
  }
  for (const std::string& dir : dirs) {
    if (Status st = SyncDirectory(dir); !st.ok()) return fail(st);
  }
  open_.clear();
  if (files_) files_->Increment(static_cast<double>(finalized));
  // Everything written is final: complete the batches.
  for (auto& p : waiting_) {
    if (rows_) {
      for (const Group& g : p->groups) {
        rows_->Increment(static_cast<double>(std::count(g.rows.begin(), g.rows.end(), '\n')));
      }
    }
    p->done->OnDelivered(p->results);
  }
  waiting_.clear();
  first_write_ms_ = 0;
  return Status::Ok();
}

void LakeAdapter::FailAll(const Status& why) {
  for (auto& [dir, f] : open_) {
    if (f.fd >= 0) ::close(f.fd);
    ::unlink(f.tmp_path.c_str());
  }
  open_.clear();
  for (auto& p : waiting_) {
    for (size_t i = 0; i < p->results.size(); ++i) {
      if (p->written[i]) {
        p->results[i].outcome = DeliveryOutcome::kRetryable;
        p->results[i].error = "lake: " + why.ToString();
      }
    }
    p->done->OnDelivered(p->results);
  }
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
          const int64_t due = first_write_ms_ + static_cast<int64_t>(config_.lake.roll_ms);
          cv_.wait_for(lock, std::chrono::milliseconds(std::max<int64_t>(1, due - SteadyNowMs())),
                       [&] { return !queue_.empty() || stopping_; });
        }
      }
      work.swap(queue_);
      stopping = stopping_;
    }
    Status st;
    bool big = false;
    for (auto& p : work) {
      if (st.ok()) st = Write(*p);
      waiting_.push_back(std::move(p));
      if (first_write_ms_ == 0) first_write_ms_ = SteadyNowMs();
    }
    work.clear();
    for (const auto& [dir, f] : open_) big |= f.bytes >= config_.lake.roll_bytes;
    if (!st.ok()) {
      std::fprintf(stderr, "dvrouter: lake %s: %s (events will be retried)\n",
                   config_.lake.dir.c_str(), st.ToString().c_str());
      FailAll(st);
    } else if (!waiting_.empty() &&
               (big || stopping ||
                SteadyNowMs() >= first_write_ms_ + static_cast<int64_t>(config_.lake.roll_ms))) {
      if (Status r = RollAll(); !r.ok()) {
        std::fprintf(stderr, "dvrouter: lake %s: %s (events will be retried)\n",
                     config_.lake.dir.c_str(), r.ToString().c_str());
        FailAll(r);
      }
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
