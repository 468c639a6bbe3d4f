// dvrouter-dataverse-sim: the parts of a Dataverse organization dvrouter talks to, for tests and
// trying the write-back and reconciliation by hand: an organization with registered steps that
// post webhooks, fail as system jobs, and keep versions for change tracking. Plain HTTP/1.1 (on
// dvrouter's own Beast server). Units: dataverse_org (shared state), dataverse_webhooks (changes,
// step deliveries, failed jobs), dataverse_queries (rows, asyncoperations, change tracking).
//
// Web API (Bearer token required: 401; every request counts toward throttle= and limit=):
//   POST /<tenant>/oauth2/v2.0/token   client credentials (form body) -> access_token, expires_in
//   PATCH /api/data/v9.2/<set>(<id>)   merges the JSON body's columns into the row (name@odata.bind
//                                      "/set(<id>)" stored as _name_value) and gives it a new
//                                      versionnumber. With `If-Match: *` an unknown row is 404
//                                      (the OData error Dataverse sends); without, it is created.
//                                      A column in the reject list answers 400. Every PATCH is
//                                      logged (GET /_patches). Registered Update steps fire as for
//                                      /_changes (InitiatingUserId the app user).
//   GET  /api/data/v9.2/<set>(<id>)    the row's columns plus <table>id, versionnumber, createdon,
//                                      modifiedon (ISO UTC) and @odata.etag W/"<versionnumber>";
//                                      404.
//   GET  /api/data/v9.2/EntityDefinitions(LogicalName='<table>')
//                                      {EntitySetName, PrimaryIdAttribute, LogicalName,
//                                      ChangeTrackingEnabled, MetadataId}; 404 (OData error) if
//                                      unknown. Tables: --tables and the seeded ones.
//   GET  /api/data/v9.2/asyncoperations[(<id>)]?$select=..&$filter=..&$orderby=..
//                                      failed system jobs. $filter: clauses joined by `and`, each
//                                      `field op literal` (eq ne gt ge lt le; 'string', number,
//                                      GUID, null, or an unquoted ISO datetime for createdon,
//                                      completedon, modifiedon) or a parenthesized `or` of them.
//                                      $orderby completedon|createdon|modifiedon [asc|desc]
//                                      (default completedon asc). Paged by Prefer:
//                                      odata.maxpagesize=N (5000): @odata.nextLink = the same
//                                      query + $skiptoken=<paging cookie naming the last job>.
//                                      Unknown fields or syntax: 400 {"error":{"code":
//                                      "0x80060888",...}}.
//   DELETE /api/data/v9.2/asyncoperations(<id>)   204, or 404.
//   GET  /api/data/v9.2/<set>?$select=a,b  with `Prefer: odata.track-changes` (may also carry
//                                      odata.maxpagesize=N): every row (paged by nextLink), then
//                                      @odata.deltaLink <set>?$select=a,b&$deltatoken=<version>
//                                      %21<MM/dd/yyyy HH:mm:ss>. On a delta link: rows created or
//                                      changed since (each once, current columns) and deleted ones
//                                      as {"@odata.context":"..$metadata#<set>/$deletedEntity",
//                                      "id":G,"reason":"deleted"}, then a new deltaLink. 400:
//                                      $filter/$orderby/$expand/$top with it (0x80060888), table
//                                      not tracked (0x80072491 "Entity T isn't enabled for change
//                                      tracking."), expired token (0x80044352 "Version stamp
//                                      associated with the client has expired. Please perform a
//                                      full sync.").
//   GET|POST|PATCH /api/data/v9.2/<collection>[(<id>)][?$filter=a eq 'x' and b eq <guid>]
//                                      registration tables (serviceendpoints,
//                                      sdkmessageprocessingsteps, sdkmessageprocessingstepimages,
//                                      sdkmessages, sdkmessagefilters): stored and filtered
//                                      generically; POST answers 201 with the row (as with
//                                      Prefer: return=representation). sdkmessages holds Create,
//                                      Update, Delete, Assign and SetState; sdkmessagefilters a
//                                      row for every message on each --tables table.
//
// Test controls (no token):
//   POST /_rows?set=S&table=T&id=G     seeds a row (body: its columns as a JSON object); maps
//   T<->S. GET  /_rows?set=S&id=G             one row's stored columns; without id every row of S
//   as
//                                      {"value":[<as GET <set>(<id>)>...]}. GET /_deleted?set=S:
//                                      the tombstones {"value":[{id, versionnumber, deletedon}]}.
//   POST /_changes                     [{"op":"create|update|delete|assign","table":T,"id":G,
//                                      "user":G?,"columns":{"name":"x","n":1.5,"parentaccountid":
//                                      {"@odata.type":"EntityReference","id":G,"logicalname":T},
//                                      "statuscode":{"@odata.type":"OptionSetValue","value":1}}}]
//                                      (assign: columns.ownerid). Applied in order (400 and none
//                                      applied if one is invalid), then every enabled step of that
//                                      table and message (filteringattributes honoured for Update)
//                                      posts its RemoteExecutionContext to its serviceendpoint
//                                      (WebhookKey: ?code=, HttpHeader/HttpQueryString: the
//                                      settings) from one sender thread: timeout
//                                      --webhook-timeout-ms, one retry on 502/503/504 only. A
//                                      failure of an async step adds a failed asyncoperation
//                                      (its id the body's OperationId; completedon strictly
//                                      increasing). Answered once all were posted:
//                                      {"changes":N,"delivered":D,"failed_jobs":F,"failed":X}.
//   GET  /_patches, GET /_stats        the PATCH log and counters, as JSON.
//   POST /_control?...                 throttle=N&retry_after=S (the next N requests get 429),
//                                      limit=N&window_ms=W (service protection: more than N
//                                      requests in a sliding window get 429 with the seconds until
//                                      one frees), reject_column=C / accept_column=C, outage=1|0,
//                                      webhook=URL (as --webhook), ack_lost=N (the next N webhooks
//                                      answered 2xx still fail as timeouts), webhooks=0|1 (0: no
//                                      posts, every delivery fails at once), change_tracking=T,
//                                      expire_delta_tokens=1 (every token so far expires),
//                                      malform=asyncoperations|rows|delta:missing_field|bad_guid|
//                                      not_json|status_500|truncated&count=N (the next N answers).
//
// Flags: --listen HOST:PORT (0: a free port), --client ID:SECRET, --token-ttl-s, --app-user GUID
// (the user the client's token acts as), --tables T[:SET],..., --change-tracking T (repeatable),
// --webhook-timeout-ms MS (60000), --acked-log FILE (appends the `event_id` of every step post
// the receiver answered 2xx, one per line: what the router acknowledged), --webhook URL
// [--webhook-header NAME:VALUE]: after each accepted PATCH of a row, posts the Update
// notification Dataverse would send (InitiatingUserId the app user, Target the PATCHed columns)
// to URL, whatever is registered.
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
#include "tests/simulators/dataverse_org.h"
#include "tests/simulators/dataverse_queries.h"
#include "tests/simulators/dataverse_webhooks.h"
#include "tests/simulators/sim_main.h"

