// JsonTemplate: text with {{placeholders}}, compiled once from configuration and rendered per
// event (the ERP adapter's request bodies and paths). A placeholder is a dotted path:
//
//   {{event.id}} {{event.seq}}                       the event id (hex) and journal seq
//   {{header.<field>}}                               message, table, row_id, stage,
//                                                    correlation_id, initiating_user_id,
//                                                    operation_time, organization
//   {{target}} {{target.<attr>}} {{target.<attr>.<field>}}   Target's converted attributes
//
// Rendering asks a resolver for each placeholder's JSON value (null when absent) and splices it
// in unquoted, so a body template is written with bare placeholders: {"id": {{header.row_id}}}.
// Pure values: compile on one thread, render from any.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "router/common/status.h"

namespace dvrouter {

class JsonTemplate {
 public:
  // InvalidArgument naming the placeholder for an unclosed "{{", an empty or unknown path.
  static Result<JsonTemplate> Compile(std::string_view text);

  using Resolver = std::function<void(std::string_view path, std::string* out)>;
  void Render(const Resolver& resolve, std::string* out) const;

  const std::vector<std::string>& paths() const { return paths_; }
  bool empty() const { return paths_.empty() && literals_.size() == 1 && literals_[0].empty(); }

 private:
  std::vector<std::string> literals_;  // literals_[i] precedes paths_[i]; one more than paths_
  std::vector<std::string> paths_;
};

}  // namespace dvrouter
