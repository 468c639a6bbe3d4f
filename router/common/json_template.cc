#include "router/common/json_template.h"

#include <cctype>

namespace dvrouter {

namespace {

constexpr std::string_view kHeaderFields[] = {
    "message",        "table",       "row_id", "stage", "correlation_id", "initiating_user_id",
    "operation_time", "organization"};

bool Identifier(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  }
  return true;
}

Status CheckPath(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t at = 0;
  for (;;) {
    const size_t dot = path.find('.', at);
    parts.push_back(path.substr(at, dot - at));
    if (dot == std::string_view::npos) break;
    at = dot + 1;
  }
  for (std::string_view p : parts) {
    if (!Identifier(p)) return InvalidArgument("{{" + std::string(path) + "}}: malformed path");
  }
  const std::string_view root = parts[0];
  if (root == "event" && parts.size() == 2 && (parts[1] == "id" || parts[1] == "seq")) {
    return Status::Ok();
  }
  if (root == "header" && parts.size() == 2) {
    for (std::string_view f : kHeaderFields) {
      if (parts[1] == f) return Status::Ok();
    }
  }
  if (root == "target" && parts.size() <= 3) return Status::Ok();
  return InvalidArgument("{{" + std::string(path) +
                         "}}: unknown placeholder (event.id, event.seq, header.<message, table, "
                         "row_id, stage, correlation_id, initiating_user_id, operation_time, "
                         "organization>, target, target.<attribute>[.<field>])");
}

}  // namespace

Result<JsonTemplate> JsonTemplate::Compile(std::string_view text) {
  JsonTemplate t;
  std::string literal;
  size_t at = 0;
  while (at < text.size()) {
    const size_t open = text.find("{{", at);
    if (open == std::string_view::npos) {
      literal += text.substr(at);
      break;
    }
    literal += text.substr(at, open - at);
    const size_t close = text.find("}}", open + 2);
    if (close == std::string_view::npos) {
      return InvalidArgument("unclosed '{{' at offset " + std::to_string(open));
    }
    std::string path(text.substr(open + 2, close - open - 2));
    while (!path.empty() && path.front() == ' ') path.erase(path.begin());
    while (!path.empty() && path.back() == ' ') path.pop_back();
    if (Status st = CheckPath(path); !st.ok()) return st;
    t.literals_.push_back(std::move(literal));
    literal.clear();
    t.paths_.push_back(std::move(path));
    at = close + 2;
  }
  t.literals_.push_back(std::move(literal));
  return t;
}

void JsonTemplate::Render(const Resolver& resolve, std::string* out) const {
  out->clear();
  for (size_t i = 0; i < paths_.size(); ++i) {
    *out += literals_[i];
    resolve(paths_[i], out);
  }
  *out += literals_.back();
}

}  // namespace dvrouter
