// Section: one YAML mapping of the configuration being read, with typed accessors that check
// ranges and units, name the key path in every error and remember which keys were read so that
// unknown ones are refused. Shared by the top-level parser (config.cc) and each adapter type's
// settings parser (adapters/*/..._config.cc). Also the secret resolution every secret key uses.
//
// KeyLog: while one is installed on the calling thread (ScopedKeyLog), every typed read records
// its key path, kind, default (the value before the read) and range; `dvrouter check-config
// --reference` builds docs/config-reference.md from it (docs/configuration.md).
//
// Threads: whichever thread parses; a parse touches nothing shared but the optional KeyLog.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "router/common/status.h"

namespace dvrouter {

struct Endpoint;

// "<path>: <problem>" as InvalidArgument.
Status KeyError(const std::string& path, const std::string& problem);

#define DV_TRY(expr)                 \
  do {                               \
    ::dvrouter::Status _st = (expr); \
    if (!_st.ok()) return _st;       \
  } while (0)

// One key as the reference lists it.
struct KeyInfo {
  std::string kind;          // "string", "size", "duration", "count", "number", "bool", ...
  std::string default_text;  // as a user would write it; empty: none
  std::string range;         // e.g. "1-64" or "1KiB-16MiB"; empty: any
};

// Keys read while installed, by path with list indexes as [] and user-chosen names
// (adapter names, table names) as <name> / <table>.
// While one is installed, secrets are not resolved and files are not opened, so that the
// reference can be built from examples.
class KeyLog {
 public:
  void Record(const std::string& path, KeyInfo info);
  // In the order first read.
  const std::vector<std::pair<std::string, KeyInfo>>& keys() const { return keys_; }

 private:
  std::vector<std::pair<std::string, KeyInfo>> keys_;
  std::set<std::string> seen_;  // the first record of a path wins
};

// Installs `log` for this thread's parses until destroyed.
class ScopedKeyLog {
 public:
  explicit ScopedKeyLog(KeyLog* log);
  ~ScopedKeyLog();
  ScopedKeyLog(const ScopedKeyLog&) = delete;
  ScopedKeyLog& operator=(const ScopedKeyLog&) = delete;

 private:
  KeyLog* previous_;
};

class Section {
 public:
  // `path`: the key path of this mapping ("" for the top level). `ref_path`: the same path as the
  // reference names it (user-chosen names replaced), when different.
  Section(YAML::Node node, std::string path, std::string ref_path = {});

  // The section is in the file (possibly empty: `tls: {}`).
  bool Present() const { return node_ && !node_.IsNull(); }
  // An error when the section is there but not a mapping.
  Status Check() const;

  std::string Path(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }
  std::string Name() const { return path_.empty() ? "(top level)" : path_; }

  // The raw node of `key`, marked as read.
  YAML::Node Get(const std::string& key);
  Section Child(const std::string& key);
  // A mapping inside this one that is not under a fixed key: a list item (`[i]`) or a
  // user-named entry; `ref_suffix` is how the reference names it ("[]", ".<table>").
  Section Item(YAML::Node node, const std::string& suffix, const std::string& ref_suffix) const;
  // The same mapping, listed under another reference path (an adapter type's own keys); the keys
  // read so far count as read in the view.
  Section View(std::string ref_path) const;

  // Unknown and repeated keys are errors.
  Status RejectUnknown() const;

  // Absent or empty keys keep *out (the default) in every accessor.
  Status String(const std::string& key, std::string* out);
  // A string that must be one of `choices`.
  Status Choice(const std::string& key, std::initializer_list<std::string_view> choices,
                std::string* out);
  Status Bool(const std::string& key, bool* out);
  Status Bytes(const std::string& key, uint64_t min, uint64_t max, uint64_t* out);
  Status DurationMs(const std::string& key, uint64_t min_ms, uint64_t max_ms, uint64_t* out);
  // A duration below a millisecond's resolution: 200us, 1ms (microseconds in *out).
  Status DurationUs(const std::string& key, uint64_t min_us, uint64_t max_us, uint64_t* out);
  Status Count(const std::string& key, uint64_t min, uint64_t max, uint64_t* out);
  Status Double(const std::string& key, double min, double max, double* out);
  // A list of scalars (a single scalar counts as a list of one).
  Status Strings(const std::string& key, std::vector<std::string>* out);
  // A nested list or mapping the caller reads itself; `kind` says which, for the reference.
  YAML::Node Raw(const std::string& key, std::string_view kind = "list or mapping");
  Status Endpoint(const std::string& key, dvrouter::Endpoint* out);
  // A file path: relative paths resolve against base_dir; the file must be readable.
  Status ReadableFile(const std::string& key, const std::string& base_dir, std::string* out);

  // Records `key` in the installed KeyLog, if any (accessors do it themselves).
  void Record(const std::string& key, KeyInfo info) const;

 private:
  using Units = std::initializer_list<std::pair<std::string_view, uint64_t>>;
  Status Quantity(const std::string& key, uint64_t min, uint64_t max, Units units,
                  std::string_view what, std::string_view kind, uint64_t* out);

  YAML::Node node_;
  std::string path_;
  std::string ref_path_;
  std::set<std::string> used_;
};

// A secret: `${ENV_NAME}` under `key`, or a path under `<key>_file` (relative to base_dir);
// literals, unset or blank variables and empty files are refused. `ref` and `file` are the two
// keys' values, already read from `s`.
Status ResolveSecret(Section& s, const std::string& ref, const std::string& file,
                     const std::string& base_dir, std::string* out,
                     const std::string& key = "secret");
// Reads `key` and `<key>_file` from `s` and resolves them; with `optional`, neither is fine.
Status ReadSecret(Section& s, const std::string& key, const std::string& base_dir, bool optional,
                  std::string* out);

std::string Lower(std::string s);

}  // namespace dvrouter
