#include "router/config/section.h"

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "router/config/config.h"

namespace dvrouter {

namespace {

thread_local KeyLog* g_key_log = nullptr;

std::string Join(std::initializer_list<std::string_view> items, std::string_view last_sep) {
  std::string out;
  size_t i = 0;
  for (std::string_view item : items) {
    if (i > 0) out += (i + 1 == items.size()) ? last_sep : std::string_view(", ");
    out += item;
    ++i;
  }
  return out;
}

// A quantity as the reference shows it: in the largest unit that divides it.
std::string FormatQuantity(uint64_t v, std::string_view kind) {
  if (kind == "size") {
    if (v == UINT64_MAX) return "unlimited";
    for (auto [unit, mult] : {std::pair{"TiB", 1ull << 40}, std::pair{"GiB", 1ull << 30},
                              std::pair{"MiB", 1ull << 20}, std::pair{"KiB", 1ull << 10}}) {
      if (v >= mult && v % mult == 0) return std::to_string(v / mult) + unit;
    }
    return std::to_string(v);
  }
  if (kind == "duration") {
    if (v == 0) return "0";
    for (auto [unit, mult] :
         {std::pair{"h", 3'600'000ull}, std::pair{"m", 60'000ull}, std::pair{"s", 1000ull}}) {
      if (v % mult == 0) return std::to_string(v / mult) + unit;
    }
    return std::to_string(v) + "ms";
  }
  if (kind == "duration_us") {
    if (v % 1000 == 0) return FormatQuantity(v / 1000, "duration");
    return std::to_string(v) + "us";
  }
  return std::to_string(v);
}

std::string FormatDouble(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

}  // namespace

Status KeyError(const std::string& path, const std::string& problem) {
  return InvalidArgument(path + ": " + problem);
}

void KeyLog::Record(const std::string& path, KeyInfo info) {
  if (seen_.insert(path).second) keys_.emplace_back(path, std::move(info));
}

ScopedKeyLog::ScopedKeyLog(KeyLog* log) : previous_(g_key_log) { g_key_log = log; }
ScopedKeyLog::~ScopedKeyLog() { g_key_log = previous_; }

Section::Section(YAML::Node node, std::string path, std::string ref_path)
    : node_(std::move(node)),
      path_(std::move(path)),
      ref_path_(ref_path.empty() ? path_ : std::move(ref_path)) {}

Status Section::Check() const {
  if (node_ && !node_.IsNull() && !node_.IsMap()) return KeyError(Name(), "must be a mapping");
  return Status::Ok();
}

void Section::Record(const std::string& key, KeyInfo info) const {
  if (g_key_log == nullptr) return;
  g_key_log->Record(ref_path_.empty() ? key : ref_path_ + "." + key, std::move(info));
}

YAML::Node Section::Get(const std::string& key) {
  used_.insert(key);
  if (!node_ || !node_.IsMap()) return YAML::Node();
  return node_[key];
}

Section Section::Child(const std::string& key) {
  const std::string ref = ref_path_.empty() ? key : ref_path_ + "." + key;
  return Section(Get(key), Path(key), ref);
}

Section Section::Item(YAML::Node node, const std::string& suffix,
                      const std::string& ref_suffix) const {
  return Section(std::move(node), path_ + suffix, ref_path_ + ref_suffix);
}

Section Section::View(std::string ref_path) const {
  Section view(node_, path_, std::move(ref_path));
  view.used_ = used_;
  return view;
}

Status Section::RejectUnknown() const {
  if (!node_ || !node_.IsMap()) return Status::Ok();
  std::set<std::string> seen;
  for (const auto& kv : node_) {
    std::string key = kv.first.as<std::string>();
    if (!used_.count(key)) return KeyError(Path(key), "unknown key");
    // yaml-cpp keeps both entries but node[key] finds only the first: refuse the repeat.
    if (!seen.insert(key).second) return KeyError(Path(key), "duplicate key");
  }
  return Status::Ok();
}

Status Section::String(const std::string& key, std::string* out) {
  Record(key, {"string", *out, ""});
  YAML::Node n = Get(key);
  if (!n || n.IsNull()) return Status::Ok();
  if (!n.IsScalar()) return KeyError(Path(key), "must be a string");
  *out = n.Scalar();
  return Status::Ok();
}

Status Section::Choice(const std::string& key, std::initializer_list<std::string_view> choices,
                       std::string* out) {
  Record(key, {"choice", *out, Join(choices, ", ")});
  DV_TRY(String(key, out));
  for (std::string_view c : choices) {
    if (*out == c) return Status::Ok();
  }
  return KeyError(Path(key), "must be " + Join(choices, " or ") + ", got '" + *out + "'");
}

Status Section::Bool(const std::string& key, bool* out) {
  Record(key, {"bool", *out ? "true" : "false", ""});
  YAML::Node n = Get(key);
  if (!n || n.IsNull()) return Status::Ok();
  if (!n.IsScalar()) return KeyError(Path(key), "must be true or false");
  const std::string& s = n.Scalar();
  if (s == "true" || s == "yes" || s == "on") {
    *out = true;
  } else if (s == "false" || s == "no" || s == "off") {
    *out = false;
  } else {
    return KeyError(Path(key), "must be true or false, got '" + s + "'");
  }
  return Status::Ok();
}

Status Section::Quantity(const std::string& key, uint64_t min, uint64_t max, Units units,
                         std::string_view what, std::string_view kind, uint64_t* out) {
  Record(key, {std::string(kind == "duration_us" ? "duration" : kind), FormatQuantity(*out, kind),
               FormatQuantity(min, kind) + " to " + FormatQuantity(max, kind)});
  YAML::Node n = Get(key);
  if (!n || n.IsNull()) return Status::Ok();
  const std::string path = Path(key);
  if (!n.IsScalar()) return KeyError(path, "must be " + std::string(what));
  std::string s = n.Scalar();
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || ptr == s.data()) {
    return KeyError(path, "must be " + std::string(what) + ", got '" + s + "'");
  }
  std::string_view suffix(ptr, static_cast<size_t>(s.data() + s.size() - ptr));
  while (!suffix.empty() && suffix.front() == ' ') suffix.remove_prefix(1);
  bool matched = false;
  for (const auto& [unit, mult] : units) {
    if (suffix == unit) {
      if (mult != 0 && value > UINT64_MAX / mult) return KeyError(path, "value too large");
      value *= mult;
      matched = true;
      break;
    }
  }
  if (!matched) return KeyError(path, "must be " + std::string(what) + ", got '" + s + "'");
  if (value < min || value > max) {
    // Microseconds are shown with their unit: a bare 100000 would read as milliseconds.
    const bool us = kind == "duration_us";
    return KeyError(path, "must be between " +
                              (us ? FormatQuantity(min, kind) : std::to_string(min)) + " and " +
                              (us ? FormatQuantity(max, kind) : std::to_string(max)) + ", got '" +
                              s + "'");
  }
  *out = value;
  return Status::Ok();
}

Status Section::Bytes(const std::string& key, uint64_t min, uint64_t max, uint64_t* out) {
  return Quantity(key, min, max,
                  {{"", 1},
                   {"B", 1},
                   {"KiB", 1ull << 10},
                   {"MiB", 1ull << 20},
                   {"GiB", 1ull << 30},
                   {"TiB", 1ull << 40},
                   {"KB", 1000ull},
                   {"MB", 1000ull * 1000},
                   {"GB", 1000ull * 1000 * 1000}},
                  "a size such as 65536, 64KiB or 64MiB", "size", out);
}

Status Section::DurationMs(const std::string& key, uint64_t min_ms, uint64_t max_ms,
                           uint64_t* out) {
  return Quantity(key, min_ms, max_ms, {{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}},
                  "a duration such as 500ms, 10s, 5m or 24h", "duration", out);
}

Status Section::DurationUs(const std::string& key, uint64_t min_us, uint64_t max_us,
                           uint64_t* out) {
  return Quantity(key, min_us, max_us, {{"us", 1}, {"ms", 1000}, {"s", 1'000'000}},
                  "a duration such as 200us, 1ms or 1s", "duration_us", out);
}

Status Section::Count(const std::string& key, uint64_t min, uint64_t max, uint64_t* out) {
  return Quantity(key, min, max, {{"", 1}}, "a whole number", "count", out);
}

Status Section::Double(const std::string& key, double min, double max, double* out) {
  Record(key, {"number", FormatDouble(*out), FormatDouble(min) + " to " + FormatDouble(max)});
  YAML::Node n = Get(key);
  if (!n || n.IsNull()) return Status::Ok();
  const std::string& s = n.IsScalar() ? n.Scalar() : std::string();
  char* end = nullptr;
  double v = s.empty() ? 0 : std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !(v >= min && v <= max)) {
    return KeyError(Path(key), "must be a number between " + std::to_string(min) + " and " +
                                   std::to_string(max) + ", got '" + s + "'");
  }
  *out = v;
  return Status::Ok();
}

Status Section::Strings(const std::string& key, std::vector<std::string>* out) {
  std::string defaults;
  for (const std::string& s : *out) defaults += (defaults.empty() ? "" : ", ") + s;
  Record(key, {"list of strings", defaults, ""});
  YAML::Node n = Get(key);
  if (!n || n.IsNull()) return Status::Ok();
  if (n.IsScalar()) {
    out->assign(1, n.Scalar());
    return Status::Ok();
  }
  if (!n.IsSequence()) return KeyError(Path(key), "must be a list of strings");
  out->clear();
  for (size_t i = 0; i < n.size(); ++i) {
    if (!n[i].IsScalar()) {
      return KeyError(Path(key) + "[" + std::to_string(i) + "]", "must be a string");
    }
    out->push_back(n[i].Scalar());
  }
  return Status::Ok();
}

YAML::Node Section::Raw(const std::string& key, std::string_view kind) {
  Record(key, {std::string(kind), "", ""});
  return Get(key);
}

Status Section::Endpoint(const std::string& key, dvrouter::Endpoint* out) {
  Record(key, {"host:port", out->ToString(), "port 0 picks a free port"});
  std::string text;
  DV_TRY(String(key, &text));
  if (text.empty()) return Status::Ok();
  Result<dvrouter::Endpoint> ep = ParseEndpoint(text);
  if (!ep.ok()) return KeyError(Path(key), std::string(ep.status().message()));
  *out = *ep;
  return Status::Ok();
}

Status Section::ReadableFile(const std::string& key, const std::string& base_dir,
                             std::string* out) {
  Record(key, {"file", *out, "readable; relative to the configuration file"});
  DV_TRY(String(key, out));
  if (out->empty()) return Status::Ok();
  if (!out->starts_with("/")) *out = base_dir + "/" + *out;
  if (g_key_log != nullptr) return Status::Ok();  // building the reference: nothing is opened
  std::ifstream probe(*out);
  if (!probe) return KeyError(Path(key), "cannot read " + *out);
  return Status::Ok();
}

Status ResolveSecret(Section& s, const std::string& ref, const std::string& file,
                     const std::string& base_dir, std::string* out, const std::string& key) {
  const std::string file_key = key + "_file";
  if (g_key_log != nullptr) return Status::Ok();  // building the reference: nothing is resolved
  if (!ref.empty() && !file.empty()) {
    return KeyError(s.Path(key), "give either " + key + " or " + file_key + ", not both");
  }
  if (!ref.empty()) {
    if (ref.size() < 4 || !ref.starts_with("${") || !ref.ends_with("}")) {
      return KeyError(s.Path(key),
                      "must be an environment reference such as ${DVROUTER_WEBHOOK_KEY}; "
                      "secrets are never written in the configuration file");
    }
    std::string name = ref.substr(2, ref.size() - 3);
    const char* value = std::getenv(name.c_str());
    if (value == nullptr || *value == '\0') {
      return KeyError(s.Path(key), "environment variable " + name + " is not set");
    }
    *out = value;
    // A newline pasted into the variable would end up inside an HTTP header.
    while (!out->empty() && std::isspace(static_cast<unsigned char>(out->back()))) out->pop_back();
    if (out->empty()) return KeyError(s.Path(key), "environment variable " + name + " is blank");
    return Status::Ok();
  }
  if (!file.empty()) {
    std::string path = file.starts_with("/") ? file : base_dir + "/" + file;
    std::ifstream in(path);
    if (!in) return KeyError(s.Path(file_key), "cannot read " + path);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string value = ss.str();
    while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) {
      value.pop_back();
    }
    if (value.empty()) return KeyError(s.Path(file_key), path + " is empty");
    *out = value;
    return Status::Ok();
  }
  return KeyError(s.Path(key), "missing: set " + key + ": ${ENV_NAME} or " + file_key);
}

Status ReadSecret(Section& s, const std::string& key, const std::string& base_dir, bool optional,
                  std::string* out) {
  s.Record(key, {"secret", "", "${ENV_NAME}, never a literal"});
  s.Record(key + "_file", {"file", "", "instead of " + key + ": a file holding it"});
  std::string ref, file;
  DV_TRY(s.String(key, &ref));
  DV_TRY(s.String(key + "_file", &file));
  if (optional && ref.empty() && file.empty()) return Status::Ok();
  return ResolveSecret(s, ref, file, base_dir, out, key);
}

std::string Lower(std::string s) {
  for (char& ch : s) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return s;
}

}  // namespace dvrouter
