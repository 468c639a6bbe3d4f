#include "router/delivery/cursor_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>

namespace dvrouter {

namespace {
constexpr std::string_view kMagic = "dvrouter-cursors 1";
}

Status SyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open " + dir, errno);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  return rc == 0 ? Status::Ok() : ErrnoStatus("fsync " + dir, err);
}

Status MakeDirectories(const std::string& dir) {
  if (dir.empty()) return Status::Ok();
  for (size_t pos = 1;; ++pos) {
    pos = dir.find('/', pos);
    const std::string prefix = dir.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoStatus("mkdir " + prefix, errno);
    }
    if (pos == std::string::npos) break;
  }
  struct stat sb {};
  if (::stat(dir.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    return InvalidArgument(dir + " is not a directory");
  }
  return Status::Ok();
}

Status WriteFileAtomically(const std::string& dir, const std::string& name,
                           std::string_view contents) {
  const std::string tmp = dir + "/" + name + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("create " + tmp, errno);
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = ::write(fd, contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      ::close(fd);
      return ErrnoStatus("write " + tmp, err);
    }
    done += static_cast<size_t>(n);
  }
  if (::fdatasync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    return ErrnoStatus("fdatasync " + tmp, err);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), (dir + "/" + name).c_str()) != 0) {
    return ErrnoStatus("rename " + tmp, errno);
  }
  return SyncDirectory(dir);
}

Result<std::map<std::string, std::vector<uint64_t>>> CursorStore::Load(uint32_t partitions) const {
  std::map<std::string, std::vector<uint64_t>> out;
  std::ifstream in(path_);
  if (!in) {
    struct stat sb {};
    if (::stat(path_.c_str(), &sb) != 0 && errno == ENOENT) return out;  // first start
    return ErrnoStatus("open " + path_, errno ? errno : EIO);
  }
  std::string line;
  if (!std::getline(in, line) || line != kMagic) {
    return InvalidArgument(path_ + ": not a dvrouter cursor file (first line is not '" +
                           std::string(kMagic) + "')");
  }
  int lineno = 1;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::string name, partition_text, cursor_text, extra;
    uint64_t partition = 0, cursor = 0;
    auto number = [](const std::string& text, uint64_t* out) {
      auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
      return ec == std::errc() && ptr == text.data() + text.size() && !text.empty();
    };
    if (!(fields >> name >> partition_text >> cursor_text) || (fields >> extra) ||
        !number(partition_text, &partition) || !number(cursor_text, &cursor)) {
      return InvalidArgument(path_ + ":" + std::to_string(lineno) +
                             ": expected 'adapter partition cursor'");
    }
    if (partition >= partitions) {
      return InvalidArgument(path_ + ":" + std::to_string(lineno) + ": partition " +
                             std::to_string(partition) + " is out of range (" +
                             std::to_string(partitions) + " partitions)");
    }
    auto& v = out[name];
    v.resize(partitions, 0);
    v[partition] = cursor;
  }
  return out;
}

Status CursorStore::Save(const std::map<std::string, std::vector<uint64_t>>& cursors) const {
  std::string text(kMagic);
  text += '\n';
  for (const auto& [name, values] : cursors) {
    for (size_t p = 0; p < values.size(); ++p) {
      text += name;
      text += ' ';
      text += std::to_string(p);
      text += ' ';
      text += std::to_string(values[p]);
      text += '\n';
    }
  }
  const size_t slash = path_.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path_.substr(0, slash);
  const std::string name = slash == std::string::npos ? path_ : path_.substr(slash + 1);
  return WriteFileAtomically(dir, name, text);
}

}  // namespace dvrouter
