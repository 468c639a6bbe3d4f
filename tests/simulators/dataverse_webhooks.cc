#include "tests/simulators/dataverse_webhooks.h"

#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>

#include "adapters/common/http_client.h"
#include "router/common/encoding.h"
#include "router/common/json.h"

namespace dvrouter::sim {
namespace {

constexpr const char* kDefaultUser = "75c2dd85-e89e-e711-8122-000d3aa2331c";
constexpr const char* kContracts = R"(:http:\/\/schemas.microsoft.com\/xrm\/2011\/Contracts)";
// What a failed webhook job's errorcode holds (a .NET exception's HRESULT, 0x80131500).
constexpr const char* kJobErrorCode = "-2146233088";

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A typed column value of a change: {"@odata.type":T,"id":G,"logicalname":L} or {..,"value":N}.
struct Typed {
  std::string type, id, logical, value;
};

bool ParseTyped(const std::string& raw, Typed* t) {
  if (raw.empty() || raw.front() != '{') return false;
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  if (parser.parse(raw).get(obj) != simdjson::SUCCESS) return false;
  std::string_view s;
  if (obj["@odata.type"].get(s) != simdjson::SUCCESS) return false;
  t->type = std::string(s);
  if (obj["id"].get(s) == simdjson::SUCCESS) t->id = std::string(s);
  if (obj["logicalname"].get(s) == simdjson::SUCCESS) t->logical = std::string(s);
  simdjson::dom::element v;
  if (obj["value"].get(v) == simdjson::SUCCESS) t->value = simdjson::minify(v);
  if (t->type == "EntityReference") return IsGuid(t->id) && !t->logical.empty();
  return (t->type == "OptionSetValue" || t->type == "Money") && !t->value.empty();
}

std::string EntityRef(const std::string& id, const std::string& logical) {
  return std::string(R"({"__type":"EntityReference)") + kContracts + R"(","Id":")" + id +
         R"(","KeyAttributes":[],"LogicalName":")" + logical +
         R"(","Name":null,"RowVersion":null})";
}

std::string DateValue(int64_t ms) { return R"("\/Date()" + std::to_string(ms) + R"()\/")"; }

// A change's column value as the webhook body carries it.
std::string WebhookValue(const std::string& raw) {
  Typed t;
  if (ParseTyped(raw, &t)) {
    if (t.type == "EntityReference") return EntityRef(t.id, t.logical);
    return R"({"__type":")" + t.type + kContracts + R"(","Value":)" + t.value + "}";
  }
  int64_t ms = 0;
  if (raw.size() > 2 && raw.front() == '"' && ParseIsoMs(Unquote(raw), &ms)) return DateValue(ms);
  return raw;
}

// A change's column stored in the row: lookups as _name_value, typed values as their value.
void StoreColumn(Columns* row, const std::string& name, const std::string& raw) {
  Typed t;
  if (!ParseTyped(raw, &t)) {
    (*row)[name] = raw;
  } else if (t.type == "EntityReference") {
    (*row)["_" + name + "_value"] = Quote(t.id);
  } else {
    (*row)[name] = t.value;
  }
}

std::string Get(const Columns& c, const std::string& key) {
  auto it = c.find(key);
  return it == c.end() ? "" : Unquote(it->second);
}

const Columns* FindRow(const std::vector<Columns>& rows, const std::string& key,
                       const std::string& id) {
  for (const Columns& c : rows) {
    if (!id.empty() && Get(c, key) == id) return &c;
  }
  return nullptr;
}

std::string XmlUnescape(std::string s) {
  const std::pair<const char*, const char*> entities[] = {
      {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&apos;", "'"}, {"&amp;", "&"}};
  for (const auto& [from, to] : entities) {
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + 1)) {
      s.replace(at, std::string_view(from).size(), to);
    }
  }
  return s;
}

