// dvrouter-dataverse-sim: the parts of a Dataverse organization dvrouter talks to, for tests and
// trying the write-back by hand. Plain HTTP/1.1 (on dvrouter's own Beast server):
//
//   POST /<tenant>/oauth2/v2.0/token   client credentials (form body) -> access_token, expires_in
//   PATCH /api/data/v9.2/<set>(<id>)   merges the JSON body's columns into the row. Bearer token
//                                      required (401). With `If-Match: *` an unknown row is 404
//                                      (the OData error Dataverse sends); without, it is created.
//                                      A column in the reject list answers 400. Every PATCH is
//                                      logged (GET /_patches).
//   GET  /api/data/v9.2/<set>(<id>)    the row's columns, or 404.
//   GET|POST|PATCH /api/data/v9.2/<collection>[(<id>)][?$filter=a eq 'x' and b eq <guid>]
//                                      registration tables (serviceendpoints,
//                                      sdkmessageprocessingsteps, sdkmessageprocessingstepimages,
//                                      sdkmessages, sdkmessagefilters): stored and filtered
//                                      generically; POST answers 201 with the row (as with
//                                      Prefer: return=representation). sdkmessages holds Create,
//                                      Update, Delete, Assign and SetState; sdkmessagefilters a
//                                      row for every message on each --tables table.
//   POST /_rows?set=S&table=T&id=G     seeds a row (body: its columns as a JSON object);
//   GET  /_rows?set=S&id=G             reads one without a token.
//   GET  /_patches, GET /_stats        the PATCH log and counters, as JSON.
//   POST /_control?...                 throttle=N&retry_after=S (the next N requests get 429),
//                                      limit=N&window_ms=W (service protection: more than N
//                                      requests in a sliding window get 429 with the seconds until
//                                      one frees), reject_column=C / accept_column=C, outage=1|0,
//                                      webhook=URL (as --webhook).
//
// Flags: --listen HOST:PORT (0: a free port), --client ID:SECRET, --token-ttl-s, --app-user GUID
// (the user the client's token acts as), --webhook URL [--webhook-header NAME:VALUE]: after each
// accepted PATCH of a row, posts the Update notification Dataverse would send (InitiatingUserId
// the app user, Target the PATCHed columns) to URL, as a registered step would.
// Prints "dataverse-sim listening on HOST:PORT" on stderr once ready; stops on SIGTERM or SIGINT.
#include <simdjson.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "adapters/common/http_client.h"
#include "router/common/json.h"
#include "router/ingress/server.h"
#include "tests/simulators/sim_main.h"

namespace dvrouter::sim {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Options {
  std::string listen = "127.0.0.1:0";
  std::string client = "dvrouter:secret";
  int token_ttl_s = 3600;
  std::string app_user = "9f3c1d2e-0000-4000-8000-00000000a001";
  std::string webhook;
  std::string webhook_header;
  // Tables the organization has: sdkmessagefilters exist for these only.
  std::vector<std::string> tables = {"account",           "contact",     "incident",
                                     "msdyn_agentstatus", "opportunity", "salesorder"};
};

HttpResponse Json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

HttpResponse ODataError(int status, const std::string& code, const std::string& message) {
  std::string body = R"({"error":{"code":")" + code + R"(","message":)";
  AppendJsonString(&body, message);
  return Json(status, body + "}}");
}

using Columns = std::map<std::string, std::string>;  // name -> raw JSON value

std::string ColumnsJson(const Columns& c) {
  std::string out = "{";
  for (const auto& [k, v] : c) {
    if (out.size() > 1) out += ",";
    AppendJsonString(&out, k);
    out += ":" + v;
  }
  return out + "}";
}

bool ParseColumns(std::string_view body, Columns* out) {
  simdjson::dom::parser parser;
  simdjson::dom::object obj;
  if (parser.parse(body.data(), body.size()).get(obj) != simdjson::SUCCESS) return false;
  for (auto [k, v] : obj) (*out)[std::string(k)] = simdjson::minify(v);
  return true;
}

std::string Unquote(std::string v) {
  if (v.size() >= 2 && v.front() == '"') {
    simdjson::dom::parser parser;
    std::string_view s;
    if (parser.parse(v).get_string().get(s) == simdjson::SUCCESS) return std::string(s);
  }
  return v;
}

std::string NewGuid(uint64_t n, uint32_t kind) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%08x-5151-4000-8000-%012llx", kind,
                static_cast<unsigned long long>(n));
  return buf;
}

