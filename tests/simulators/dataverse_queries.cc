#include "tests/simulators/dataverse_queries.h"

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <tuple>
#include <vector>

#include "router/common/encoding.h"

namespace dvrouter::sim {
namespace {

constexpr const char* kApi = "/api/data/v9.2/";

HttpResponse QueryError(const std::string& message) {
  return ODataError(400, "0x80060888", message);
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t end = s.find(sep, start);
    if (end == std::string::npos) end = s.size();
    std::string part = s.substr(start, end - start);
    while (!part.empty() && part.front() == ' ') part.erase(0, 1);
    while (!part.empty() && part.back() == ' ') part.pop_back();
    if (!part.empty()) out.push_back(part);
    start = end + 1;
  }
  return out;
}

// The Prefer header's odata.maxpagesize (5000 when absent).
size_t MaxPageSize(const HttpRequestView& req) {
  for (const std::string& p : Split(std::string(req.headers->get("prefer")), ',')) {
    if (p.starts_with("odata.maxpagesize=")) {
      const long n = std::atol(p.c_str() + 18);
      if (n > 0) return static_cast<size_t>(n);
    }
  }
  return 5000;
}

// The request's query without $skiptoken, as sent (still percent-encoded).
std::string QueryWithout(std::string_view target, std::string_view name) {
  const size_t q = target.find('?');
  if (q == std::string_view::npos) return "";
  std::string out;
  for (const std::string& pair : Split(std::string(target.substr(q + 1)), '&')) {
    std::string key = pair.substr(0, pair.find('='));
    if (key.starts_with("%24")) key = "$" + key.substr(3);
    if (key == name) continue;
    out += (out.empty() ? "" : "&") + pair;
  }
  return out;
}

std::string NextLink(const Org* org, const HttpRequestView& req, const std::string& cookie) {
  const std::string query = QueryWithout(req.target, "$skiptoken");
  return BaseUrl(*org, req) + std::string(TargetPath(req.target)) + "?" + query +
         (query.empty() ? "" : "&") + "$skiptoken=" + UrlEncode(cookie);
}

// An attribute of the paging cookie `<cookie pagenumber="2" k="v" />`.
std::string CookieValue(const std::string& cookie, const std::string& name) {
  const size_t at = cookie.find(" " + name + "=\"");
  if (at == std::string::npos) return "";
  const size_t start = at + name.size() + 3;
  return cookie.substr(start, cookie.find('"', start) - start);
}

int PageNumber(const std::string& cookie) {
  const int n = std::atoi(CookieValue(cookie, "pagenumber").c_str());
  return n > 0 ? n : 1;
}

bool IsNumber(const std::string& s) {
  if (s.empty()) return false;
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

// --- asyncoperations $filter ---

struct Clause {
  std::string field, op, value;
};

const char* const kJobFields[] = {"asyncoperationid",
                                  "name",
                                  "operationtype",
                                  "statecode",
                                  "statuscode",
                                  "messagename",
                                  "primaryentitytype",
                                  "_regardingobjectid_value",
                                  "_owningextensionid_value",
                                  "_createdby_value",
                                  "correlationid",
                                  "createdon",
                                  "completedon",
                                  "modifiedon",
                                  "errorcode",
                                  "friendlymessage",
                                  "message"};

bool IsJobField(const std::string& f) {
  return std::find(std::begin(kJobFields), std::end(kJobFields), f) != std::end(kJobFields);
}
bool IsDateField(const std::string& f) {
  return f == "createdon" || f == "completedon" || f == "modifiedon";
}

bool ParseClause(const std::string& text, Clause* c, std::string* error) {
  const size_t a = text.find(' ');
  const size_t b = a == std::string::npos ? std::string::npos : text.find(' ', a + 1);
  if (b == std::string::npos) return *error = "Syntax error at '" + text + "'", false;
  c->field = text.substr(0, a);
  c->op = text.substr(a + 1, b - a - 1);
  c->value = text.substr(b + 1);
  static const char* const kOps[] = {"eq", "ne", "gt", "ge", "lt", "le"};
  if (std::find(std::begin(kOps), std::end(kOps), c->op) == std::end(kOps)) {
    return *error = "Syntax error: unknown operator '" + c->op + "' in '" + text + "'", false;
  }
  if (!IsJobField(c->field)) {
    return *error = "Could not find a property named '" + c->field +
                    "' on type 'Microsoft.Dynamics.CRM.asyncoperation'.",
           false;
  }
  int64_t ms;
  const bool quoted = c->value.size() >= 2 && c->value.front() == '\'' && c->value.back() == '\'';
  if (IsDateField(c->field)
          ? !ParseIsoMs(c->value, &ms)
          : !(quoted || IsNumber(c->value) || IsGuid(c->value) || c->value == "null")) {
    return *error = "Syntax error: unrecognized literal '" + c->value + "' in '" + text + "'",
           false;
  }
  return true;
}

// `a and (b or c) and d` -> [[a], [b, c], [d]]: every group must have a clause that holds.
bool ParseFilter(const std::string& filter, std::vector<std::vector<Clause>>* out,
                 std::string* error) {
  std::vector<std::string> parts;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < filter.size(); ++i) {
    if (filter[i] == '(') ++depth;
    if (filter[i] == ')') --depth;
    if (depth == 0 && filter.compare(i, 5, " and ") == 0) {
      parts.push_back(filter.substr(start, i - start));
      start = i + 5;
    }
  }
  parts.push_back(filter.substr(start));
  for (std::string part : parts) {
    while (!part.empty() && part.front() == ' ') part.erase(0, 1);
    while (!part.empty() && part.back() == ' ') part.pop_back();
    std::vector<std::string> alternatives = {part};
    if (part.size() >= 2 && part.front() == '(' && part.back() == ')') {
      alternatives.clear();
      std::string inner = part.substr(1, part.size() - 2);
      size_t s = 0;
      for (size_t at = inner.find(" or "); at != std::string::npos; at = inner.find(" or ", s)) {
        alternatives.push_back(inner.substr(s, at - s));
        s = at + 4;
      }
      alternatives.push_back(inner.substr(s));
    }
    std::vector<Clause> group;
    for (const std::string& alt : alternatives) {
      Clause c;
      if (alt.find('(') != std::string::npos || !ParseClause(alt, &c, error)) {
        if (error->empty()) *error = "Syntax error at '" + alt + "'";
        return false;
      }
      group.push_back(c);
    }
    out->push_back(group);
  }
  return true;
}

bool Holds(const Clause& c, const Columns& job) {
  auto it = job.find(c.field);
  const std::string raw = it == job.end() ? "null" : it->second;
  int cmp = 0;
  if (IsDateField(c.field)) {
    int64_t a = 0, b = 0;
    ParseIsoMs(Unquote(raw), &a);
    ParseIsoMs(c.value, &b);
    cmp = a < b ? -1 : a > b ? 1 : 0;
  } else if (IsNumber(c.value) && IsNumber(raw)) {
    const double a = std::atof(raw.c_str()), b = std::atof(c.value.c_str());
    cmp = a < b ? -1 : a > b ? 1 : 0;
  } else {
    std::string v = c.value;
    if (v.size() >= 2 && v.front() == '\'') v = v.substr(1, v.size() - 2);
    const std::string a = raw == "null" ? "null" : Unquote(raw);
    cmp = a < v ? -1 : a > v ? 1 : 0;
    if (c.op != "eq" && c.op != "ne") cmp = c.op == "gt" || c.op == "ge" ? -1 : 1;  // unordered
  }
  if (c.op == "eq") return cmp == 0;
  if (c.op == "ne") return cmp != 0;
  if (c.op == "gt") return cmp > 0;
  if (c.op == "ge") return cmp >= 0;
  if (c.op == "lt") return cmp < 0;
  return cmp <= 0;
}

// `12!12/05/2026 01:02:03`: the version, then when the token was made.
std::string DeltaToken(int64_t version) {
  const time_t t = static_cast<time_t>(WallSeconds());
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%m/%d/%Y %H:%M:%S", &tm);
  return std::to_string(version) + "!" + buf;
}

}  // namespace

