#include "adapters/dataverse/failed_jobs.h"

#include <simdjson.h>

#include <map>
#include <utility>
#include <vector>

#include "router/common/json.h"
#include "router/decode/decode.h"

namespace dvrouter {

namespace {

constexpr std::string_view kNilGuid = "00000000-0000-0000-0000-000000000000";
constexpr std::string_view kEntityType = "Entity:http://schemas.microsoft.com/xrm/2011/Contracts";
constexpr std::string_view kReferenceType =
    "EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts";

// A string member of `row`, "" when absent or null; false when present with another type.
bool StringField(simdjson::dom::object row, std::string_view key, std::string* out) {
  out->clear();
  simdjson::dom::element e;
  if (row.at_key(key).get(e) != simdjson::SUCCESS || e.is_null()) return true;
  std::string_view v;
  if (e.get(v) != simdjson::SUCCESS) return false;
  *out = std::string(v);
  return true;
}

// Reads one job; "" when it is one, else why not.
std::string ReadJob(simdjson::dom::object row, FailedJob* job) {
  std::string text;
  const auto guid = [&](std::string_view key, std::string* out) -> std::string {
    if (!StringField(row, key, &text)) return std::string(key) + " is not a string";
    if (text.empty()) return std::string(key) + " is missing";
    if (!CanonicalGuid(text, out))
      return std::string(key) + " is not a GUID: " + Utf8Excerpt(text, 60);
    return "";
  };
  if (std::string why = guid("asyncoperationid", &job->id); !why.empty()) return why;
  if (std::string why = guid("_owningextensionid_value", &job->step_id); !why.empty()) return why;
  if (std::string why = guid("_regardingobjectid_value", &job->row_id); !why.empty()) return why;
  if (!StringField(row, "messagename", &job->message) || job->message.empty()) {
    return "messagename is missing";
  }
  if (!StringField(row, "primaryentitytype", &job->table) || !IsLogicalName(job->table) ||
      job->table == "none") {
    return "primaryentitytype is missing or not a table's logical name";
  }
  if (!StringField(row, "completedon", &text) || text.empty()) return "completedon is missing";
  Result<int64_t> completed = ParseDataverseDate(text);
  if (!completed.ok()) return "completedon is not a date: " + Utf8Excerpt(text, 60);
  job->completed_ms = *completed;
  job->created_ms = 0;
  if (StringField(row, "createdon", &text) && !text.empty()) {
    if (Result<int64_t> created = ParseDataverseDate(text); created.ok())
      job->created_ms = *created;
  }
  job->correlation_id.clear();
  if (StringField(row, "correlationid", &text) && !text.empty()) {
    CanonicalGuid(text, &job->correlation_id);
  }
  job->user_id.clear();
  if (StringField(row, "_createdby_value", &text) && !text.empty()) {
    CanonicalGuid(text, &job->user_id);
  }
  return "";
}

// "2026-12-05T01:02:03Z" or with fractions: a Web API date-time value.
bool IsIsoDateTime(std::string_view s) {
  if (s.size() < 20 || s.size() > 30 || s.back() != 'Z') return false;
  constexpr std::string_view kShape = "dddd-dd-ddTdd:dd:dd";
  for (size_t i = 0; i < kShape.size(); ++i) {
    if (kShape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != kShape[i]) return false;
  }
  return true;
}

void AppendReference(std::string* out, std::string_view id, std::string_view logical_name,
                     std::string_view name) {
  *out += "{\"__type\":";
  AppendJsonString(out, kReferenceType);
  *out += ",\"Id\":";
  AppendJsonString(out, id);
  *out += ",\"KeyAttributes\":[],\"LogicalName\":";
  AppendJsonString(out, logical_name);
  *out += ",\"Name\":";
  if (name.empty()) {
    *out += "null";
  } else {
    AppendJsonString(out, name);
  }
  *out += ",\"RowVersion\":null}";
}

// A JSON string literal's value ("" and false when `text` is not one).
bool StringValue(std::string_view text, std::string* out) {
  if (text.empty() || text.front() != '"') return false;
  simdjson::dom::parser parser;
  std::string_view v;
  if (parser.parse(text.data(), text.size()).get(v) != simdjson::SUCCESS) return false;
  *out = std::string(v);
  return true;
}

// The row's columns as webhook Target attributes: lookups (`_x_value` with its annotations) as
// EntityReferences named x, date-times as /Date(ms)/, the rest as sent (numbers keep their
// digits); annotations and @odata members left out, versionnumber kept as the RowVersion.
Status AppendAttributes(std::string* out, std::string_view row_json, std::string* version) {
  std::vector<std::pair<std::string, std::string>> members;
  if (Status st = JsonObjectMembers(row_json, "the row", &members); !st.ok()) return st;
  std::map<std::string, std::string, std::less<>> lookup_table, formatted;
  for (const auto& [key, text] : members) {
    const size_t at = key.find('@');
    std::string v;
    if (at == std::string::npos || at == 0 || !StringValue(text, &v)) continue;
    const std::string column = key.substr(0, at), annotation = key.substr(at + 1);
    if (annotation == "Microsoft.Dynamics.CRM.lookuplogicalname") {
      lookup_table[column] = v;
    } else if (annotation == "OData.Community.Display.V1.FormattedValue") {
      formatted[column] = v;
    }
  }
  *out += "[";
  bool first = true;
  for (const auto& [key, text] : members) {
    if (key.find('@') != std::string::npos) continue;
    if (key == "versionnumber") {
      if (!text.empty() && text.front() >= '0' && text.front() <= '9') *version = text;
      continue;
    }
    std::string column = key;
    const bool lookup = key.size() > 7 && key.starts_with('_') && key.ends_with("_value");
    if (lookup) column = key.substr(1, key.size() - 7);
    if (!first) *out += ',';
    first = false;
    *out += "{\"key\":";
    AppendJsonString(out, column);
    *out += ",\"value\":";
    std::string value;
    const bool is_string = StringValue(text, &value);
    if (lookup && is_string) {
      auto table = lookup_table.find(key);
      auto name = formatted.find(key);
      AppendReference(out, value,
                      table == lookup_table.end() ? "" : std::string_view(table->second),
                      name == formatted.end() ? "" : std::string_view(name->second));
    } else if (is_string && IsIsoDateTime(value)) {
      Result<int64_t> ms = ParseDataverseDate(value);
      if (ms.ok()) {
        *out += "\"/Date(" + std::to_string(*ms) + ")/\"";
      } else {
        *out += text;
      }
    } else {
      *out += text;
    }
    *out += '}';
  }
  *out += "]";
  return Status::Ok();
}

}  // namespace

Result<FailedJobsPage> ParseFailedJobsPage(std::string_view body) {
  simdjson::dom::parser parser;
  simdjson::dom::object root;
  if (parser.parse(body.data(), body.size()).get(root) != simdjson::SUCCESS) {
    return InvalidArgument("asyncoperations: the answer is not JSON: " + Utf8Excerpt(body, 120));
  }
  simdjson::dom::array rows;
  if (root.at_key("value").get(rows) != simdjson::SUCCESS) {
    return InvalidArgument("asyncoperations: the answer has no value array: " +
                           Utf8Excerpt(body, 120));
  }
  FailedJobsPage page;
  size_t index = 0;
  for (simdjson::dom::element e : rows) {
    simdjson::dom::object row;
    FailedJob job;
    std::string why = e.get(row) == simdjson::SUCCESS ? ReadJob(row, &job) : "not an object";
    if (why.empty()) {
      page.jobs.push_back(std::move(job));
    } else {
      page.bad.push_back(BadJobRow{index, std::move(why)});
    }
    ++index;
  }
  std::string_view next;
  if (root.at_key("@odata.nextLink").get(next) == simdjson::SUCCESS) page.next_link = next;
  return page;
}

EventKey FailedJobKey(const FailedJob& job) {
  EventHeader h;
  h.owning_extension_id = job.step_id;
  h.operation_id = job.id;
  h.message_name = job.message;
  h.primary_entity_id = job.row_id;
  return h.DedupeKey();
}

Result<std::string> ReconciledWebhook(const FailedJob& job, std::string_view step_name,
                                      int32_t stage, const std::optional<std::string>& row,
                                      std::string_view source) {
  const bool gone = !row.has_value();
  // Who changed the row last (the Create's creator): the loop guard's user (loop_guard.user_ids)
  // must see the router's own write-back user here as it would in the webhook.
  std::string user(kNilGuid);
  if (!job.user_id.empty()) {
    // The system job names the user the lost webhook was for: the row's last modifier may since
    // be someone else (the router's own write-back, which the loop guard would drop).
    user = job.user_id;
  } else if (!gone) {
    std::vector<std::pair<std::string, std::string>> members;
    if (JsonObjectMembers(*row, "the row", &members).ok()) {
      const std::string_view wanted =
          job.message == "Create" ? "_createdby_value" : "_modifiedby_value";
      for (const auto& [key, text] : members) {
        std::string id, canonical;
        if (key == wanted && StringValue(text, &id) && CanonicalGuid(id, &canonical)) {
          user = canonical;
        }
      }
    }
  }
  std::string out = "{\"BusinessUnitId\":\"" + std::string(kNilGuid) + "\",\"CorrelationId\":";
  AppendJsonString(&out, job.correlation_id.empty() ? kNilGuid : job.correlation_id);
  out += ",\"Depth\":1,\"InitiatingUserId\":";
  AppendJsonString(&out, user);
  out += ",\"InputParameters\":[{\"key\":\"Target\",\"value\":";
  if (gone) {
    AppendReference(&out, job.row_id, job.table, "");
  } else {
    std::string version;
    std::string attributes;
    if (Status st = AppendAttributes(&attributes, *row, &version); !st.ok()) return st;
    out += "{\"__type\":";
    AppendJsonString(&out, kEntityType);
    out += ",\"Attributes\":" + attributes + ",\"EntityState\":null,\"FormattedValues\":[],\"Id\":";
    AppendJsonString(&out, job.row_id);
    out += ",\"KeyAttributes\":[],\"LogicalName\":";
    AppendJsonString(&out, job.table);
    out += ",\"RelatedEntities\":[],\"RowVersion\":";
    if (version.empty()) {
      out += "null";
    } else {
      AppendJsonString(&out, version);
    }
    out += '}';
  }
  out +=
      "}],\"IsExecutingOffline\":false,\"IsInTransaction\":false,\"IsOfflinePlayback\":false,"
      "\"IsolationMode\":1,\"MessageName\":";
  AppendJsonString(&out, gone ? std::string_view("Delete") : std::string_view(job.message));
  out += ",\"Mode\":1,\"OperationCreatedOn\":\"/Date(" +
         std::to_string(job.created_ms != 0 ? job.created_ms : job.completed_ms) +
         ")/\",\"OperationId\":";
  AppendJsonString(&out, job.id);
  out += ",\"OrganizationId\":\"" + std::string(kNilGuid) +
         "\",\"OrganizationName\":\"\",\"OutputParameters\":[],\"OwningExtension\":{\"Id\":";
  AppendJsonString(&out, job.step_id);
  out += ",\"KeyAttributes\":[],\"LogicalName\":\"sdkmessageprocessingstep\",\"Name\":";
  AppendJsonString(&out, step_name);
  out +=
      ",\"RowVersion\":null},\"ParentContext\":null,\"PostEntityImages\":[],"
      "\"PreEntityImages\":[],\"PrimaryEntityId\":";
  AppendJsonString(&out, job.row_id);
  out += ",\"PrimaryEntityName\":";
  AppendJsonString(&out, job.table);
  out +=
      ",\"RequestId\":null,\"SecondaryEntityName\":\"none\",\"SharedVariables\":[{\"key\":"
      "\"dvrouter.reconciled\",\"value\":";
  AppendJsonString(&out, std::string(source) + " " + job.id + (gone ? " (row gone)" : ""));
  out += "}],\"Stage\":" + std::to_string(stage) + ",\"UserId\":";
  AppendJsonString(&out, user);
  out += "}";
  return out;
}

}  // namespace dvrouter