// Posts notifications to the webhook URL, in order, from one thread.
class Notifier {
 public:
  Notifier(std::string url, std::string header)
      : url_(std::move(url)), header_(std::move(header)), thread_([this] { Run(); }) {}
  ~Notifier() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  bool enabled() const {
    std::lock_guard<std::mutex> lock(mu_);
    return !url_.empty();
  }
  void set_url(std::string url) {
    std::lock_guard<std::mutex> lock(mu_);
    url_ = std::move(url);
  }
  void Post(std::string body) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(body));
    cv_.notify_all();
  }
  int64_t sent() const {
    std::lock_guard<std::mutex> lock(mu_);
    return sent_;
  }

 private:
  void Run() {
    HttpClient http;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      std::string body = std::move(queue_.front());
      queue_.pop_front();
      ClientRequest req;
      req.url = url_;
      lock.unlock();
      req.body = std::move(body);
      req.headers = {{"Content-Type", "application/json"}};
      if (const size_t colon = header_.find(':'); colon != std::string::npos) {
        req.headers.emplace_back(header_.substr(0, colon), header_.substr(colon + 1));
      }
      Result<ClientResponse> r = http.Send(req);
      if (!r.ok() || r->status != 200) {
        std::fprintf(
            stderr, "dataverse-sim: webhook post failed: %s\n",
            r.ok() ? std::to_string(r->status).c_str() : std::string(r.status().message()).c_str());
      }
      lock.lock();
      ++sent_;
    }
  }
  std::string url_, header_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  bool stop_ = false;
  int64_t sent_ = 0;
  std::thread thread_;
};

class DataverseSim final : public HttpHandler {
 public:
  explicit DataverseSim(Options o) : o_(std::move(o)), notifier_(o_.webhook, o_.webhook_header) {
    const char* messages[] = {"Create", "Update", "Delete", "Assign", "SetState"};
    uint64_t n = 0;
    for (const char* m : messages) {
      Columns c;
      c["sdkmessageid"] = "\"" + NewGuid(++n, 0x5d4) + "\"";
      c["name"] = std::string("\"") + m + "\"";
      collections_["sdkmessages"].push_back(c);
    }
  }

  void Handle(const HttpRequestView& req, HttpConnectionState*, HttpExchange* exchange,
              int) override {
    const std::string_view path = TargetPath(req.target);
    if (path.ends_with("/oauth2/v2.0/token") && req.method == "POST") {
      return exchange->Respond(Token(req.body()));
    }
    if (path == "/_stats") return exchange->Respond(Json(200, Stats()));
    if (path == "/_patches") return exchange->Respond(Json(200, Patches()));
    if (path == "/_control") return exchange->Respond(Control(req.target));
    if (path == "/_rows") return exchange->Respond(Seed(req.method, req.target, req.body()));
    constexpr std::string_view kApi = "/api/data/v9.2/";
    if (!path.starts_with(kApi)) return exchange->Respond(ODataError(404, "0x0", "no route"));
    exchange->Respond(Api(req, std::string(path.substr(kApi.size()))));
  }

