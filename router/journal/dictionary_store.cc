#include "router/journal/dictionary_store.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "router/common/fs.h"

namespace dvrouter {

namespace {
constexpr std::string_view kDictionarySuffix = ".dict";
}  // namespace

Status DictionaryStore::Load(bool activate) {
  Result<std::map<uint64_t, std::string>> list = ListNumberedFiles(dir_, kDictionarySuffix);
  if (!list.ok()) return list.status();
  std::vector<std::pair<uint64_t, std::string>> readable;  // id, content
  for (const auto& [id, path] : *list) {
    highest_listed_ = std::max(highest_listed_, id);
    if (set_.Find(id) || unreadable_.contains(id)) continue;
    Result<std::optional<std::string>> bytes = ReadFileIfExists(path);
    Result<std::string> content =
        !bytes.ok()           ? Result<std::string>(bytes.status())
        : !bytes->has_value() ? Result<std::string>(NotFound("removed while the journal opened"))
                              : ParseDictionaryFile(**bytes, id);
    if (!content.ok()) {
      std::fprintf(stderr,
                   "dvrouter: journal dictionary %s is unreadable (%s): the records compressed "
                   "with it cannot be read back\n",
                   path.c_str(), content.status().ToString().c_str());
      unreadable_.insert(id);
      continue;
    }
    readable.emplace_back(id, std::move(*content));
  }
  for (size_t i = 0; i < readable.size(); ++i) {
    // Only the active one, the newest, compresses (zstd's compression tables are the larger part).
    const bool active = activate && i + 1 == readable.size();
    const uint64_t id = readable[i].first;
    const bool zstd_format = IsZstdDictionary(readable[i].second);
    std::shared_ptr<const BodyDictionary> dict =
        BodyDictionary::Make(id, std::move(readable[i].second), level_, active);
    if (!dict && zstd_format) {
      // Its checksum matched but zstd does not parse it: damaged like any unreadable file.
      std::fprintf(stderr,
                   "dvrouter: journal dictionary %s/%s is unreadable (zstd does not parse it): "
                   "the records compressed with it cannot be read back\n",
                   dir_.c_str(), DictionaryFileName(id).c_str());
      unreadable_.insert(id);
      continue;
    }
    if (!dict) return ResourceExhausted("no memory for a journal dictionary in " + dir_);
    set_.Add(std::move(dict), active);
  }
  return Status::Ok();
}

Status DictionaryStore::Make(uint64_t id, std::string content) {
  std::shared_ptr<const BodyDictionary> dict = BodyDictionary::Make(id, std::move(content), level_);
  if (!dict) return ResourceExhausted("no memory for a journal dictionary");
  if (Status st = WriteFileAtomically(dir_, DictionaryFileName(id),
                                      DictionaryFileText(id, dict->content()));
      !st.ok()) {
    return st;
  }
  set_.Add(std::move(dict), /*make_active=*/true);
  highest_listed_ = std::max(highest_listed_, id);
  return Status::Ok();
}

void DictionaryStore::DeleteBelow(uint64_t lowest_named) {
  const std::shared_ptr<const BodyDictionary> active = set_.Active();
  for (uint64_t id : set_.Ids()) {
    if (id >= lowest_named || (active && id == active->id())) continue;
    set_.Remove(id);
    // Not synced: a file back after a power loss is deleted again after the next dictionary.
    const std::string path = dir_ + "/" + DictionaryFileName(id);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      std::fprintf(stderr, "dvrouter: journal: unlink %s: %s\n", path.c_str(),
                   std::strerror(errno));
    }
  }
}

}  // namespace dvrouter
