// What a lake directory holds, for end-to-end tests: the rows of every final file by event id.
#pragma once

#include <dirent.h>
#include <sys/stat.h>

#include <fstream>
#include <functional>
#include <map>
#include <string>

#include "tests/support/test_util.h"

namespace dvrouter::testing {

// Calls fn(path, line number in its file, line) for every line of every final lake file
// (*.jsonl) under `dir`.
inline void ForEachLakeLine(
    const std::string& dir,
    const std::function<void(const std::string&, size_t, const std::string&)>& fn) {
  std::function<void(const std::string&)> walk = [&](const std::string& d) {
    DIR* h = ::opendir(d.c_str());
    if (h == nullptr) return;
    while (dirent* e = ::readdir(h)) {
      const std::string name = e->d_name;
      if (name == "." || name == "..") continue;
      const std::string path = d + "/" + name;
      struct stat sb {};
      ::stat(path.c_str(), &sb);
      if (S_ISDIR(sb.st_mode)) {
        walk(path);
      } else if (name.ends_with(".jsonl")) {
        std::ifstream in(path);
        size_t n = 0;
        for (std::string line; std::getline(in, line);) fn(path, n++, line);
      }
    }
    ::closedir(h);
  };
  walk(dir);
}

// event_id -> rows with it, over every final lake file (*.jsonl) under `dir`.
inline std::map<std::string, int> LakeRows(const std::string& dir) {
  std::map<std::string, int> rows;
  ForEachLakeLine(dir, [&](const std::string&, size_t, const std::string& line) {
    rows[JsonStringField(line, "event_id")]++;
  });
  return rows;
}

}  // namespace dvrouter::testing