 private:
  HttpResponse Api(const HttpRequestView& req, const std::string& resource) {
    std::lock_guard<std::mutex> lock(mu_);
    ++requests_;
    const int64_t now = NowMs();
    // A request later than 300 ms after a 429 (time for the ones already on their way) but
    // sooner than its Retry-After did not honour it.
    if (now > last_429_ms_ + 300 && now < last_429_ms_ + last_retry_after_s_ * 1000) {
      ++early_after_429_;
    }
    const std::string_view auth = req.headers->get("authorization");
    auto tok =
        auth.starts_with("Bearer ") ? tokens_.find(std::string(auth.substr(7))) : tokens_.end();
    if (tok == tokens_.end() || tok->second <= now) {
      ++unauthorized_;
      return ODataError(401, "0x80072184", "Bearer token missing, unknown or expired");
    }
    if (outage_) {
      ++errors_5xx_;
      return ODataError(503, "0x80040216", "Service unavailable");
    }
    if (throttle_ > 0) {
      --throttle_;
      return Throttled(retry_after_s_);
    }
    if (limit_ > 0) {
      while (!window_.empty() && window_.front() <= now - window_ms_) window_.pop_front();
      if (static_cast<int64_t>(window_.size()) >= limit_) {
        const int64_t wait_ms = window_.front() + window_ms_ - now;
        return Throttled(std::max<int64_t>(1, (wait_ms + 999) / 1000));
      }
      window_.push_back(now);
    }
    // <set>(<id>) or <collection>
    std::string set = resource, id;
    if (const size_t open = resource.find('('); open != std::string::npos) {
      set = resource.substr(0, open);
      const size_t close = resource.find(')', open);
      if (close == std::string::npos) return ODataError(400, "0x0", "bad resource " + resource);
      id = resource.substr(open + 1, close - open - 1);
    }
    if (set.starts_with("sdk") || set == "serviceendpoints") {
      return Registration(req, set, id);
    }
    if (id.empty()) return ODataError(405, "0x0", "only single rows here: <set>(<id>)");
    if (req.method == "GET") {
      auto it = rows_[set].find(id);
      if (it == rows_[set].end()) return NotFound(set, id);
      return Json(200, ColumnsJson(it->second.columns));
    }
    if (req.method != "PATCH") return ODataError(405, "0x0", "method not allowed");
    return Patch(req, set, id);
  }

  HttpResponse Throttled(int64_t retry_after_s) {
    ++throttled_;
    last_429_ms_ = NowMs();
    last_retry_after_s_ = retry_after_s;
    HttpResponse r = ODataError(429, "0x80072322",
                                "Number of requests exceeded the limit of 6000 over time window "
                                "of 300 seconds.");
    r.retry_after_s = static_cast<uint32_t>(retry_after_s);
    return r;
  }

  HttpResponse NotFound(const std::string& set, const std::string& id) {
    ++not_found_;
    return ODataError(404, "0x80040217", set + " With Id = " + id + " Does Not Exist");
  }

  HttpResponse Patch(const HttpRequestView& req, const std::string& set, const std::string& id) {
    Columns cols;
    const std::string body(req.body());
    const bool if_match = req.headers->get("if-match") == "*";
    auto log = [&](int status) {
      std::string e = R"({"set":)";
      AppendJsonString(&e, set);
      e += R"(,"id":)";
      AppendJsonString(&e, id);
      e += R"(,"status":)" + std::to_string(status) + R"(,"if_match":)" +
           (if_match ? "true" : "false") + R"(,"body":)" +
           (ParseColumns(body, &cols) ? body : "null");
      patches_.push_back(e + "}");
    };
    if (!ParseColumns(body, &cols)) {
      log(400);
      return ODataError(400, "0x80040203", "The request body is not a JSON object");
    }
    for (const auto& [k, v] : cols) {
      if (rejected_columns_.count(k) != 0) {
        log(400);
        ++rejected_;
        return ODataError(400, "0x0",
                          "The property '" + k +
                              "' does not exist on type 'Microsoft.Dynamics."
                              "CRM." +
                              set +
                              "'. Make sure to only use property names that are defined "
                              "by the type.");
      }
    }
    auto& table = rows_[set];
    auto it = table.find(id);
    if (it == table.end()) {
      if (if_match) {
        log(404);
        return NotFound(set, id);
      }
      it = table.emplace(id, Row{set, {}}).first;
    }
    for (const auto& [k, v] : cols) it->second.columns[k] = v;
    log(204);
    ++patched_;
    if (notifier_.enabled()) notifier_.Post(Notification(it->second.table, id, cols));
    HttpResponse r;
    r.status = 204;
    r.content_type.clear();
    return r;
  }