namespace dvrouter::sim {
namespace {

struct Options {
  std::string listen = "127.0.0.1:0";
  std::string client = "dvrouter:secret";
  int token_ttl_s = 3600;
  std::string app_user = "9f3c1d2e-0000-4000-8000-00000000a001";
  std::string webhook;
  std::string webhook_header;
  int64_t webhook_timeout_ms = 60'000;
  std::string acked_log;  // the event ids of the registered steps' acknowledged posts
  // Tables the organization has (TABLE or TABLE:SET; the set is TABLE + "s" unless given):
  // sdkmessagefilters exist for these only.
  std::vector<std::string> tables = {"account",           "contact",     "incident",
                                     "msdyn_agentstatus", "opportunity", "salesorder"};
  std::vector<std::string> change_tracking;  // tables with change tracking on
};

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
  explicit DataverseSim(Options o)
      : o_(std::move(o)),
        sender_(&org_, o_.webhook_timeout_ms, o_.acked_log),
        notifier_(o_.webhook, o_.webhook_header) {
    org_.app_user = o_.app_user;
    const char* messages[] = {"Create", "Update", "Delete", "Assign", "SetState"};
    uint64_t n = 0;
    for (const char* m : messages) {
      Columns c;
      c["sdkmessageid"] = "\"" + NewGuid(++n, 0x5d4) + "\"";
      c["name"] = std::string("\"") + m + "\"";
      org_.collections["sdkmessages"].push_back(c);
    }
    std::vector<std::string> tables;
    for (const std::string& t : o_.tables) {
      const size_t colon = t.find(':');
      const std::string table = t.substr(0, colon);
      org_.MapTable(table, colon == std::string::npos ? table + "s" : t.substr(colon + 1));
      tables.push_back(table);
    }
    o_.tables = tables;
    for (const std::string& t : o_.change_tracking) org_.change_tracking.insert(t);
  }

