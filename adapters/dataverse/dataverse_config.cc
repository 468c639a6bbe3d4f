#include "adapters/dataverse/dataverse_config.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <ostream>

#include "adapters/common/http_config.h"
#include "router/config/section.h"

namespace dvrouter {

namespace {

Result<std::unique_ptr<AdapterSettings>> ParseDataverse(Section& a,
                                                        const AdapterParseContext& ctx) {
  auto out = std::make_unique<DataverseConfig>();
  const std::string& base_dir = ctx.base_dir;
  DV_TRY(a.String("source", &out->source));
  if (out->source.empty()) {
    return KeyError(a.Path("source"), "missing: the adapter whose statuses are written back");
  }
  DV_TRY(ParseBaseUrl(a, "url", base_dir, &out->url, &out->ca_file));
  if (out->url.find('/', out->url.find("//") + 2) != std::string::npos) {
    return KeyError(a.Path("url"), "must be the organization's root URL, without a path");
  }
  DV_TRY(a.String("api_path", &out->api_path));
  if (!out->api_path.starts_with("/")) return KeyError(a.Path("api_path"), "must start with '/'");
  while (out->api_path.ends_with("/")) out->api_path.pop_back();
  DV_TRY(a.DurationMs("connect_timeout", 100, 600'000, &out->connect_timeout_ms));
  DV_TRY(a.DurationMs("request_timeout", 100, 3'600'000, &out->request_timeout_ms));
  Section auth = a.Child("auth");
  DV_TRY(auth.Check());
  if (!auth.Present()) {
    return KeyError(a.Path("auth"), "missing: token_url, client_id and client_secret");
  }
  DV_TRY(ParseClientCredentials(auth, base_dir, &out->token_url, &out->client_id,
                                &out->client_secret, &out->scope));
  if (out->scope.empty()) out->scope = out->url + "/.default";
  DV_TRY(auth.RejectUnknown());

  auto names = [&](const std::string& key, auto&& each) -> Status {
    YAML::Node n = a.Raw(key, "mapping");
    if (!n || n.IsNull()) return Status::Ok();
    if (!n.IsMap()) return KeyError(a.Path(key), "must be a mapping");
    for (const auto& kv : n) {
      const std::string k = kv.first.as<std::string>();
      if (!kv.second.IsScalar() || kv.second.Scalar().empty()) {
        return KeyError(a.Path(key) + "." + k, "must be a non-empty value");
      }
      DV_TRY(each(k, kv.second.Scalar()));
    }
    return Status::Ok();
  };
  auto identifier = [](const std::string& s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
    });
  };
  DV_TRY(names("entity_sets", [&](const std::string& table, const std::string& set) -> Status {
    if (!identifier(set)) {
      return KeyError(a.Path("entity_sets") + "." + table, "not an entity set name: '" + set + "'");
    }
    out->entity_sets.emplace_back(Lower(table), set);
    return Status::Ok();
  }));
  DV_TRY(a.String("status_column", &out->status_column));
  if (!identifier(out->status_column)) {
    return KeyError(a.Path("status_column"), "missing or not a column name");
  }
  DV_TRY(names("status_values", [&](const std::string& state, const std::string& v) -> Status {
    const std::string path = a.Path("status_values") + "." + state;
    if (state != "pending" && state != "submitted" && state != "processing" &&
        state != "completed" && state != "failed") {
      return KeyError(path, "states are pending, submitted, processing, completed, failed");
    }
    char* end = nullptr;
    errno = 0;
    const long long value = std::strtoll(v.c_str(), &end, 10);
    if (errno != 0 || *end != '\0' || value < 0 || value > INT32_MAX) {
      return KeyError(path,
                      "must be an option-set value (a non-negative integer), got '" + v + "'");
    }
    out->status_values.emplace_back(state, value);
    return Status::Ok();
  }));
  for (const char* needed : {"completed", "failed"}) {
    bool found = false;
    for (const auto& [state, v] : out->status_values) found = found || state == needed;
    if (!found) {
      return KeyError(a.Path("status_values") + "." + needed, "missing: the option value to write");
    }
  }
  DV_TRY(a.String("error_column", &out->error_column));
  if (!out->error_column.empty() && !identifier(out->error_column)) {
    return KeyError(a.Path("error_column"), "not a column name");
  }
  DV_TRY(names("answer_columns", [&](const std::string& column, const std::string& name) {
    if (!identifier(column)) return KeyError(a.Path("answer_columns"), "not a column: " + column);
    out->answer_columns.emplace_back(column, name);
    return Status::Ok();
  }));
  DV_TRY(a.Count("max_concurrency", 1, 52, &out->max_concurrency));
  DV_TRY(a.Double("max_requests_per_second", 0.1, 100, &out->max_requests_per_second));
  return std::unique_ptr<AdapterSettings>(std::move(out));
}

constexpr std::string_view kExamples[] = {
    R"(source: erp
url: https://contoso.crm.dynamics.com
auth: {token_url: https://login.microsoftonline.com/tenant/oauth2/v2.0/token, client_id: app,
       client_secret: "${DATAVERSE_CLIENT_SECRET}"}
entity_sets: {salesorder: salesorders}
status_column: new_syncstatus
status_values: {pending: 1, completed: 2, failed: 3}
error_column: new_syncerror
answer_columns: {new_erpnumber: order_number}
)",
};

}  // namespace

void DataverseConfig::Describe(const std::string& k, std::ostream& o) const {
  o << k << "source: " << source << ", url " << url << api_path << ", token_url " << token_url
    << " client_id " << client_id << " client_secret " << (client_secret.empty() ? "(none)" : "***")
    << " scope " << scope << "\n"
    << k << "status_column: " << status_column;
  for (const auto& [state, v] : status_values) o << " " << state << "=" << v;
  o << (error_column.empty() ? "" : ", error_column " + error_column);
  for (const auto& [col, name] : answer_columns) o << ", " << col << "<-" << name;
  o << "\n"
    << k << "max_concurrency: " << max_concurrency << ", max_requests_per_second "
    << max_requests_per_second << "\n";
}

Status DataverseConfig::Validate(const std::string& name, const Config& config) const {
  const AdapterConfig* src = config.FindAdapter(source);
  if (src == nullptr || !src->status_source().empty()) {
    return KeyError("adapters." + name + ".source",
                    "must name another adapter (not a write-back one), got '" + source + "'");
  }
  return Status::Ok();
}

const AdapterKind kDataverseKind{
    .type = "dataverse", .parse = &ParseDataverse, .examples = kExamples};

}  // namespace dvrouter