  // The Update notification a step on the table would post: the app user's change.
  std::string Notification(const std::string& table, const std::string& id, const Columns& cols) {
    ++notifications_;
    const std::string op = NewGuid(notifications_, 0x0b5);
    std::string attrs;
    for (const auto& [k, v] : cols) {
      attrs += R"({"key":)";
      AppendJsonString(&attrs, k);
      attrs += R"(,"value":)" + v + "},";
    }
    attrs += R"({"key":")" + table + R"(id","value":")" + id + R"("})";
    return R"({"BusinessUnitId":"e2b9dd85-e89e-e711-8122-000d3aa2331c","CorrelationId":")" +
           NewGuid(notifications_, 0xc0) + R"(","Depth":1,"InitiatingUserId":")" + o_.app_user +
           R"(","InputParameters":[{"key":"Target","value":{"__type":"Entity:http:\/\/schemas.)"
           R"(microsoft.com\/xrm\/2011\/Contracts","Attributes":[)" +
           attrs + R"(],"EntityState":null,"FormattedValues":[],"Id":")" + id +
           R"(","KeyAttributes":[],"LogicalName":")" + table +
           R"(","RelatedEntities":[],"RowVersion":null}}],"IsExecutingOffline":false,)"
           R"("IsInTransaction":false,"IsOfflinePlayback":false,"IsolationMode":1,)"
           R"("MessageName":"Update","Mode":1,"OperationCreatedOn":"\/Date(1732792800000)\/",)"
           R"("OperationId":")" +
           op +
           R"(","OrganizationId":"4ef5b371-e89e-e711-8122-000d3aa2331c",)"
           R"("OrganizationName":"simorg","OutputParameters":[],"OwningExtension":{"Id":")" +
           NewGuid(1, 0x57e9) +
           R"(","KeyAttributes":[],"LogicalName":"sdkmessageprocessingstep","Name":null,)"
           R"("RowVersion":null},"ParentContext":null,"PostEntityImages":[],)"
           R"("PreEntityImages":[],"PrimaryEntityId":")" +
           id + R"(","PrimaryEntityName":")" + table +
           R"(","RequestId":null,"SecondaryEntityName":"none","SharedVariables":[],"Stage":40,)"
           R"("UserId":")" +
           o_.app_user + R"("})";
  }

  // --- registration tables ---
  HttpResponse Registration(const HttpRequestView& req, const std::string& set,
                            const std::string& id) {
    const std::string key = set.substr(0, set.size() - 1) + "id";  // serviceendpoints -> ...id
    auto& rows = collections_[set];
    if (req.method == "GET") {
      std::string filter;
      QueryParameter(req.target, "$filter", &filter);
      if (set == "sdkmessagefilters") EnsureFilter(filter);
      std::string out = R"({"value":[)";
      bool first = true;
      for (const Columns& c : rows) {
        if (!id.empty() && Unquote(c.at(key)) != id) continue;
        if (!Matches(c, filter)) continue;
        if (!first) out += ",";
        first = false;
        out += ColumnsJson(c);
      }
      return Json(200, out + "]}");
    }
    Columns cols;
    if (!ParseColumns(req.body(), &cols)) return ODataError(400, "0x0", "body is not JSON");
    // name@odata.bind: "/things(<id>)" is stored as the lookup's _name_value.
    Columns stored;
    for (const auto& [k, v] : cols) {
      if (k.ends_with("@odata.bind")) {
        const std::string target = Unquote(v);
        const size_t open = target.find('('), close = target.find(')');
        if (open == std::string::npos || close == std::string::npos) {
          return ODataError(400, "0x0", "bad @odata.bind value for " + k);
        }
        stored["_" + k.substr(0, k.size() - 11) + "_value"] =
            "\"" + target.substr(open + 1, close - open - 1) + "\"";
      } else {
        stored[k] = v;
      }
    }
    ++registrations_;
    if (req.method == "POST" && id.empty()) {
      stored[key] = "\"" + NewGuid(++created_, 0x4e6) + "\"";
      rows.push_back(stored);
      return Json(201, ColumnsJson(stored));
    }
    if (req.method == "PATCH" && !id.empty()) {
      for (Columns& c : rows) {
        if (Unquote(c.at(key)) != id) continue;
        for (const auto& [k, v] : stored) c[k] = v;
        HttpResponse r;
        r.status = 204;
        r.content_type.clear();
        return r;
      }
      return NotFound(set, id);
    }
    return ODataError(405, "0x0", "method not allowed on " + set);
  }

  // `a eq 'x' and b/c eq <guid>`: every clause must hold. Lookups (x/y) compare _x_value.
  static bool Matches(const Columns& c, const std::string& filter) {
    if (filter.empty()) return true;
    size_t pos = 0;
    while (pos < filter.size()) {
      size_t and_at = filter.find(" and ", pos);
      const std::string clause =
          filter.substr(pos, and_at == std::string::npos ? std::string::npos : and_at - pos);
      pos = and_at == std::string::npos ? filter.size() : and_at + 5;
      const size_t eq = clause.find(" eq ");
      if (eq == std::string::npos) return false;
      std::string field = clause.substr(0, eq), value = clause.substr(eq + 4);
      if (value.size() >= 2 && value.front() == '\'') value = value.substr(1, value.size() - 2);
      if (const size_t slash = field.find('/'); slash != std::string::npos) {
        field = "_" + field.substr(0, slash) + "_value";
      }
      auto it = c.find(field);
      if (it == c.end() || Unquote(it->second) != value) return false;
    }
    return true;
  }

  // sdkmessagefilters exist for every (message, table): made when first asked for.
  void EnsureFilter(const std::string& filter) {
    std::string message, table;
    size_t at = filter.find("sdkmessageid/sdkmessageid eq ");
    if (at != std::string::npos) message = filter.substr(at + 29, 36);
    at = filter.find("primaryobjecttypecode eq '");
    if (at != std::string::npos) {
      table = filter.substr(at + 26);
      table = table.substr(0, table.find('\''));
    }
    if (message.empty() || table.empty()) return;
    if (std::find(o_.tables.begin(), o_.tables.end(), table) == o_.tables.end()) return;
    auto& rows = collections_["sdkmessagefilters"];
    for (const Columns& c : rows) {
      if (Unquote(c.at("_sdkmessageid_value")) == message &&
          Unquote(c.at("primaryobjecttypecode")) == table) {
        return;
      }
    }
    Columns c;
    c["sdkmessagefilterid"] = "\"" + NewGuid(rows.size() + 1, 0xf17) + "\"";
    c["_sdkmessageid_value"] = "\"" + message + "\"";
    c["primaryobjecttypecode"] = "\"" + table + "\"";
    rows.push_back(c);
  }

  HttpResponse Token(std::string_view body) {
    std::string id, secret, grant;
    QueryParameter("/?" + std::string(body), "client_id", &id);
    QueryParameter("/?" + std::string(body), "client_secret", &secret);
    QueryParameter("/?" + std::string(body), "grant_type", &grant);
    std::lock_guard<std::mutex> lock(mu_);
    if (grant != "client_credentials" || id + ":" + secret != o_.client) {
      ++token_refusals_;
      return Json(401, R"({"error":"invalid_client","error_description":"AADSTS7000215"})");
    }
    const std::string token = "dv-" + std::to_string(++tokens_issued_);
    tokens_[token] = NowMs() + o_.token_ttl_s * 1000LL;
    return Json(200, R"({"token_type":"Bearer","expires_in":)" + std::to_string(o_.token_ttl_s) +
                         R"(,"access_token":")" + token + "\"}");
  }

  HttpResponse Seed(std::string_view method, std::string_view target, std::string_view body) {
    std::string set, table, id;
    QueryParameter(target, "set", &set);
    QueryParameter(target, "table", &table);
    QueryParameter(target, "id", &id);
    if (method == "GET") {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = rows_[set].find(id);
      if (it == rows_[set].end()) return Json(404, R"({"error":"no such row"})");
      return Json(200, ColumnsJson(it->second.columns));
    }
    Columns cols;
    if (set.empty() || table.empty() || id.empty() || !ParseColumns(body, &cols)) {
      return Json(400, R"({"error":"set, table, id and a JSON object body are required"})");
    }
    std::lock_guard<std::mutex> lock(mu_);
    rows_[set][id] = Row{table, cols};
    return Json(200, R"({"ok":true})");
  }

  HttpResponse Control(std::string_view target) {
    std::lock_guard<std::mutex> lock(mu_);
    std::string v;
    if (QueryParameter(target, "throttle", &v)) throttle_ = std::stoll(v);
    if (QueryParameter(target, "retry_after", &v)) retry_after_s_ = std::stoll(v);
    if (QueryParameter(target, "limit", &v)) limit_ = std::stoll(v);
    if (QueryParameter(target, "window_ms", &v)) window_ms_ = std::stoll(v);
    if (QueryParameter(target, "reject_column", &v)) rejected_columns_.insert(v);
    if (QueryParameter(target, "accept_column", &v)) rejected_columns_.erase(v);
    if (QueryParameter(target, "outage", &v)) outage_ = v == "1";
    if (QueryParameter(target, "webhook", &v)) notifier_.set_url(v);
    return Json(200, R"({"ok":true})");
  }

  std::string Patches() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out = "[";
    for (const std::string& p : patches_) {
      if (out.size() > 1) out += ",\n";
      out += p;
    }
    return out + "]";
  }

  std::string Stats() {
    std::lock_guard<std::mutex> lock(mu_);
    auto n = [](const char* k, int64_t v) {
      return std::string("\"") + k + "\":" + std::to_string(v);
    };
    return "{" + n("requests", requests_) + "," + n("patched", patched_) + "," +
           n("not_found", not_found_) + "," + n("throttled", throttled_) + "," +
           n("rejected", rejected_) + "," + n("unauthorized", unauthorized_) + "," +
           n("errors_5xx", errors_5xx_) + "," + n("tokens_issued", tokens_issued_) + "," +
           n("token_refusals", token_refusals_) + "," + n("registrations", registrations_) + "," +
           n("notifications", notifications_) + "," + n("notifications_sent", notifier_.sent()) +
           "," + n("early_after_429", early_after_429_) + "}";
  }

  struct Row {
    std::string table;
    Columns columns;
  };

  Options o_;
  std::mutex mu_;
  std::map<std::string, std::map<std::string, Row>> rows_;  // set -> id -> row
  std::map<std::string, std::vector<Columns>> collections_;
  std::vector<std::string> patches_;
  std::map<std::string, int64_t> tokens_;
  std::set<std::string> rejected_columns_;
  std::deque<int64_t> window_;
  int64_t throttle_ = 0, retry_after_s_ = 1, limit_ = 0, window_ms_ = 1000;
  bool outage_ = false;
  int64_t requests_ = 0, patched_ = 0, not_found_ = 0, throttled_ = 0, rejected_ = 0,
          unauthorized_ = 0, errors_5xx_ = 0, tokens_issued_ = 0, token_refusals_ = 0,
          registrations_ = 0, notifications_ = 0;
  uint64_t created_ = 0;
  int64_t last_429_ms_ = -1'000'000, last_retry_after_s_ = 0, early_after_429_ = 0;
  Notifier notifier_;
};

int Main(int argc, char** argv) {
  Options o;
  CLI::App app{"dvrouter-dataverse-sim: a Dataverse Web API for write-back and registration"};
  app.add_option("--listen", o.listen, "HOST:PORT (port 0: a free one)");
  app.add_option("--client", o.client, "CLIENT_ID:SECRET accepted at the token endpoint");
  app.add_option("--token-ttl-s", o.token_ttl_s, "lifetime of issued tokens");
  app.add_option("--app-user", o.app_user, "the user id the client's changes are made as");
  app.add_option("--webhook", o.webhook, "URL to post Update notifications of PATCHed rows to");
  app.add_option("--webhook-header", o.webhook_header, "NAME:VALUE sent with each notification");
  app.add_option("--tables", o.tables, "the organization's tables (logical names)")->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  return RunSimulator("dataverse-sim", o.listen, "", "", HttpServerLimits{},
                      [&] { return std::make_unique<DataverseSim>(o); });
}

}  // namespace
}  // namespace dvrouter::sim

int main(int argc, char** argv) { return dvrouter::sim::Main(argc, argv); }