  void set_port(uint16_t port) { org_.port = port; }

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
    if (path == "/_deleted") return exchange->Respond(Deleted(req.target));
    if (path == "/_changes" && req.method == "POST") return Changes(req, exchange);
    constexpr std::string_view kApi = "/api/data/v9.2/";
    if (!path.starts_with(kApi)) return exchange->Respond(ODataError(404, "0x0", "no route"));
    exchange->Respond(Api(req, std::string(path.substr(kApi.size()))));
  }

 private:
  // POST /_changes: applied now; answered by the sender once their webhooks were posted.
  void Changes(const HttpRequestView& req, HttpExchange* exchange) {
    std::vector<Change> changes;
    std::vector<Delivery> deliveries;
    std::string error;
    bool ok = ParseChanges(req.body(), &changes, &error);
    if (ok) {
      std::lock_guard<std::mutex> lock(org_.mu);
      ok = ApplyChanges(&org_, changes, &deliveries, &error);
    }
    if (!ok) return exchange->Respond(Json(400, R"({"error":)" + Quote(error) + "}"));
    sender_.Enqueue(std::move(deliveries), static_cast<int64_t>(changes.size()), exchange);
  }

  HttpResponse Api(const HttpRequestView& req, const std::string& resource) {
    std::lock_guard<std::mutex> lock(org_.mu);
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
    if (set == "asyncoperations") return AsyncOperations(&org_, req, id);
    if (set == "EntityDefinitions" && req.method == "GET") return EntityDefinition(&org_, req, id);
    if (id.empty() && req.method == "GET" && WantsTrackChanges(req)) {
      return TrackChanges(&org_, req, set);
    }
    if (id.empty()) return ODataError(405, "0x0", "only single rows here: <set>(<id>)");
    if (req.method == "GET") {
      HttpResponse r = GetRow(&org_, set, id);
      if (r.status == 404) ++not_found_;
      return r;
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
    auto& table = org_.rows[set];
    auto it = table.find(id);
    const int64_t now_s = WallSeconds();
    if (it == table.end()) {
      if (if_match) {
        log(404);
        return NotFound(set, id);
      }
      auto known = org_.table_of_set.find(set);
      const std::string name = known == org_.table_of_set.end() ? set : known->second;
      it = table.emplace(id, Row{name, {}, 0, now_s, now_s}).first;
    }
    for (const auto& [k, v] : cols) {
      if (!k.ends_with("@odata.bind")) {
        it->second.columns[k] = v;
        continue;
      }
      const std::string target = Unquote(v);  // "/accounts(<id>)" -> _name_value
      const size_t open = target.find('('), close = target.find(')');
      if (open != std::string::npos && close != std::string::npos) {
        it->second.columns["_" + k.substr(0, k.size() - 11) + "_value"] =
            Quote(target.substr(open + 1, close - open - 1));
      }
    }
    it->second.columns["_modifiedby_value"] = Quote(org_.app_user);
    it->second.version = org_.NextVersion();
    it->second.modified_s = now_s;
    log(204);
    ++patched_;
    if (notifier_.enabled()) notifier_.Post(Notification(it->second.table, id, cols));
    std::vector<Delivery> deliveries;
    PatchDeliveries(&org_, set, id, cols, &deliveries);
    if (!deliveries.empty()) sender_.Enqueue(std::move(deliveries), 0, nullptr);
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
    auto& rows = org_.collections[set];
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
    auto& rows = org_.collections["sdkmessagefilters"];
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
    std::lock_guard<std::mutex> lock(org_.mu);
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
      std::lock_guard<std::mutex> lock(org_.mu);
      if (id.empty()) {  // every row of the set, as GET <set>(<id>) shows each
        std::string out = R"({"value":[)";
        for (const auto& [row_id, row] : org_.rows[set]) {
          out += (out.back() == '[' ? "" : ",") + ColumnsJson(org_.RowView(row_id, row));
        }
        return Json(200, out + "]}");
      }
      auto it = org_.rows[set].find(id);
      if (it == org_.rows[set].end()) return Json(404, R"({"error":"no such row"})");
      return Json(200, ColumnsJson(it->second.columns));
    }
    Columns cols;
    if (set.empty() || table.empty() || id.empty() || !ParseColumns(body, &cols)) {
      return Json(400, R"({"error":"set, table, id and a JSON object body are required"})");
    }
    std::lock_guard<std::mutex> lock(org_.mu);
    org_.MapTable(table, set);
    const int64_t now_s = WallSeconds();
    org_.rows[set][id] = Row{table, cols, org_.NextVersion(), now_s, now_s};
    return Json(200, R"({"ok":true})");
  }