std::string BaseUrl(const Org& org, const HttpRequestView& req) {
  std::string host(req.headers->get("host"));
  if (host.empty()) host = "127.0.0.1";
  if (host.find(':') == std::string::npos || host.back() == ']') {
    host += ":" + std::to_string(org.port.load());
  }
  return "http://" + host;
}

bool WantsTrackChanges(const HttpRequestView& req) {
  for (const std::string& p : Split(std::string(req.headers->get("prefer")), ',')) {
    if (p == "odata.track-changes") return true;
  }
  return false;
}

HttpResponse GetRow(Org* org, const std::string& set, const std::string& id) {
  auto it = org->rows[set].find(id);
  if (it == org->rows[set].end()) {
    return ODataError(404, "0x80040217", set + " With Id = " + id + " Does Not Exist");
  }
  const std::string kind = org->TakeMalform("rows");
  const std::vector<std::string> fields = {kind == "missing_field" ? std::string("versionnumber")
                                                                   : it->second.table + "id"};
  return MalformedOr(kind, {org->RowView(id, it->second)}, fields, "", "");
}

HttpResponse EntityDefinition(Org* org, const HttpRequestView& req, const std::string& key) {
  // LogicalName='account'
  const size_t open = key.find('\''), close = key.rfind('\'');
  if (!key.starts_with("LogicalName=") || open == std::string::npos || close <= open) {
    return QueryError("Syntax error in the key of EntityDefinitions: " + key);
  }
  const std::string table = key.substr(open + 1, close - open - 1);
  const std::string set = org->SetOf(table);
  if (set.empty()) {
    return ODataError(404, "0x80060888",
                      "Could not find an entity with LogicalName = '" + table + "'");
  }
  return Json(200,
              R"({"@odata.context":")" + BaseUrl(*org, req) + kApi +
                  R"($metadata#EntityDefinitions(EntitySetName,PrimaryIdAttribute)/$entity",)" +
                  R"("EntitySetName":)" + Quote(set) + R"(,"PrimaryIdAttribute":)" +
                  Quote(table + "id") + R"(,"LogicalName":)" + Quote(table) +
                  R"(,"ChangeTrackingEnabled":)" +
                  (org->change_tracking.count(table) ? "true" : "false") + R"(,"MetadataId":")" +
                  NewGuid(std::hash<std::string>{}(table)&0xffffffffffff, 0x3e7a) + "\"}");
}