// <settings><setting name="N" value="V"/>...</settings> -> (N, V) pairs.
std::vector<std::pair<std::string, std::string>> Settings(const std::string& xml) {
  std::vector<std::pair<std::string, std::string>> out;
  auto attr = [](const std::string& tag, const std::string& name) {
    const size_t at = tag.find(name + "=\"");
    if (at == std::string::npos) return std::string();
    const size_t start = at + name.size() + 2, end = tag.find('"', start);
    return XmlUnescape(tag.substr(start, end - start));
  };
  for (size_t at = xml.find("<setting "); at != std::string::npos;
       at = xml.find("<setting ", at + 1)) {
    const std::string tag = xml.substr(at, xml.find('>', at) - at);
    out.emplace_back(attr(tag, "name"), attr(tag, "value"));
  }
  return out;
}

struct Event {
  std::string message, table, id, user, correlation, assignee;
  std::vector<std::pair<std::string, std::string>> attributes;  // webhook values
  std::vector<std::string> changed;                             // column names
  int64_t now_ms = 0;
};

std::string ContextBody(const Event& e, const std::string& operation_id, const std::string& step_id,
                        const std::string& step_name, int mode, int stage) {
  std::string target;
  if (e.message == "Delete" || e.message == "Assign") {
    target = EntityRef(e.id, e.table);
  } else {
    target = std::string(R"({"__type":"Entity)") + kContracts + R"(","Attributes":[)";
    for (size_t i = 0; i < e.attributes.size(); ++i) {
      target += (i ? "," : "") + std::string(R"({"key":)") + Quote(e.attributes[i].first) +
                R"(,"value":)" + e.attributes[i].second + "}";
    }
    target += R"(],"EntityState":null,"FormattedValues":[],"Id":")" + e.id +
              R"(","KeyAttributes":[],"LogicalName":")" + e.table +
              R"(","RelatedEntities":[],"RowVersion":null})";
  }
  std::string input = R"([{"key":"Target","value":)" + target + "}";
  if (e.message == "Assign") input += R"(,{"key":"Assignee","value":)" + e.assignee + "}";
  input += "]";
  const std::string output =
      e.message == "Create" ? R"([{"key":"id","value":")" + e.id + R"("}])" : "[]";
  const std::string zero = "00000000-0000-0000-0000-000000000000";
  return R"({"BusinessUnitId":"e2b9dd85-e89e-e711-8122-000d3aa2331c","CorrelationId":")" +
         e.correlation + R"(","Depth":1,"InitiatingUserAgent":"",)" +
         R"("InitiatingUserAzureActiveDirectoryObjectId":")" + zero + R"(","InitiatingUserId":")" +
         e.user + R"(","InputParameters":)" + input +
         R"(,"IsExecutingOffline":false,"IsInTransaction":)" + (mode == 0 ? "true" : "false") +
         R"(,"IsOfflinePlayback":false,"IsolationMode":1,"MessageName":")" + e.message +
         R"(","Mode":)" + std::to_string(mode) + R"(,"OperationCreatedOn":)" + DateValue(e.now_ms) +
         R"(,"OperationId":")" + operation_id +
         R"(","OrganizationId":"4ef5b371-e89e-e711-8122-000d3aa2331c","OrganizationName":"simorg",)"
         R"("OutputParameters":)" +
         output + R"(,"OwningExtension":{"Id":")" + step_id +
         R"(","KeyAttributes":[],"LogicalName":"sdkmessageprocessingstep","Name":)" +
         Quote(step_name) +
         R"(,"RowVersion":null},"ParentContext":null,"PostEntityImages":[],"PreEntityImages":[],)"
         R"("PrimaryEntityId":")" +
         e.id + R"(","PrimaryEntityName":")" + e.table + R"(","RequestId":)" +
         (mode == 0 ? Quote(operation_id) : "null") +
         R"(,"SecondaryEntityName":"none","SharedVariables":[],"Stage":)" + std::to_string(stage) +
         R"(,"UserAzureActiveDirectoryObjectId":")" + zero + R"(","UserId":")" + e.user + "\"}";
}

