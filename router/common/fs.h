// Files written so that a crash leaves the old or the new version, and directories made and
// synced. Pure functions over the filesystem: any thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "router/common/status.h"

namespace dvrouter {

// Writes `contents` to dir/name via dir/name.tmp, fdatasync, rename and a directory fsync.
Status WriteFileAtomically(const std::string& dir, const std::string& name,
                           std::string_view contents);
// fsyncs a directory (after creating, renaming or removing entries in it).
Status SyncDirectory(const std::string& dir);
// mkdir -p.
Status MakeDirectories(const std::string& dir);
// Every file in dir named <20 digits><suffix> ("00000000000000000042.seg"), by its number.
Result<std::map<uint64_t, std::string>> ListNumberedFiles(const std::string& dir,
                                                          std::string_view suffix);
// The whole file at `path`; nullopt when it does not exist; Unavailable naming it otherwise.
Result<std::optional<std::string>> ReadFileIfExists(const std::string& path);

}  // namespace dvrouter
