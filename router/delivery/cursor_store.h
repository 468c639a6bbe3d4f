// CursorStore: the delivered position of every (adapter, partition), persisted.
//
// A cursor c means: every event of that partition with seq <= c is finished for that adapter
// (delivered, sent to the DLQ, or not routed to it). After a restart delivery resumes past the
// cursor, so an event finished after the last Save() is delivered again: adapters are idempotent
// (guarantee 2). The file is text, one "adapter partition cursor" line each, rewritten whole
// through a temporary file, fsync and rename, so a crash leaves the old or the new version.
// Threads: Load and Save from one thread at a time.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "router/common/fs.h"  // (its users took these from here)
#include "router/common/status.h"

namespace dvrouter {

class CursorStore {
 public:
  explicit CursorStore(std::string path) : path_(std::move(path)) {}

  // adapter name -> cursor per partition. A missing file gives an empty map.
  Result<std::map<std::string, std::vector<uint64_t>>> Load(uint32_t partitions) const;
  Status Save(const std::map<std::string, std::vector<uint64_t>>& cursors) const;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace dvrouter