// locked: one delivery per registered, enabled step of the event's table and message.
void StepDeliveries(Org* org, const Event& e, std::vector<Delivery>* out) {
  struct Ranked {
    int rank;
    size_t order;
    Delivery d;
  };
  std::vector<Ranked> found;
  const auto& steps = org->collections["sdkmessageprocessingsteps"];
  for (size_t i = 0; i < steps.size(); ++i) {
    const Columns& step = steps[i];
    if (const std::string state = Get(step, "statecode"); !state.empty() && state != "0") continue;
    const Columns* filter = FindRow(org->collections["sdkmessagefilters"], "sdkmessagefilterid",
                                    Get(step, "_sdkmessagefilterid_value"));
    if (filter == nullptr || Get(*filter, "primaryobjecttypecode") != e.table) continue;
    std::string message_id = Get(step, "_sdkmessageid_value");
    if (message_id.empty()) message_id = Get(*filter, "_sdkmessageid_value");
    const Columns* message = FindRow(org->collections["sdkmessages"], "sdkmessageid", message_id);
    if (message == nullptr || Get(*message, "name") != e.message) continue;
    std::string endpoint_id = Get(step, "_eventhandler_serviceendpoint_value");
    if (endpoint_id.empty()) endpoint_id = Get(step, "_eventhandler_value");
    const Columns* endpoint =
        FindRow(org->collections["serviceendpoints"], "serviceendpointid", endpoint_id);
    if (endpoint == nullptr) continue;
    if (const std::string filtering = Get(step, "filteringattributes");
        e.message == "Update" && !filtering.empty()) {
      bool hit = false;
      for (const std::string& c : e.changed) {
        std::string list = "," + filtering + ",";
        list.erase(std::remove(list.begin(), list.end(), ' '), list.end());
        hit = hit || list.find("," + c + ",") != std::string::npos;
      }
      if (!hit) continue;
    }
    Delivery d;
    d.url = Get(*endpoint, "url");
    const std::string authtype = Get(*endpoint, "authtype"),
                      authvalue = Get(*endpoint, "authvalue");
    if (authtype == "4") {
      d.url += (d.url.find('?') == std::string::npos ? "?code=" : "&code=") + UrlEncode(authvalue);
    } else if (authtype == "5") {
      d.headers = Settings(authvalue);
    } else if (authtype == "6") {
      for (const auto& [k, v] : Settings(authvalue)) {
        d.url +=
            (d.url.find('?') == std::string::npos ? "?" : "&") + UrlEncode(k) + "=" + UrlEncode(v);
      }
    }
    const int mode = std::atoi(Get(step, "mode").c_str());
    const int stage = std::atoi(Get(step, "stage").c_str());
    d.async = mode == 1;
    d.operation_id = RandomGuid();
    d.correlation_id = e.correlation;
    d.step_id = Get(step, "sdkmessageprocessingstepid");
    d.step_name = Get(step, "name");
    d.message = e.message;
    d.table = e.table;
    d.row_id = e.id;
    d.user = e.user;
    d.created_s = e.now_ms / 1000;
    d.body = ContextBody(e, d.operation_id, d.step_id, d.step_name, mode, stage);
    found.push_back({std::atoi(Get(step, "rank").c_str()), i, std::move(d)});
  }
  std::stable_sort(found.begin(), found.end(),
                   [](const Ranked& a, const Ranked& b) { return a.rank < b.rank; });
  for (Ranked& r : found) out->push_back(std::move(r.d));
}

void AddStamps(Event* e, bool create) {
  if (create) e->attributes.emplace_back("createdon", DateValue(e->now_ms / 1000 * 1000));
  e->attributes.emplace_back("modifiedon", DateValue(e->now_ms / 1000 * 1000));
}

}  // namespace