HttpResponse AsyncOperations(Org* org, const HttpRequestView& req, const std::string& id) {
  if (req.method == "DELETE") {
    auto it =
        std::find_if(org->jobs.begin(), org->jobs.end(), [&](const Job& j) { return j.id == id; });
    if (id.empty() || it == org->jobs.end()) {
      return ODataError(404, "0x80040217", "asyncoperation With Id = " + id + " Does Not Exist");
    }
    org->jobs.erase(it);
    ++org->jobs_deleted;
    HttpResponse r;
    r.status = 204;
    r.content_type.clear();
    return r;
  }
  if (req.method != "GET") return ODataError(405, "0x0", "method not allowed on asyncoperations");
  ++org->asyncoperation_queries;
  std::string select, filter, orderby, top, skiptoken;
  QueryParameter(req.target, "$select", &select);
  QueryParameter(req.target, "$filter", &filter);
  QueryParameter(req.target, "$orderby", &orderby);
  QueryParameter(req.target, "$top", &top);
  QueryParameter(req.target, "$skiptoken", &skiptoken);
  std::vector<std::string> fields = Split(select, ',');
  for (const std::string& f : fields) {
    if (!IsJobField(f)) {
      return QueryError("Could not find a property named '" + f +
                        "' on type 'Microsoft.Dynamics.CRM.asyncoperation'.");
    }
  }
  std::vector<std::vector<Clause>> groups;
  std::string error;
  if (!filter.empty() && !ParseFilter(filter, &groups, &error)) return QueryError(error);
  std::string sort_field = "completedon";
  bool desc = false;
  if (!orderby.empty()) {
    const std::vector<std::string> words = Split(orderby, ' ');
    if (words.empty() || words.size() > 2 || !IsDateField(words[0]) ||
        (words.size() == 2 && words[1] != "asc" && words[1] != "desc")) {
      return QueryError(
          "$orderby is limited here to createdon, completedon or modifiedon "
          "[asc|desc]: " +
          orderby);
    }
    sort_field = words[0];
    desc = words.size() == 2 && words[1] == "desc";
  }
  using Key = std::tuple<int64_t, std::string>;
  auto key_of = [&](const Job& j) {
    int64_t ms = 0;
    ParseIsoMs(Unquote(j.columns.at(sort_field)), &ms);
    return Key{ms, j.id};
  };
  std::vector<const Job*> matched;
  for (const Job& j : org->jobs) {
    if (!id.empty() && j.id != id) continue;
    bool ok = true;
    for (const auto& group : groups) {
      bool any = false;
      for (const Clause& c : group) any = any || Holds(c, j.columns);
      ok = ok && any;
    }
    if (ok) matched.push_back(&j);
  }
  if (!id.empty()) {
    if (matched.empty()) {
      return ODataError(404, "0x80040217", "asyncoperation With Id = " + id + " Does Not Exist");
    }
    return Json(200, ColumnsJson(matched[0]->columns));
  }
  std::sort(matched.begin(), matched.end(), [&](const Job* a, const Job* b) {
    return desc ? key_of(*a) > key_of(*b) : key_of(*a) < key_of(*b);
  });
  // The paging cookie names the last job of the previous page: jobs deleted meanwhile do not
  // shift the next page.
  size_t from = 0;
  if (const std::string last = CookieValue(skiptoken, "pagingcookie"); !last.empty()) {
    const size_t bar = last.find('|');
    const Key k{std::atoll(last.substr(0, bar).c_str()), last.substr(bar + 1)};
    while (from < matched.size() &&
           (desc ? key_of(*matched[from]) >= k : key_of(*matched[from]) <= k)) {
      ++from;
    }
  }
  size_t page = MaxPageSize(req);
  const bool topped = !top.empty() && std::atol(top.c_str()) > 0;
  if (topped) page = std::min<size_t>(page, static_cast<size_t>(std::atol(top.c_str())));
  std::vector<Columns> items;
  for (size_t i = from; i < matched.size() && items.size() < page; ++i) {
    Columns c = matched[i]->columns;
    if (!fields.empty()) {
      Columns picked;
      for (const std::string& f : fields) picked[f] = c.count(f) ? c[f] : "null";
      picked["asyncoperationid"] = c["asyncoperationid"];
      picked["@odata.etag"] = c["@odata.etag"];
      c = std::move(picked);
    }
    items.push_back(std::move(c));
  }
  std::string tail = "]";
  if (!topped && from + items.size() < matched.size()) {
    const Job& last = *matched[from + items.size() - 1];
    const std::string cookie = "<cookie pagenumber=\"" + std::to_string(PageNumber(skiptoken) + 1) +
                               "\" pagingcookie=\"" + std::to_string(std::get<0>(key_of(last))) +
                               "|" + last.id + "\" istracking=\"False\" />";
    tail += R"(,"@odata.nextLink":)" + Quote(NextLink(org, req, cookie));
  }
  HttpResponse r = MalformedOr(org->TakeMalform("asyncoperations"), std::move(items),
                               {"_regardingobjectid_value"},
                               R"({"@odata.context":")" + BaseUrl(*org, req) + kApi +
                                   R"($metadata#asyncoperations","value":[)",
                               tail + "}");
  r.headers.emplace_back("Preference-Applied",
                         "odata.maxpagesize=" + std::to_string(MaxPageSize(req)));
  return r;
}

