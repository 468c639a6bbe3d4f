// DictionaryStore: the file journal's compression dictionaries on disk, <dir>/<id, 20
// digits>.dict: loaded when the journal opens, each written durably before bodies are compressed
// with it, deleted once no segment names it (docs/architecture.md, "Compression dictionaries").
//
// Threads: Load on the opening thread, Make and DeleteBelow on the journal's writer; Find, Active
// and set() from any thread (DictionarySet has its own lock).
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>

#include "router/common/status.h"
#include "router/journal/body_dictionary.h"

namespace dvrouter {

class DictionaryStore {
 public:
  // Dictionaries for compression at `level` (what their zstd tables are made for).
  DictionaryStore(std::string dir, int level) : dir_(std::move(dir)), level_(level) {}

  // Loads the dictionary files in the directory not loaded yet (a reader of a journal another
  // process writes loads again after reading more segment bytes); with `activate` the newest is
  // the one bodies are compressed with until another is made. A file that does not parse is
  // reported (stderr) and left on disk: only the records compressed with it are unreadable.
  Status Load(bool activate);
  // The highest id of a dictionary file listed by Load, readable or not: a new one needs a
  // higher id, so that no damaged file is overwritten.
  uint64_t highest_listed() const { return highest_listed_; }
  // Writes dictionary `id` with `content` (write, fdatasync, rename, directory sync), then makes
  // it the active one. On failure nothing changes.
  Status Make(uint64_t id, std::string content);
  // Deletes the dictionaries whose ids are below `lowest_named` (the lowest any retained segment
  // names), never the active one.
  void DeleteBelow(uint64_t lowest_named);

  std::shared_ptr<const BodyDictionary> Find(uint64_t id) const { return set_.Find(id); }
  std::shared_ptr<const BodyDictionary> Active() const { return set_.Active(); }
  const DictionarySet& set() const { return set_; }

 private:
  std::string dir_;
  int level_;
  DictionarySet set_;
  uint64_t highest_listed_ = 0;
  std::set<uint64_t> unreadable_;  // reported once
};

}  // namespace dvrouter