bool ParseChanges(std::string_view body, std::vector<Change>* out, std::string* error) {
  simdjson::dom::parser parser;
  simdjson::dom::array changes;
  if (parser.parse(body.data(), body.size()).get(changes) != simdjson::SUCCESS) {
    *error = "the body is not a JSON array of changes";
    return false;
  }
  for (simdjson::dom::element el : changes) {
    Change c;
    std::string_view s;
    if (el["op"].get(s) != simdjson::SUCCESS) return *error = "a change without op", false;
    c.op = std::string(s);
    if (c.op != "create" && c.op != "update" && c.op != "delete" && c.op != "assign") {
      return *error = "unknown op " + c.op, false;
    }
    if (el["table"].get(s) != simdjson::SUCCESS) return *error = "a change without table", false;
    c.table = std::string(s);
    if (el["id"].get(s) != simdjson::SUCCESS || !IsGuid(s)) {
      return *error = "a change without a GUID id", false;
    }
    c.id = std::string(s);
    if (el["user"].get(s) == simdjson::SUCCESS) c.user = std::string(s);
    simdjson::dom::object cols;
    if (el["columns"].get(cols) == simdjson::SUCCESS) {
      for (auto [k, v] : cols) {
        const std::string raw = simdjson::minify(v);
        Typed t;
        if (v.is_object() && !ParseTyped(raw, &t)) {
          return *error = "column " + std::string(k) +
                          ": objects must be EntityReference {id, logicalname} or "
                          "OptionSetValue/Money {value}",
                 false;
        }
        c.columns[std::string(k)] = raw;
      }
    }
    if (c.op == "assign") {
      Typed t;
      auto it = c.columns.find("ownerid");
      if (it == c.columns.end() || !ParseTyped(it->second, &t) || t.type != "EntityReference") {
        return *error = "assign needs columns.ownerid as an EntityReference", false;
      }
    }
    out->push_back(std::move(c));
  }
  return true;
}

bool ApplyChanges(Org* org, const std::vector<Change>& changes, std::vector<Delivery>* out,
                  std::string* error) {
  std::map<std::pair<std::string, std::string>, bool> exists;
  for (const Change& c : changes) {
    const std::string set = org->SetOf(c.table);
    if (set.empty()) return *error = "unknown table " + c.table, false;
    const auto key = std::make_pair(set, c.id);
    auto it = exists.find(key);
    const bool present = it != exists.end() ? it->second : org->rows[set].count(c.id) != 0;
    if (c.op == "create" && present) return *error = c.table + " " + c.id + " exists", false;
    if (c.op != "create" && !present) {
      return *error = c.table + " " + c.id + " does not exist", false;
    }
    exists[key] = c.op != "delete";
  }
  for (const Change& c : changes) {
    const std::string set = org->SetOf(c.table);
    auto& rows = org->rows[set];
    Event e;
    e.message = c.op == "create"   ? "Create"
                : c.op == "update" ? "Update"
                : c.op == "delete" ? "Delete"
                                   : "Assign";
    e.table = c.table;
    e.id = c.id;
    e.user = c.user.empty() ? kDefaultUser : c.user;
    e.correlation = RandomGuid();
    e.now_ms = WallMs();
    const int64_t now_s = e.now_ms / 1000;
    for (const auto& [k, v] : c.columns) {
      e.attributes.emplace_back(k, WebhookValue(v));
      e.changed.push_back(k);
    }
    if (c.op == "delete") {
      rows.erase(c.id);
      org->deleted[set].push_back(Tombstone{c.id, org->NextVersion(), now_s});
    } else {
      Row& row = rows[c.id];
      if (c.op == "create") {
        row = Row{c.table, {}, 0, now_s, now_s};
        e.attributes.emplace_back(c.table + "id", Quote(c.id));
      } else if (c.op == "update") {
        e.attributes.emplace_back(c.table + "id", Quote(c.id));
      }
      for (const auto& [k, v] : c.columns) StoreColumn(&row.columns, k, v);
      // Who made the change, as the Web API shows it (the loop guard's input on reads).
      if (c.op == "create") row.columns["_createdby_value"] = Quote(e.user);
      row.columns["_modifiedby_value"] = Quote(e.user);
      row.version = org->NextVersion();
      row.modified_s = now_s;
      if (c.op == "assign") e.assignee = WebhookValue(c.columns.at("ownerid"));
      if (c.op != "assign") AddStamps(&e, c.op == "create");
    }
    ++org->changes_applied;
    StepDeliveries(org, e, out);
  }
  return true;
}

