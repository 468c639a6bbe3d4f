#include "router/delivery/dlq.h"

#include <fcntl.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "router/common/encoding.h"
#include "router/common/json.h"
#include "router/journal/record.h"

namespace dvrouter {

namespace {

void Field(std::string* out, std::string_view name, std::string_view value) {
  out->push_back(',');
  AppendJsonString(out, name);
  out->push_back(':');
  AppendJsonString(out, value);
}

// The one way text enters the DLQ: valid UTF-8 whatever an adapter or its library produced (a
// cut that split a character, a server's Latin-1 message), so every line parses again when the
// DLQ is opened after a restart; an error text is bounded too.
std::string StoredText(std::string_view text, size_t max_bytes = SIZE_MAX) {
  return Utf8Excerpt(text, max_bytes);
}

constexpr size_t kMaxErrorBytes = 4000;

void Field(std::string* out, std::string_view name, uint64_t value) {
  out->push_back(',');
  AppendJsonString(out, name);
  out->push_back(':');
  *out += std::to_string(value);
}

Status ReadAll(int fd, uint64_t size, std::string* out) {
  out->resize(size);
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, out->data() + done, size - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoStatus("read dlq", n < 0 ? errno : EIO);
    done += static_cast<uint64_t>(n);
  }
  return Status::Ok();
}

// Parses one line into *entry (with its record) or a replay marker into *replayed.
bool ParseLine(simdjson::dom::parser& parser, std::string_view line, DlqEntry* entry,
               uint64_t* replayed) {
  simdjson::dom::element doc;
  if (parser.parse(line.data(), line.size()).get(doc) != simdjson::SUCCESS) return false;
  simdjson::dom::object obj;
  if (doc.get_object().get(obj) != simdjson::SUCCESS) return false;
  uint64_t marker = 0;
  if (obj["replayed"].get_uint64().get(marker) == simdjson::SUCCESS) {
    *replayed = marker;
    return true;
  }
  *replayed = 0;
  auto str = [&](const char* key, std::string* out) {
    std::string_view v;
    if (obj[key].get_string().get(v) != simdjson::SUCCESS) return false;
    out->assign(v);
    return true;
  };
  uint64_t attempts = 0;
  int64_t failed_at = 0;
  std::string record_b64;
  if (obj["id"].get_uint64().get(entry->id) != simdjson::SUCCESS ||
      obj["seq"].get_uint64().get(entry->seq) != simdjson::SUCCESS ||
      obj["attempts"].get_uint64().get(attempts) != simdjson::SUCCESS ||
      obj["failed_at_ms"].get_int64().get(failed_at) != simdjson::SUCCESS ||
      !str("adapter", &entry->adapter) || !str("event_id", &entry->event_id) ||
      !str("table", &entry->table) || !str("row_id", &entry->row_id) ||
      !str("message", &entry->message) || !str("reason", &entry->reason) ||
      !str("last_error", &entry->last_error) || !str("record", &record_b64)) {
    return false;
  }
  entry->attempts = static_cast<uint32_t>(attempts);
  entry->failed_at_ms = failed_at;
  return Base64Decode(record_b64, &entry->record);
}

// The DLQ of one node: append-only JSON lines in a file, one write and one fdatasync per Append.
class FileDlqLog final : public DlqLog {
 public:
  explicit FileDlqLog(std::string path) : path_(std::move(path)) {}
  ~FileDlqLog() override {
    if (fd_ >= 0) ::close(fd_);
  }
  const std::string& name() const override { return path_; }

  Status Load(const std::function<void(std::string_view, uint64_t, uint32_t)>& fn) override {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd_ < 0) return ErrnoStatus("open " + path_, errno);
    struct stat sb {};
    if (::fstat(fd_, &sb) != 0) return ErrnoStatus("fstat " + path_, errno);
    std::string data;
    if (Status st = ReadAll(fd_, static_cast<uint64_t>(sb.st_size), &data); !st.ok()) return st;
    size_t pos = 0;
    uint64_t valid_end = 0;
    while (pos < data.size()) {
      const size_t nl = data.find('\n', pos);
      if (nl == std::string::npos) break;  // torn last line: never acknowledged
      fn(std::string_view(data.data() + pos, nl - pos), pos, static_cast<uint32_t>(nl - pos));
      pos = nl + 1;
      valid_end = pos;
    }
    if (valid_end < data.size()) {
      // Cut the torn line so the next entry starts on a line of its own.
      if (::ftruncate(fd_, static_cast<off_t>(valid_end)) != 0) {
        return ErrnoStatus("truncate " + path_, errno);
      }
    }
    size_ = valid_end;
    return Status::Ok();
  }

  Status Append(const std::vector<std::string>& lines, std::vector<uint64_t>* locations) override {
    std::string text;
    locations->clear();
    for (const std::string& line : lines) {
      locations->push_back(size_ + text.size());
      text += line;
      text += '\n';
    }
    if (Status st = AppendText(text); !st.ok()) return st;
    size_ += text.size();
    return Status::Ok();
  }

  Result<std::string> Read(uint64_t location, uint32_t length) const override {
    std::string line(length, '\0');
    if (::pread(fd_, line.data(), line.size(), static_cast<off_t>(location)) !=
        static_cast<ssize_t>(line.size())) {
      return ErrnoStatus("read " + path_, errno ? errno : EIO);
    }
    return line;
  }

 private:
  Status AppendText(const std::string& text) {
    size_t done = 0;
    while (done < text.size()) {
      ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        const int err = n < 0 ? errno : EIO;
        if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
          return ErrnoStatus("write " + path_ + " (and the cut back failed)", err);
        }
        return ErrnoStatus("write " + path_, err);
      }
      done += static_cast<size_t>(n);
    }
    if (::fdatasync(fd_) != 0) {
      const int err = errno;
      if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
        return ErrnoStatus("fdatasync " + path_ + " (and the cut back failed)", err);
      }
      return ErrnoStatus("fdatasync " + path_, err);
    }
    return Status::Ok();
  }

  const std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace

