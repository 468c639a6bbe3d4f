#include "adapters/dataverse/tracking_state.h"

#include <simdjson.h>

#include "router/common/fs.h"
#include "router/common/json.h"
#include "router/decode/decode.h"
#include "router/decode/event.h"

namespace dvrouter {

namespace {

constexpr char kFile[] = "change_tracking.json";

void AppendNumber(std::string* out, std::string_view key, int64_t v) {
  *out += ',';
  AppendJsonString(out, key);
  *out += ':' + std::to_string(v);
}

Status ReadChange(simdjson::dom::object o, SettlingChange* c) {
  std::string_view id, json, token, by;
  bool deleted = false;
  if (o.at_key("id").get(id) != simdjson::SUCCESS || !CanonicalGuid(id, &c->row.id) ||
      o.at_key("deleted").get(deleted) != simdjson::SUCCESS ||
      o.at_key("modified_ms").get(c->row.modified_ms) != simdjson::SUCCESS ||
      o.at_key("created_ms").get(c->row.created_ms) != simdjson::SUCCESS ||
      o.at_key("version").get(c->row.version) != simdjson::SUCCESS ||
      o.at_key("modified_by").get(by) != simdjson::SUCCESS ||
      o.at_key("json").get(json) != simdjson::SUCCESS ||
      o.at_key("token").get(token) != simdjson::SUCCESS ||
      o.at_key("created").get(c->created) != simdjson::SUCCESS) {
    return InvalidArgument(
        "a settling change lacks one of id, deleted, modified_ms, created_ms, "
        "version, modified_by, json, token, created");
  }
  if (!deleted && json.empty()) return InvalidArgument("a settling row without its columns");
  c->row.deleted = deleted;
  c->row.modified_by = by;
  c->row.json = json;
  c->token = token;
  return Status::Ok();
}

}  // namespace

std::string EncodeTrackingState(const TrackingState& state) {
  std::string out = "{\"version\":1,\"tables\":{";
  bool first = true;
  for (const auto& [table, t] : state.tables) {
    if (!first) out += ',';
    first = false;
    AppendJsonString(&out, table);
    out += ":{\"delta_link\":";
    AppendJsonString(&out, t.delta_link);
    AppendNumber(&out, "scan_from_seq", static_cast<int64_t>(t.scan_from_seq));
    AppendNumber(&out, "synced_ms", t.synced_ms);
    AppendNumber(&out, "full_syncs", static_cast<int64_t>(t.full_syncs));
    out += ",\"settling\":[";
    for (size_t i = 0; i < t.settling.size(); ++i) {
      const SettlingChange& c = t.settling[i];
      if (i > 0) out += ',';
      out += "{\"id\":";
      AppendJsonString(&out, c.row.id);
      out += std::string(",\"deleted\":") + (c.row.deleted ? "true" : "false");
      AppendNumber(&out, "modified_ms", c.row.modified_ms);
      AppendNumber(&out, "created_ms", c.row.created_ms);
      AppendNumber(&out, "version", c.row.version);
      out += ",\"modified_by\":";
      AppendJsonString(&out, c.row.modified_by);
      out += ",\"json\":";
      AppendJsonString(&out, c.row.json);
      out += ",\"token\":";
      AppendJsonString(&out, c.token);
      out += std::string(",\"created\":") + (c.created ? "true" : "false") + '}';
    }
    out += "]}";
  }
  out += "}}\n";
  return out;
}

Result<TrackingState> DecodeTrackingState(std::string_view text) {
  simdjson::dom::parser parser;
  simdjson::dom::object root, tables;
  int64_t version = 0;
  if (parser.parse(text.data(), text.size()).get(root) != simdjson::SUCCESS ||
      root.at_key("version").get(version) != simdjson::SUCCESS || version != 1 ||
      root.at_key("tables").get(tables) != simdjson::SUCCESS) {
    return InvalidArgument("not a change tracking state (version 1 with tables)");
  }
  TrackingState state;
  for (auto [key, value] : tables) {
    if (!IsLogicalName(key)) return InvalidArgument("a table name is not a logical name");
    TableTracking t;
    std::string_view link;
    int64_t from = 0, full = 0;
    simdjson::dom::array settling;
    if (value.at_key("delta_link").get(link) != simdjson::SUCCESS ||
        value.at_key("scan_from_seq").get(from) != simdjson::SUCCESS || from < 0 ||
        value.at_key("synced_ms").get(t.synced_ms) != simdjson::SUCCESS ||
        value.at_key("full_syncs").get(full) != simdjson::SUCCESS || full < 0 ||
        value.at_key("settling").get(settling) != simdjson::SUCCESS) {
      return InvalidArgument("table " + std::string(key) +
                             " lacks one of delta_link, scan_from_seq, synced_ms, full_syncs, "
                             "settling");
    }
    t.delta_link = link;
    t.scan_from_seq = static_cast<uint64_t>(from);
    t.full_syncs = static_cast<uint64_t>(full);
    for (simdjson::dom::element e : settling) {
      simdjson::dom::object o;
      SettlingChange c;
      if (e.get(o) != simdjson::SUCCESS) {
        return InvalidArgument("table " + std::string(key) +
                               ": a settling change is not an object");
      }
      if (Status st = ReadChange(o, &c); !st.ok()) {
        return InvalidArgument("table " + std::string(key) + ": " + std::string(st.message()));
      }
      t.settling.push_back(std::move(c));
    }
    state.tables.emplace(std::string(key), std::move(t));
  }
  return state;
}

Result<TrackingState> LoadTrackingState(const std::string& dir) {
  const std::string path = dir + "/" + kFile;
  Result<std::optional<std::string>> text = ReadFileIfExists(path);
  if (!text.ok()) return text.status();
  if (!text->has_value()) return TrackingState{};
  Result<TrackingState> state = DecodeTrackingState(**text);
  if (!state.ok()) {
    return InvalidArgument(path + ": " + std::string(state.status().message()) +
                           " (move it away to start change tracking over with its initial sync)");
  }
  return state;
}

Status SaveTrackingState(const std::string& dir, const TrackingState& state) {
  if (Status st = MakeDirectories(dir); !st.ok()) return st;
  return WriteFileAtomically(dir, kFile, EncodeTrackingState(state));
}

}  // namespace dvrouter