void PatchDeliveries(Org* org, const std::string& set, const std::string& id,
                     const Columns& patched, std::vector<Delivery>* out) {
  auto row = org->rows[set].find(id);
  if (row == org->rows[set].end()) return;
  Event e;
  e.message = "Update";
  e.table = row->second.table;
  e.id = id;
  e.user = org->app_user;
  e.correlation = RandomGuid();
  e.now_ms = WallMs();
  for (const auto& [k, v] : patched) {
    std::string name = k, value = v;
    if (k.ends_with("@odata.bind")) {  // "/accounts(<id>)" -> an EntityReference
      name = k.substr(0, k.size() - 11);
      const std::string target = Unquote(v);
      const size_t open = target.find('('), close = target.find(')');
      if (open == std::string::npos || close == std::string::npos) continue;
      auto table =
          org->table_of_set.find(target.substr(target[0] == '/', open - (target[0] == '/')));
      value = EntityRef(target.substr(open + 1, close - open - 1),
                        table == org->table_of_set.end() ? "" : table->second);
    } else {
      value = WebhookValue(v);
    }
    e.attributes.emplace_back(name, value);
    e.changed.push_back(name);
  }
  e.attributes.emplace_back(e.table + "id", Quote(id));
  AddStamps(&e, false);
  StepDeliveries(org, e, out);
}

Sender::Sender(Org* org, int64_t timeout_ms, const std::string& acked_log)
    : org_(org),
      timeout_ms_(timeout_ms),
      acked_log_(acked_log.empty() ? nullptr : std::fopen(acked_log.c_str(), "a")),
      thread_([this] { Run(); }) {
  if (!acked_log.empty() && acked_log_ == nullptr) {
    std::fprintf(stderr, "dataverse-sim: cannot open --acked-log %s\n", acked_log.c_str());
  }
}

Sender::~Sender() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  if (acked_log_ != nullptr) std::fclose(acked_log_);
  for (Batch& b : queue_) {
    if (b.exchange != nullptr) b.exchange->Respond(ODataError(503, "0x0", "simulator stopping"));
  }
}

void Sender::Enqueue(std::vector<Delivery> deliveries, int64_t changes, HttpExchange* exchange) {
  std::lock_guard<std::mutex> lock(mu_);
  queue_.push_back(Batch{std::move(deliveries), changes, exchange});
  cv_.notify_all();
}

void Sender::LogAcked(std::string_view answer) {
  constexpr std::string_view kKey = "\"event_id\":\"";
  const size_t at = answer.find(kKey);
  if (acked_log_ == nullptr || at == std::string_view::npos) return;
  const size_t start = at + kKey.size(), end = answer.find('"', start);
  if (end == std::string_view::npos) return;
  // Flushed at once: the log must hold every acknowledgement even if the simulator is killed.
  std::fprintf(acked_log_, "%.*s\n", static_cast<int>(end - start), answer.data() + start);
  std::fflush(acked_log_);
}

