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

Result<CursorMap> FileCursorStore::Load(uint32_t partitions) const {
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

Status FileCursorStore::Save(const CursorMap& cursors) const {
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
