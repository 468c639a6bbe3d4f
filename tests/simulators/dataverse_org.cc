#include "tests/simulators/dataverse_org.h"

#include <simdjson.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <random>

#include "router/common/json.h"

namespace dvrouter::sim {

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

std::string Quote(std::string_view s) {
  std::string out;
  AppendJsonString(&out, s);
  return out;
}

std::string NewGuid(uint64_t n, uint32_t kind) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%08x-5151-4000-8000-%012llx", kind,
                static_cast<unsigned long long>(n));
  return buf;
}

std::string RandomGuid() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard<std::mutex> lock(mu);
  const uint64_t a = rng(), b = rng();
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                static_cast<unsigned>((a >> 16) & 0xffff), static_cast<unsigned>(a & 0xfff),
                static_cast<unsigned>(0x8000 | ((b >> 48) & 0x3fff)),
                static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return buf;
}

bool IsGuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash != (s[i] == '-')) return false;
    if (!dash && !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t WallSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string IsoTime(int64_t unix_s) {
  const time_t t = static_cast<time_t>(unix_s);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool ParseIsoMs(std::string_view text, int64_t* ms) {
  const std::string s(text);
  int y, mo, d, h, mi, sec, n = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
      n != 19) {
    return false;
  }
  size_t at = 19;
  int64_t frac_ms = 0;
  if (at < s.size() && s[at] == '.') {
    int64_t scale = 100;
    for (++at; at < s.size() && std::isdigit(static_cast<unsigned char>(s[at])); ++at) {
      frac_ms += (s[at] - '0') * scale;
      scale /= 10;
    }
  }
  int64_t offset_s = 0;
  if (at < s.size() && s[at] == 'Z') {
    ++at;
  } else if (at < s.size() && (s[at] == '+' || s[at] == '-')) {
    int oh = 0, om = 0;
    if (std::sscanf(s.c_str() + at + 1, "%2d:%2d", &oh, &om) != 2) return false;
    offset_s = (s[at] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
    at += 6;
  } else {
    return false;
  }
  if (at != s.size()) return false;
  struct tm tm {};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  *ms = (static_cast<int64_t>(timegm(&tm)) - offset_s) * 1000 + frac_ms;
  return true;
}

void Org::MapTable(const std::string& table, const std::string& set) {
  set_of_table[table] = set;
  table_of_set[set] = table;
}

std::string Org::SetOf(const std::string& table) const {
  auto it = set_of_table.find(table);
  return it == set_of_table.end() ? "" : it->second;
}

Columns Org::RowView(const std::string& id, const Row& row) const {
  Columns c = row.columns;
  c["@odata.etag"] = Quote("W/\"" + std::to_string(row.version) + "\"");
  c[row.table + "id"] = Quote(id);
  c["versionnumber"] = std::to_string(row.version);
  c["createdon"] = Quote(IsoTime(row.created_s));
  c["modifiedon"] = Quote(IsoTime(row.modified_s));
  return c;
}

std::string Org::TakeMalform(const std::string& route) {
  auto it = malform.find(route);
  if (it == malform.end() || it->second.remaining <= 0) return "";
  --it->second.remaining;
  return it->second.kind;
}

HttpResponse MalformedOr(const std::string& kind, std::vector<Columns> items,
                         const std::vector<std::string>& fields, const std::string& head,
                         const std::string& tail) {
  if (kind == "status_500") {
    return ODataError(500, "0x80040216", "An unexpected error occurred.");
  }
  if (kind == "not_json") {
    HttpResponse r = Json(200, "<html><body><h1>Service Unavailable</h1></body></html>");
    r.content_type = "text/html";
    return r;
  }
  for (Columns& c : items) {
    for (const std::string& field : fields) {
      if (kind == "missing_field") c.erase(field);
      if (kind == "bad_guid" && c.count(field) != 0) c[field] = R"("not-a-guid")";
    }
  }
  std::string body = head;
  for (size_t i = 0; i < items.size(); ++i) body += (i ? "," : "") + ColumnsJson(items[i]);
  body += tail;
  if (kind == "truncated") body.resize(body.size() / 2);
  return Json(200, std::move(body));
}

}  // namespace dvrouter::sim
