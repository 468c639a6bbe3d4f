#include "router/delivery/routing.h"

#include <algorithm>
#include <cctype>

#include "router/common/ascii.h"

namespace dvrouter {

namespace {

bool ContainsI(const std::vector<std::string>& list, std::string_view value) {
  return std::any_of(list.begin(), list.end(),
                     [&](const std::string& s) { return EqualsIgnoreCase(s, value); });
}

}  // namespace

RouteTable::RouteTable(const std::vector<RouteConfig>& routes, const LoopGuardConfig& guard,
                       const std::vector<std::string>& adapter_names)
    : loop_users_(guard.user_ids), ignore_columns_(guard.ignore_columns) {
  needs_columns_ = !ignore_columns_.empty();
  for (const RouteConfig& rc : routes) {
    Route r;
    r.tables = rc.tables;
    r.messages = rc.messages;
    r.changed_columns = rc.changed_columns;
    r.stages = rc.stages;
    for (const std::string& a : rc.adapters) {
      auto it = std::find(adapter_names.begin(), adapter_names.end(), a);
      if (it != adapter_names.end()) r.mask |= 1ull << (it - adapter_names.begin());
    }
    needs_columns_ |= !r.changed_columns.empty();
    routes_.push_back(std::move(r));
  }
}

RouteVerdict RouteTable::Match(const EventHeader& h, std::string_view body,
                               AttributeExtractor* extractor, uint64_t* mask) const {
  *mask = 0;
  if (!h.initiating_user_id.empty() && ContainsI(loop_users_, h.initiating_user_id)) {
    return RouteVerdict::kLoopUser;
  }
  ChangeSet changes;
  bool have_columns = false;
  auto columns = [&]() -> const std::vector<std::string>& {
    if (!have_columns) {
      have_columns = true;
      if (!extractor->Extract(body.data(), body.size(), body.size(), &changes).ok()) {
        changes.Clear();
      }
      // The primary id column is in every Target: it is not a change.
      const std::string id_column = h.primary_entity_name + "id";
      std::erase_if(changes.columns,
                    [&](const std::string& c) { return EqualsIgnoreCase(c, id_column); });
    }
    return changes.columns;
  };
  if (!ignore_columns_.empty() && EqualsIgnoreCase(h.message_name, "Update")) {
    const auto& cols = columns();
    if (!cols.empty() && std::all_of(cols.begin(), cols.end(), [&](const std::string& c) {
          return ContainsI(ignore_columns_, c);
        })) {
      return RouteVerdict::kIgnoredColumns;
    }
  }
  for (const Route& r : routes_) {
    if ((*mask & r.mask) == r.mask) continue;  // adds nothing
    if (!r.tables.empty() && !ContainsI(r.tables, h.primary_entity_name)) continue;
    if (!r.messages.empty() && !ContainsI(r.messages, h.message_name)) continue;
    if (!r.stages.empty() &&
        std::find(r.stages.begin(), r.stages.end(), h.stage) == r.stages.end()) {
      continue;
    }
    if (!r.changed_columns.empty()) {
      const auto& cols = columns();
      if (std::none_of(cols.begin(), cols.end(),
                       [&](const std::string& c) { return ContainsI(r.changed_columns, c); })) {
        continue;
      }
    }
    *mask |= r.mask;
  }
  return *mask != 0 ? RouteVerdict::kRouted : RouteVerdict::kUnrouted;
}

}  // namespace dvrouter
