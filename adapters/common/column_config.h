// TypedColumn: a Target attribute copied into a column of its own (the SQL adapters' mapped
// tables, the ClickHouse events table), and the one parser of a `columns:` list both use, with
// each type's rules (its column types, the columns it manages itself). Called while the
// configuration is parsed.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "router/common/status.h"
#include "router/config/section.h"

namespace dvrouter {

struct TypedColumn {
  std::string attribute;  // Target attribute logical name
  std::string column;     // column name (default: the attribute name)
  std::string type;       // one of the adapter type's column types
};

struct ColumnRules {
  std::span<const std::string_view> types;    // allowed values of `type`
  bool lower_type = false;                    // `type` is case-insensitive (written lowercase)
  std::span<const std::string_view> managed;  // columns the adapter writes itself
  std::string_view identifier_rule;           // what a valid column name is, for errors
};

// Reads `key` of `parent` (absent: no columns) as a list of {attribute, column, type}.
Status ParseColumns(Section& parent, const std::string& key, const ColumnRules& rules,
                    std::vector<TypedColumn>* out);

}  // namespace dvrouter