void Sender::Run() {
  HttpClientOptions options;
  options.request_timeout_ms = static_cast<uint64_t>(timeout_ms_);
  options.connect_timeout_ms = static_cast<uint64_t>(std::min<int64_t>(timeout_ms_, 5000));
  HttpClient http(options);
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    Batch batch = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    int64_t delivered = 0, failed = 0, jobs = 0;
    for (const Delivery& d : batch.deliveries) {
      std::string failure;
      bool on;
      {
        std::lock_guard<std::mutex> org_lock(org_->mu);
        on = org_->webhooks_on;
      }
      if (!on) failure = "The webhook endpoint is not available (webhooks are off)";
      for (int attempt = 0; on && attempt < 2; ++attempt) {
        ClientRequest req;
        req.url = d.url;
        req.body = d.body;
        req.headers = {{"Content-Type", "application/json"},
                       {"x-request-id", RandomGuid()},
                       {"x-ms-correlation-request-id", d.correlation_id},
                       {"x-ms-dynamics-organization", org_->organization},
                       {"x-ms-dynamics-entity-name", d.table},
                       {"x-ms-dynamics-request-name", d.message}};
        req.headers.insert(req.headers.end(), d.headers.begin(), d.headers.end());
        Result<ClientResponse> r = http.Send(req);
        {
          std::lock_guard<std::mutex> org_lock(org_->mu);
          ++org_->webhooks_posted;
        }
        if (!r.ok()) {
          failure = r.status().code() == StatusCode::kDeadlineExceeded
                        ? "The webhook did not answer within " + std::to_string(timeout_ms_) + " ms"
                        : "The webhook could not be reached: " + std::string(r.status().message());
          break;
        }
        if (r->status / 100 == 2) {
          failure.clear();
          LogAcked(r->body);
          break;
        }
        failure = "The webhook answered " + std::to_string(r->status);
        if (r->status != 502 && r->status != 503 && r->status != 504) break;
      }
      std::lock_guard<std::mutex> org_lock(org_->mu);
      if (failure.empty() && org_->ack_lost > 0) {
        --org_->ack_lost;
        failure = "The webhook did not answer within " + std::to_string(timeout_ms_) +
                  " ms (its answer was lost)";
      }
      if (failure.empty()) {
        ++delivered;
        ++org_->webhooks_delivered;
        continue;
      }
      ++failed;
      ++org_->webhooks_failed;
      std::fprintf(stderr, "dataverse-sim: %s of %s %s by step %s failed: %s\n", d.message.c_str(),
                   d.table.c_str(), d.row_id.c_str(), d.step_name.c_str(), failure.c_str());
      if (!d.async) continue;  // Dataverse would roll the operation back; the row stays here
      ++jobs;
      ++org_->failed_jobs;
      Job job;
      job.id = d.operation_id;
      job.completed_s = std::max(WallSeconds(), org_->last_completed_s + 1);
      org_->last_completed_s = job.completed_s;
      Columns& c = job.columns;
      c["@odata.etag"] = Quote("W/\"" + std::to_string(org_->NextVersion()) + "\"");
      c["asyncoperationid"] = Quote(d.operation_id);
      c["name"] = Quote(d.step_name);
      c["operationtype"] = "1";
      c["statecode"] = "3";
      c["statuscode"] = "31";
      c["messagename"] = Quote(d.message);
      c["primaryentitytype"] = Quote(d.table);
      c["_regardingobjectid_value"] = Quote(d.row_id);
      c["_owningextensionid_value"] = Quote(d.step_id);
      c["_createdby_value"] = Quote(d.user);
      c["correlationid"] = Quote(d.correlation_id);
      c["createdon"] = Quote(IsoTime(std::min(d.created_s, job.completed_s)));
      c["completedon"] = Quote(IsoTime(job.completed_s));
      c["modifiedon"] = c["completedon"];
      c["errorcode"] = kJobErrorCode;
      c["friendlymessage"] = Quote(failure);
      c["message"] = Quote("Plugin Exception: System.Net.WebException: " + failure + " (url " +
                           d.url.substr(0, d.url.find('?')) + ")");
      org_->jobs.push_back(std::move(job));
    }
    if (batch.exchange != nullptr) {
      batch.exchange->Respond(Json(200, R"({"changes":)" + std::to_string(batch.changes) +
                                            R"(,"delivered":)" + std::to_string(delivered) +
                                            R"(,"failed_jobs":)" + std::to_string(jobs) +
                                            R"(,"failed":)" + std::to_string(failed) + "}"));
    }
    lock.lock();
  }
}

}  // namespace dvrouter::sim
