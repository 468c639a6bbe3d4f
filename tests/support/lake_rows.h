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

// event_id -> rows with it, over every final lake file (*.jsonl) under `dir`.
inline std::map<std::string, int> LakeRows(const std::string& dir) {
  std::map<std::string, int> rows;
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
        std::string line;
        while (std::getline(in, line)) rows[JsonStringField(line, "event_id")]++;
      }
    }
    ::closedir(h);
  };
  walk(dir);
  return rows;
}

}  // namespace dvrouter::testing