DeadLetterQueue::~DeadLetterQueue() = default;

Result<std::unique_ptr<DeadLetterQueue>> DeadLetterQueue::Open(const std::string& path) {
  return Open(std::make_unique<FileDlqLog>(path));
}

Result<std::unique_ptr<DeadLetterQueue>> DeadLetterQueue::Open(std::unique_ptr<DlqLog> log) {
  std::unique_ptr<DeadLetterQueue> q(new DeadLetterQueue(std::move(log)));
  simdjson::dom::parser parser;
  Status st = q->log_->Load([&](std::string_view line, uint64_t location, uint32_t length) {
    DlqEntry e;
    uint64_t replayed = 0;
    if (!ParseLine(parser, line, &e, &replayed)) {
      ++q->damaged_lines_;
    } else if (replayed != 0) {
      q->SetReplayed(replayed);
    } else {
      e.record.clear();
      e.record.shrink_to_fit();
      q->next_id_ = std::max(q->next_id_, e.id + 1);
      q->AddSlot(Slot{std::move(e), location, length});
    }
  });
  if (!st.ok()) return st;
  return q;
}

void DeadLetterQueue::AddSlot(Slot slot) {
  index_[slot.entry.id] = slots_.size();
  slots_.push_back(std::move(slot));
}

void DeadLetterQueue::SetReplayed(uint64_t id) {
  if (auto it = index_.find(id); it != index_.end()) slots_[it->second].entry.replayed = true;
}

Status DeadLetterQueue::Append(std::vector<DlqEntry>* entries) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> lines;
  std::vector<Slot> added;
  uint64_t id = next_id_;
  for (DlqEntry& e : *entries) {
    e.id = id++;
    // In place, so what List shows now is what it shows after a restart.
    for (std::string* field :
         {&e.adapter, &e.event_id, &e.table, &e.row_id, &e.message, &e.reason}) {
      *field = StoredText(*field);
    }
    e.last_error = StoredText(e.last_error, kMaxErrorBytes);
    // A frame from the journal's read tail comes with its checksum blank (Journal::Read).
    journal::WriteFrameChecksum(&e.record);
    std::string text = "{\"id\":" + std::to_string(e.id);
    Field(&text, "adapter", e.adapter);
    Field(&text, "seq", e.seq);
    Field(&text, "event_id", e.event_id);
    Field(&text, "table", e.table);
    Field(&text, "row_id", e.row_id);
    Field(&text, "message", e.message);
    Field(&text, "reason", e.reason);
    Field(&text, "attempts", e.attempts);
    Field(&text, "last_error", e.last_error);
    text += ",\"failed_at_ms\":" + std::to_string(e.failed_at_ms);
    Field(&text, "record", Base64Encode(e.record));
    text += "}";
    Slot s{e, 0, static_cast<uint32_t>(text.size())};
    s.entry.record.clear();
    added.push_back(std::move(s));
    lines.push_back(std::move(text));
  }
  // The ids are spent once an append was tried: a stream may have stored a line whose
  // acknowledgement was lost, and the entry written again must not take the same id.
  next_id_ = id;
  std::vector<uint64_t> locations;
  if (Status st = log_->Append(lines, &locations); !st.ok()) return st;
  for (size_t i = 0; i < added.size(); ++i) {
    added[i].offset = locations[i];
    AddSlot(std::move(added[i]));
  }
  return Status::Ok();
}

Status DeadLetterQueue::MarkReplayed(const std::vector<uint64_t>& ids) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> lines;
  for (uint64_t id : ids) lines.push_back("{\"replayed\":" + std::to_string(id) + "}");
  std::vector<uint64_t> locations;
  if (Status st = log_->Append(lines, &locations); !st.ok()) return st;
  for (uint64_t id : ids) SetReplayed(id);
  return Status::Ok();
}

std::vector<DlqEntry> DeadLetterQueue::List(const std::string& adapter, std::optional<uint64_t> id,
                                            bool include_replayed) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<DlqEntry> out;
  for (const Slot& s : slots_) {
    if (!adapter.empty() && s.entry.adapter != adapter) continue;
    if (id && s.entry.id != *id) continue;
    if (s.entry.replayed && !include_replayed) continue;
    out.push_back(s.entry);
  }
  return out;
}

Result<DlqEntry> DeadLetterQueue::Get(uint64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = index_.find(id); it != index_.end()) {
    const Slot& s = slots_[it->second];
    Result<std::string> line = log_->Read(s.offset, s.length);
    if (!line.ok()) return line.status();
    simdjson::dom::parser parser;
    DlqEntry e;
    uint64_t replayed = 0;
    if (!ParseLine(parser, *line, &e, &replayed) || e.id != id) {
      return Internal(log_->name() + ": entry " + std::to_string(id) + " does not read back");
    }
    e.replayed = s.entry.replayed;
    return e;
  }
  return NotFound("no DLQ entry " + std::to_string(id));
}

uint64_t DeadLetterQueue::Pending(const std::string& adapter) const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t n = 0;
  for (const Slot& s : slots_) n += s.entry.adapter == adapter && !s.entry.replayed;
  return n;
}

std::optional<DlqEntry> DeadLetterQueue::FindEvent(const std::string& event_id,
                                                   const std::string& adapter) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = slots_.rbegin(); it != slots_.rend(); ++it) {
    if (it->entry.event_id == event_id && it->entry.adapter == adapter) return it->entry;
  }
  return std::nullopt;
}

}  // namespace dvrouter