HttpResponse TrackChanges(Org* org, const HttpRequestView& req, const std::string& set) {
  auto table_it = org->table_of_set.find(set);
  if (table_it == org->table_of_set.end()) {
    return ODataError(404, "0x8006088a", "Resource not found for the segment '" + set + "'.");
  }
  const std::string table = table_it->second;
  if (org->change_tracking.count(table) == 0) {
    return ODataError(400, "0x80072491", "Entity " + table + " isn't enabled for change tracking.");
  }
  std::string v;
  for (const char* option : {"$filter", "$orderby", "$expand", "$top"}) {
    if (QueryParameter(req.target, option, &v)) {
      return QueryError(std::string("The query option ") + option +
                        " is not supported with change tracking (Prefer: odata.track-changes).");
    }
  }
  ++org->delta_queries;
  std::string select, deltatoken, skiptoken;
  QueryParameter(req.target, "$select", &select);
  const bool delta = QueryParameter(req.target, "$deltatoken", &deltatoken);
  QueryParameter(req.target, "$skiptoken", &skiptoken);
  int64_t since = 0;
  if (delta) {
    const size_t bang = deltatoken.find('!');
    const std::string number = deltatoken.substr(0, bang);
    if (bang == std::string::npos || !IsNumber(number)) {
      return QueryError("The delta token is not valid: " + deltatoken);
    }
    since = std::atoll(number.c_str());
    if (since <= org->delta_expired_upto) {
      return ODataError(400, "0x80044352",
                        "Version stamp associated with the client has expired. Please perform a "
                        "full sync.");
    }
  }
  int64_t snapshot = org->version, last = since;
  if (!skiptoken.empty()) {
    snapshot = std::atoll(CookieValue(skiptoken, "snapshot").c_str());
    last = std::atoll(CookieValue(skiptoken, "last").c_str());
  }
  const std::vector<std::string> fields = Split(select, ',');
  // Everything changed in (last, snapshot], in version order; a delta also names deleted rows.
  std::vector<std::pair<int64_t, Columns>> changed;
  const auto& rows = org->rows[set];
  for (const auto& [id, row] : rows) {
    if (row.version <= last || row.version > snapshot) continue;
    Columns view = org->RowView(id, row), item;
    if (fields.empty()) {
      item = view;
    } else {
      for (const std::string& f : fields) item[f] = view.count(f) ? view[f] : "null";
      item["@odata.etag"] = view["@odata.etag"];
      item[table + "id"] = view[table + "id"];
    }
    changed.emplace_back(row.version, std::move(item));
  }
  if (delta) {
    std::map<std::string, int64_t> gone;  // id -> its latest delete in range
    for (const Tombstone& t : org->deleted[set]) {
      if (t.version <= last || t.version > snapshot) continue;
      auto row = rows.find(t.id);
      if (row != rows.end() && row->second.version <= snapshot) continue;  // back again
      gone[t.id] = t.version;
    }
    for (const auto& [id, version] : gone) {
      Columns item;
      item["@odata.context"] =
          Quote(BaseUrl(*org, req) + kApi + "$metadata#" + set + "/$deletedEntity");
      item["id"] = Quote(id);
      item["reason"] = R"("deleted")";
      changed.emplace_back(version, std::move(item));
    }
  }
  std::sort(changed.begin(), changed.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  const size_t page = MaxPageSize(req);
  std::vector<Columns> items;
  for (size_t i = 0; i < changed.size() && i < page; ++i) items.push_back(changed[i].second);
  std::string tail = "]";
  if (changed.size() > page) {
    const std::string cookie = "<cookie pagenumber=\"" + std::to_string(PageNumber(skiptoken) + 1) +
                               "\" last=\"" + std::to_string(changed[page - 1].first) +
                               "\" snapshot=\"" + std::to_string(snapshot) + "\" />";
    tail += R"(,"@odata.nextLink":)" + Quote(NextLink(org, req, cookie));
  } else {
    std::string query = QueryWithout(req.target, "$skiptoken");
    query = QueryWithout("?" + query, "$deltatoken");
    tail += R"(,"@odata.deltaLink":)" +
            Quote(BaseUrl(*org, req) + kApi + set + "?" + query + (query.empty() ? "" : "&") +
                  "$deltatoken=" + UrlEncode(DeltaToken(snapshot)));
  }
  HttpResponse r =
      MalformedOr(org->TakeMalform("delta"), std::move(items), {"id", table + "id"},
                  R"({"@odata.context":")" + BaseUrl(*org, req) + kApi + "$metadata#" + set +
                      (select.empty() ? "" : "(" + select + ")") + R"(/$delta","value":[)",
                  tail + "}");
  r.headers.emplace_back("Preference-Applied",
                         "odata.track-changes,odata.maxpagesize=" + std::to_string(page));
  return r;
}

}  // namespace dvrouter::sim
