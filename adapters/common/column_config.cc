#include "adapters/common/column_config.h"

#include <set>

#include "router/common/identifiers.h"

namespace dvrouter {

Status ParseColumns(Section& parent, const std::string& key, const ColumnRules& rules,
                    std::vector<TypedColumn>* out) {
  YAML::Node cols = parent.Raw(key, "list of columns");
  if (!cols || cols.IsNull()) return Status::Ok();
  if (!cols.IsSequence()) {
    return KeyError(parent.Path(key), "must be a list of {attribute, column, type} entries");
  }
  std::string types;
  for (std::string_view t : rules.types) types += (types.empty() ? "" : ", ") + std::string(t);
  parent.Record(key + "[].type", {"choice", "", types});
  std::set<std::string> names;
  for (size_t i = 0; i < cols.size(); ++i) {
    Section cs = parent.Item(cols[i], "." + key + "[" + std::to_string(i) + "]", "." + key + "[]");
    DV_TRY(cs.Check());
    if (!cols[i].IsMap()) return KeyError(cs.Name(), "must be a mapping");
    TypedColumn col;
    DV_TRY(cs.String("attribute", &col.attribute));
    col.attribute = Lower(col.attribute);
    if (col.attribute.empty()) return KeyError(cs.Path("attribute"), "missing");
    if (!ValidSqlIdentifier(col.attribute)) {
      return KeyError(cs.Path("attribute"),
                      "'" + col.attribute + "' is not an attribute logical name");
    }
    col.column = col.attribute;
    cs.Record("column", {"string", "", "default: the attribute's name"});
    DV_TRY(cs.String("column", &col.column));
    if (!ValidSqlIdentifier(col.column)) {
      return KeyError(cs.Path("column"),
                      "'" + col.column + "' is not " + std::string(rules.identifier_rule));
    }
    for (std::string_view m : rules.managed) {
      if (col.column == m) {
        return KeyError(cs.Path("column"),
                        "'" + col.column + "' is one of the columns dvrouter manages");
      }
    }
    if (!names.insert(col.column).second) {
      return KeyError(cs.Path("column"), "'" + col.column + "' appears twice");
    }
    DV_TRY(cs.String("type", &col.type));
    if (rules.lower_type) col.type = Lower(col.type);
    bool known = false;
    for (std::string_view t : rules.types) known = known || col.type == t;
    if (!known)
      return KeyError(cs.Path("type"), "must be one of " + types + "; got '" + col.type + "'");
    DV_TRY(cs.RejectUnknown());
    out->push_back(std::move(col));
  }
  return Status::Ok();
}

}  // namespace dvrouter
