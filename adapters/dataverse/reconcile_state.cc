#include "adapters/dataverse/reconcile_state.h"

#include <simdjson.h>

#include "router/common/fs.h"
#include "router/common/json.h"
#include "router/decode/decode.h"

namespace dvrouter {

namespace {
constexpr char kFile[] = "failed_jobs.json";
}  // namespace

void StepWatermark::Handled(const std::string& id, int64_t ms) {
  handled[id] = ms;
  if (ms > completed_ms) {
    completed_ms = ms;
    std::erase_if(handled, [&](const auto& kept) { return kept.second < ReadFrom(); });
  }
}

std::string EncodeReconcileState(const ReconcileState& state) {
  std::string out = "{\"version\":1,\"steps\":{";
  bool first = true;
  for (const auto& [step, w] : state.steps) {
    if (!first) out += ',';
    first = false;
    AppendJsonString(&out, step);
    out += ":{\"completed_ms\":" + std::to_string(w.completed_ms) + ",\"handled\":{";
    bool first_id = true;
    for (const auto& [id, ms] : w.handled) {
      if (!first_id) out += ',';
      first_id = false;
      AppendJsonString(&out, id);
      out += ':' + std::to_string(ms);
    }
    out += "}}";
  }
  out += "}}\n";
  return out;
}

Result<ReconcileState> DecodeReconcileState(std::string_view text) {
  simdjson::dom::parser parser;
  simdjson::dom::object root, steps;
  int64_t version = 0;
  if (parser.parse(text.data(), text.size()).get(root) != simdjson::SUCCESS ||
      root.at_key("version").get(version) != simdjson::SUCCESS || version != 1 ||
      root.at_key("steps").get(steps) != simdjson::SUCCESS) {
    return InvalidArgument("not a reconciliation state (version 1 with steps)");
  }
  ReconcileState state;
  for (auto [key, value] : steps) {
    std::string step;
    if (!CanonicalGuid(key, &step)) return InvalidArgument("a step id is not a GUID");
    StepWatermark w;
    simdjson::dom::object ids;
    if (value.at_key("completed_ms").get(w.completed_ms) != simdjson::SUCCESS ||
        w.completed_ms < 0 || value.at_key("handled").get(ids) != simdjson::SUCCESS) {
      return InvalidArgument("step " + step + " has no completed_ms and handled map");
    }
    for (auto [id, ms_value] : ids) {
      std::string canonical;
      int64_t ms = 0;
      if (!CanonicalGuid(id, &canonical) || ms_value.get(ms) != simdjson::SUCCESS) {
        return InvalidArgument("step " + step + " lists a job that is not a GUID with its time");
      }
      w.handled.emplace(canonical, ms);
    }
    state.steps.emplace(step, std::move(w));
  }
  return state;
}

Result<ReconcileState> LoadReconcileState(const std::string& dir) {
  const std::string path = dir + "/" + kFile;
  Result<std::optional<std::string>> text = ReadFileIfExists(path);
  if (!text.ok()) return text.status();
  if (!text->has_value()) return ReconcileState{};
  Result<ReconcileState> state = DecodeReconcileState(**text);
  if (!state.ok()) {
    return InvalidArgument(path + ": " + std::string(state.status().message()) +
                           " (move it away to start over from reconcile.failed_jobs.lookback)");
  }
  return state;
}

Status SaveReconcileState(const std::string& dir, const ReconcileState& state) {
  if (Status st = MakeDirectories(dir); !st.ok()) return st;
  return WriteFileAtomically(dir, kFile, EncodeReconcileState(state));
}

}  // namespace dvrouter
