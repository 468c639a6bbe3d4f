// CursorStore: the delivered position of every (adapter, partition), persisted; FileCursorStore
// keeps it in a file of the data directory (one node), NatsCursorStore (router/cluster/) in a
// key-value bucket that every node of a cluster reads (docs/journal-nats.md).
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

using CursorMap = std::map<std::string, std::vector<uint64_t>>;

class CursorStore {
 public:
  virtual ~CursorStore() = default;
  // adapter name -> cursor per partition. Nothing saved yet gives an empty map.
  virtual Result<CursorMap> Load(uint32_t partitions) const = 0;
  virtual Status Save(const CursorMap& cursors) const = 0;
};

class FileCursorStore final : public CursorStore {
 public:
  explicit FileCursorStore(std::string path) : path_(std::move(path)) {}

  // A missing file gives an empty map.
  Result<CursorMap> Load(uint32_t partitions) const override;
  Status Save(const CursorMap& cursors) const override;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace dvrouter