  HttpResponse Deleted(std::string_view target) {
    std::string set;
    QueryParameter(target, "set", &set);
    std::lock_guard<std::mutex> lock(org_.mu);
    std::string out = R"({"value":[)";
    for (const Tombstone& t : org_.deleted[set]) {
      out += (out.back() == '[' ? "" : ",") + std::string(R"({"id":)") + Quote(t.id) +
             R"(,"versionnumber":)" + std::to_string(t.version) + R"(,"deletedon":)" +
             Quote(IsoTime(t.deleted_s)) + "}";
    }
    return Json(200, out + "]}");
  }

  HttpResponse Control(std::string_view target) {
    std::lock_guard<std::mutex> lock(org_.mu);
    std::string v;
    if (QueryParameter(target, "throttle", &v)) throttle_ = std::stoll(v);
    if (QueryParameter(target, "retry_after", &v)) retry_after_s_ = std::stoll(v);
    if (QueryParameter(target, "limit", &v)) limit_ = std::stoll(v);
    if (QueryParameter(target, "window_ms", &v)) window_ms_ = std::stoll(v);
    if (QueryParameter(target, "reject_column", &v)) rejected_columns_.insert(v);
    if (QueryParameter(target, "accept_column", &v)) rejected_columns_.erase(v);
    if (QueryParameter(target, "outage", &v)) outage_ = v == "1";
    if (QueryParameter(target, "webhook", &v)) notifier_.set_url(v);
    if (QueryParameter(target, "ack_lost", &v)) org_.ack_lost = std::stoll(v);
    if (QueryParameter(target, "webhooks", &v)) org_.webhooks_on = v == "1";
    if (QueryParameter(target, "change_tracking", &v)) {
      if (org_.SetOf(v).empty()) return Json(400, R"({"error":"unknown table"})");
      org_.change_tracking.insert(v);
    }
    if (QueryParameter(target, "expire_delta_tokens", &v) && v == "1") {
      org_.delta_expired_upto = org_.version;
      org_.NextVersion();  // tokens issued from now on are newer
    }
    if (QueryParameter(target, "malform", &v)) {
      const size_t colon = v.find(':');
      const std::string route = v.substr(0, colon), kind = v.substr(colon + 1);
      const std::set<std::string> routes = {"asyncoperations", "rows", "delta"};
      const std::set<std::string> kinds = {"missing_field", "bad_guid", "not_json", "status_500",
                                           "truncated"};
      if (colon == std::string::npos || routes.count(route) == 0 || kinds.count(kind) == 0) {
        return Json(400, R"({"error":"malform=asyncoperations|rows|delta:missing_field|bad_guid|)"
                         R"(not_json|status_500|truncated"})");
      }
      std::string count = "1";
      QueryParameter(target, "count", &count);
      org_.malform[route] = Malform{kind, std::stoll(count)};
    }
    return Json(200, R"({"ok":true})");
  }

  std::string Patches() {
    std::lock_guard<std::mutex> lock(org_.mu);
    std::string out = "[";
    for (const std::string& p : patches_) {
      if (out.size() > 1) out += ",\n";
      out += p;
    }
    return out + "]";
  }

  std::string Stats() {
    std::lock_guard<std::mutex> lock(org_.mu);
    auto n = [](const char* k, int64_t v) {
      return std::string("\"") + k + "\":" + std::to_string(v);
    };
    return "{" + n("requests", requests_) + "," + n("patched", patched_) + "," +
           n("not_found", not_found_) + "," + n("throttled", throttled_) + "," +
           n("rejected", rejected_) + "," + n("unauthorized", unauthorized_) + "," +
           n("errors_5xx", errors_5xx_) + "," + n("tokens_issued", tokens_issued_) + "," +
           n("token_refusals", token_refusals_) + "," + n("registrations", registrations_) + "," +
           n("notifications", notifications_) + "," + n("notifications_sent", notifier_.sent()) +
           "," + n("early_after_429", early_after_429_) + "," + n("changes", org_.changes_applied) +
           "," + n("webhooks_posted", org_.webhooks_posted) + "," +
           n("webhooks_delivered", org_.webhooks_delivered) + "," +
           n("webhooks_failed", org_.webhooks_failed) + "," + n("failed_jobs", org_.failed_jobs) +
           "," + n("jobs", static_cast<int64_t>(org_.jobs.size())) + "," +
           n("jobs_deleted", org_.jobs_deleted) + "," +
           n("asyncoperation_queries", org_.asyncoperation_queries) + "," +
           n("delta_queries", org_.delta_queries) + "}";
  }

  Options o_;
  Org org_;  // its mu guards the members below too
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
  Sender sender_;  // after org_: stopped first
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
  app.add_option("--webhook-timeout-ms", o.webhook_timeout_ms,
                 "how long a registered step's webhook post waits for the answer");
  app.add_option("--acked-log", o.acked_log,
                 "FILE: appends the event id of every step post answered 2xx, one per line");
  app.add_option("--tables", o.tables, "the organization's tables: TABLE or TABLE:SET")
      ->delimiter(',');
  app.add_option("--change-tracking", o.change_tracking, "a table with change tracking on")
      ->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  DataverseSim* sim = nullptr;
  return RunSimulator(
      "dataverse-sim", o.listen, "", "", HttpServerLimits{},
      [&] {
        auto handler = std::make_unique<DataverseSim>(o);
        sim = handler.get();
        return handler;
      },
      [&](uint16_t port) { sim->set_port(port); });
}

}  // namespace
}  // namespace dvrouter::sim

int main(int argc, char** argv) { return dvrouter::sim::Main(argc, argv); }
