// dvrouter-erp-sim: an ERP order API for tests, benchmarks and trying dvrouter by hand. It
// speaks plain HTTP/1.1 JSON (on dvrouter's own Beast server) and misbehaves on command:
//
//   POST /api/<anything>   creates an order: 201 {"orderNumber":"SO-000001","crmId":...}.
//                          Needs `Idempotency-Key`; a key seen before gets the first answer
//                          again (counted as a duplicate). Reads "crm_id" and "seq" from the JSON
//                          body when present and counts a record's seq going backwards as an
//                          order violation.
//   POST /oauth/token      client credentials (form body) -> {"access_token","expires_in"}.
//   GET  /_stats           counters as JSON.
//   GET  /_orders          the orders created per crm_id: {"<crm_id>":["SO-000001",...],...}
//                          (a crm_id with two numbers got two orders).
//   POST /_control?...     outage=1|0 (503 while on), ratelimit=N&retry_after=S (the next N
//                          calls get 429 with Retry-After S), reject=<crm_id> / unreject=<crm_id>
//                          (400 for that record), latency_ms=N, slow_first_ms=N (a key's first
//                          call waits N ms more: the caller times out, resends, and the resend
//                          is a duplicate), async=1 (202 jobs), job_ms=N, callback=1 (call
//                          back to each call's X-Callback-Url when its job is done),
//                          callback_auth=both|token|bearer (the URL's token and/or the Bearer
//                          secret; default both).
//
// Flags: --listen HOST:PORT (port 0: a free one), --latency-ms, --error-rate (share of 500s),
// --auth none|basic:USER:PASSWORD|api_key:HEADER:KEY|oauth2:CLIENT_ID:SECRET, --token-ttl-s,
// --callback-secret, --tls-cert FILE --tls-key FILE (serve HTTPS).
// Prints "erp-sim listening on HOST:PORT" on stderr once ready; stops on SIGTERM or SIGINT.
#include <simdjson.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <map>
#include <mutex>
#include <queue>
#include <random>
#include <set>
#include <thread>

#include "adapters/common/http_client.h"
#include "router/common/encoding.h"
#include "router/common/json.h"
#include "router/ingress/server.h"
#include "tests/simulators/sim_main.h"

namespace dvrouter::sim {
namespace {

using Clock = std::chrono::steady_clock;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
      .count();
}

// Answers later, from one thread (simulated latency without blocking I/O threads).
class Delayer {
 public:
  Delayer() : thread_([this] { Run(); }) {}
  ~Delayer() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void At(int64_t due_ms, HttpExchange* exchange, HttpResponse response) {
    if (due_ms <= NowMs()) {
      exchange->Respond(std::move(response));
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push(Item{due_ms, seq_++, exchange, std::move(response)});
    cv_.notify_all();
  }

 private:
  struct Item {
    int64_t due;
    uint64_t seq;
    HttpExchange* exchange;
    HttpResponse response;
    bool operator>(const Item& o) const { return due != o.due ? due > o.due : seq > o.seq; }
  };
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (stop_) {
        while (!queue_.empty()) {  // answer what is left
          Item item = queue_.top();
          queue_.pop();
          item.exchange->Respond(std::move(item.response));
        }
        return;
      }
      if (queue_.empty()) {
        cv_.wait(lock);
        continue;
      }
      const int64_t wait = queue_.top().due - NowMs();
      if (wait > 0) {
        cv_.wait_for(lock, std::chrono::milliseconds(wait));
        continue;
      }
      Item item = queue_.top();
      queue_.pop();
      lock.unlock();
      item.exchange->Respond(std::move(item.response));
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Item, std::vector<Item>, std::greater<Item>> queue_;
  uint64_t seq_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

struct Options {
  std::string listen = "127.0.0.1:0";
  int latency_ms = 0;
  double error_rate = 0;
  std::string auth = "none";
  int token_ttl_s = 3600;
  std::string callback_secret = "callback-secret";
  std::string tls_cert, tls_key;  // both: serve HTTPS
};

// Posts job callbacks when they are due, from one thread; retries a refused one (409: the router
// has not seen the 202 yet; 5xx) every 50 ms, up to 100 times.
class CallbackSender {
 public:
  explicit CallbackSender(std::string secret)
      : secret_(std::move(secret)), thread_([this] { Run(); }) {}
  ~CallbackSender() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  // `bearer`: with `Authorization: Bearer <secret>` (else the URL's token is the credential).
  void At(int64_t due_ms, std::string url, std::string body, bool bearer) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(Item{due_ms, std::move(url), std::move(body), 0, bearer});
    cv_.notify_all();
  }
  int64_t sent() const {
    std::lock_guard<std::mutex> lock(mu_);
    return sent_;
  }
  int64_t refused() const {
    std::lock_guard<std::mutex> lock(mu_);
    return refused_;
  }

 private:
  struct Item {
    int64_t due;
    std::string url, body;
    int tries;
    bool bearer;
  };
  void Run() {
    HttpClient http;
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      const int64_t now = NowMs();
      auto it = std::min_element(queue_.begin(), queue_.end(),
                                 [](const Item& a, const Item& b) { return a.due < b.due; });
      if (it == queue_.end() || it->due > now) {
        cv_.wait_for(lock, std::chrono::milliseconds(it == queue_.end() ? 1000 : it->due - now));
        continue;
      }
      Item item = std::move(*it);
      queue_.erase(it);
      lock.unlock();
      ClientRequest req;
      req.url = item.url;
      req.body = item.body;
      req.headers = {{"Content-Type", "application/json"}};
      if (item.bearer) req.headers.emplace_back("Authorization", "Bearer " + secret_);
      Result<ClientResponse> r = http.Send(req);
      lock.lock();
      if (r.ok() && r->status == 200) {
        ++sent_;
      } else {
        ++refused_;
        if (++item.tries < 100) {
          item.due = NowMs() + 50;
          queue_.push_back(std::move(item));
        }
      }
    }
  }
  std::string secret_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Item> queue_;
  bool stop_ = false;
  int64_t sent_ = 0, refused_ = 0;
  std::thread thread_;
};

HttpResponse Json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

class ErpSim final : public HttpHandler {
 public:
  explicit ErpSim(Options o)
      : o_(std::move(o)), latency_ms_(o_.latency_ms), callbacks_(o_.callback_secret) {
    const size_t colon = o_.auth.find(':');
    mode_ = o_.auth.substr(0, colon);
    if (colon != std::string::npos) {
      const std::string rest = o_.auth.substr(colon + 1);
      const size_t c2 = rest.find(':');
      first_ = rest.substr(0, c2);
      second_ = c2 == std::string::npos ? "" : rest.substr(c2 + 1);
    }
  }

  void Handle(const HttpRequestView& req, HttpConnectionState*, HttpExchange* exchange,
              int) override {
    const std::string_view path = TargetPath(req.target);
    if (path == "/_stats") return exchange->Respond(Json(200, Stats()));
    if (path == "/_orders") return exchange->Respond(Json(200, Orders()));
    if (path == "/_control") return exchange->Respond(Control(req.target));
    if (path == "/oauth/token") return exchange->Respond(Token(req.body()));
    if (path.starts_with("/api/jobs/") && req.method == "GET") {
      return exchange->Respond(JobStatus(std::string(path.substr(10))));
    }
    if (!path.starts_with("/api/")) return exchange->Respond(Json(404, R"({"error":"no route"})"));
    if (req.method == "GET") return exchange->Respond(CsrfFetch(req));
    if (!CsrfValid(req)) {
      HttpResponse r = Json(403, R"({"error":{"message":"CSRF token validation failed"}})");
      r.headers.emplace_back("x-csrf-token", "Required");
      return exchange->Respond(std::move(r));
    }
    Api(req, exchange);
  }

 private:
  void Api(const HttpRequestView& req, HttpExchange* exchange) {
    std::unique_lock<std::mutex> lock(mu_);
    ++requests_;
    const int64_t now = NowMs();
    if (!Authorized(*req.headers, now)) {
      ++unauthorized_;
      return exchange->Respond(Json(401, R"({"error":"unauthorized"})"));
    }
    const std::string key(req.headers->get("idempotency-key"));
    if (auto it = last_429_.find(key); !key.empty() && it != last_429_.end()) {
      min_gap_after_429_ = std::min(min_gap_after_429_, now - it->second);
      last_429_.erase(it);
    }
    if (outage_) {
      ++errors_5xx_;
      return exchange->Respond(Json(503, R"({"error":"maintenance"})"));
    }
    if (ratelimit_ > 0) {
      --ratelimit_;
      ++rate_limited_;
      last_429_[key] = now;
      HttpResponse r = Json(429, R"({"error":"too many requests"})");
      r.retry_after_s = static_cast<uint32_t>(retry_after_s_);
      return exchange->Respond(std::move(r));
    }
    if (o_.error_rate > 0 && std::uniform_real_distribution<>(0, 1)(rng_) < o_.error_rate) {
      ++errors_5xx_;
      return exchange->Respond(Json(500, R"({"error":"internal"})"));
    }
    if (key.empty()) {
      return exchange->Respond(Json(400, R"({"error":"Idempotency-Key header required"})"));
    }
    std::string crm_id;
    int64_t seq = -1;
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(req.body().data(), req.body().size()).get(doc) != simdjson::SUCCESS) {
      return exchange->Respond(Json(400, R"({"error":"body is not JSON"})"));
    }
    std::string_view s;
    if (doc["crm_id"].get(s) == simdjson::SUCCESS) crm_id = std::string(s);
    if (doc["seq"].get(seq) != simdjson::SUCCESS) seq = -1;
    if (rejected_.count(crm_id) != 0 && async_ && answers_.find(key) == answers_.end()) {
      ++rejected_calls_;  // the job is accepted, and fails later
      const std::string job = "X" + std::to_string(++failed_jobs_);
      JobState& j = jobs_[job];
      j.done_ms = now + job_ms_;
      j.final = R"({"status":"failed","error":"customer blocked for ordering"})";
      HttpResponse accepted =
          Json(202, R"({"jobId":")" + job + R"(","status":"accepted","statusUrl":")" +
                        status_base_ + "/api/jobs/" + job + "\"}");
      answers_[key] = accepted;
      QueueCallback(req, j);
      return exchange->Respond(std::move(accepted));
    }
    if (rejected_.count(crm_id) != 0) {
      ++rejected_calls_;
      return exchange->Respond(
          Json(400, R"({"error":"customer blocked for ordering","crmId":")" + crm_id + "\"}"));
    }
    int64_t delay = latency_ms_;
    auto seen = answers_.find(key);
    HttpResponse answer;
    if (seen != answers_.end()) {
      ++duplicates_;
      answer = seen->second;
    } else {
      if (seq >= 0 && !crm_id.empty()) {
        auto& last = last_seq_[crm_id];
        if (seq < last) ++order_violations_;
        last = std::max(last, seq);
      }
      char number[32];
      std::snprintf(number, sizeof(number), "SO-%06llu",
                    static_cast<unsigned long long>(++created_));
      orders_by_crm_id_[crm_id].push_back(number);
      std::string body = std::string(R"({"orderNumber":")") + number + R"(","crmId":)";
      AppendJsonString(&body, crm_id);
      answer = Json(201, body + "}");
      if (async_) {
        const std::string job = "J" + std::to_string(created_);
        JobState& j = jobs_[job];
        j.done_ms = now + job_ms_;
        j.final = std::string(R"({"status":"completed","orderNumber":")") + number + "\"}";
        answer = Json(202, R"({"jobId":")" + job + R"(","status":"accepted","statusUrl":")" +
                               status_base_ + "/api/jobs/" + job + "\"}");
        QueueCallback(req, j);
      }
      answers_[key] = answer;
      delay += slow_first_ms_;
    }
    lock.unlock();
    delayer_.At(now + delay, exchange, std::move(answer));
  }

  bool Authorized(const HeaderLookup& h, int64_t now) {
    if (mode_ == "none") return true;
    const std::string_view auth = h.get("authorization");
    if (mode_ == "basic") return auth == "Basic " + Base64Encode(first_ + ":" + second_);
    if (mode_ == "api_key") return h.get(first_) == second_;
    if (mode_ == "oauth2") {
      if (!auth.starts_with("Bearer ")) return false;
      auto it = tokens_.find(std::string(auth.substr(7)));
      return it != tokens_.end() && now < it->second;
    }
    return false;
  }

  HttpResponse Token(std::string_view body) {
    std::string id, secret;
    QueryParameter("/?" + std::string(body), "client_id", &id);
    QueryParameter("/?" + std::string(body), "client_secret", &secret);
    std::lock_guard<std::mutex> lock(mu_);
    if (mode_ != "oauth2" || id != first_ || secret != second_) {
      return Json(401, R"({"error":"invalid_client"})");
    }
    const std::string token = "tok-" + std::to_string(++tokens_issued_);
    tokens_[token] = NowMs() + o_.token_ttl_s * 1000LL;
    return Json(200, R"({"access_token":")" + token + R"(","token_type":"Bearer","expires_in":)" +
                         std::to_string(o_.token_ttl_s) + "}");
  }

  HttpResponse CsrfFetch(const HttpRequestView& req) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!csrf_ || req.headers->get("x-csrf-token") != "Fetch") {
      return Json(200, R"({"d":{"EntitySets":["A_SalesOrder"]}})");  // a service document
    }
    ++csrf_fetches_;
    if (csrf_token_.empty()) {
      csrf_token_ = "csrf-" + std::to_string(csrf_fetches_);
      csrf_session_ = "sid-" + std::to_string(csrf_fetches_);
    }
    HttpResponse r = Json(200, R"({"d":{"EntitySets":["A_SalesOrder"]}})");
    r.headers.emplace_back("x-csrf-token", csrf_token_);
    r.headers.emplace_back("set-cookie",
                           "SAP_SESSIONID_ERP_100=" + csrf_session_ + "; path=/; HttpOnly");
    r.headers.emplace_back("set-cookie", "sap-usercontext=sap-client=100; path=/");
    return r;
  }

  bool CsrfValid(const HttpRequestView& req) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!csrf_) return true;
    const std::string_view cookie = req.headers->get("cookie");
    const bool ok = !csrf_token_.empty() && req.headers->get("x-csrf-token") == csrf_token_ &&
                    cookie.find("SAP_SESSIONID_ERP_100=" + csrf_session_) != std::string::npos &&
                    cookie.find("sap-usercontext=sap-client=100") != std::string::npos;
    if (!ok) ++csrf_refused_;
    return ok;
  }

  struct JobState {
    int64_t done_ms = 0;
    std::string final;
  };

  HttpResponse JobStatus(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    ++polls_;
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return Json(404, R"({"error":"no such job"})");
    if (NowMs() < it->second.done_ms) return Json(200, R"({"status":"processing"})");
    return Json(200, it->second.final);
  }

  // The job's callback to the X-Callback-Url of its call, authenticated as `callback_auth` says:
  // "both" (the URL as received, its token included, and the Bearer secret), "token" (the URL
  // alone) or "bearer" (the URL without its query, and the Bearer secret). Under mu_.
  void QueueCallback(const HttpRequestView& req, const JobState& job) {
    std::string url(req.headers->get("x-callback-url"));
    if (!callback_ || url.empty()) return;
    if (callback_auth_ == "bearer") url = url.substr(0, url.find('?'));
    callbacks_.At(job.done_ms, url, job.final, callback_auth_ != "token");
  }

  HttpResponse Control(std::string_view target) {
    std::lock_guard<std::mutex> lock(mu_);
    std::string v;
    if (QueryParameter(target, "outage", &v)) outage_ = v == "1";
    if (QueryParameter(target, "ratelimit", &v)) ratelimit_ = std::stoll(v);
    if (QueryParameter(target, "retry_after", &v)) retry_after_s_ = std::stoll(v);
    if (QueryParameter(target, "reject", &v)) rejected_.insert(v);
    if (QueryParameter(target, "unreject", &v)) rejected_.erase(v);
    if (QueryParameter(target, "latency_ms", &v)) latency_ms_ = std::stoll(v);
    if (QueryParameter(target, "slow_first_ms", &v)) slow_first_ms_ = std::stoll(v);
    if (QueryParameter(target, "async", &v)) async_ = v == "1";
    if (QueryParameter(target, "csrf", &v)) csrf_ = v == "1";
    if (QueryParameter(target, "csrf_rotate", &v)) csrf_token_.clear();
    if (QueryParameter(target, "job_ms", &v)) job_ms_ = std::stoll(v);
    if (QueryParameter(target, "callback", &v)) callback_ = v == "1";
    if (QueryParameter(target, "callback_auth", &v)) callback_auth_ = v;
    // Where 202 answers say the job's status is: "" (the default) for a relative URL.
    if (QueryParameter(target, "status_base", &v)) status_base_ = v;
    return Json(200, R"({"ok":true})");
  }

  std::string Orders() {
    std::lock_guard<std::mutex> lock(mu_);
    std::string out = "{";
    for (const auto& [crm_id, numbers] : orders_by_crm_id_) {
      if (out.size() > 1) out += ',';
      AppendJsonString(&out, crm_id);
      out += ":[";
      for (size_t i = 0; i < numbers.size(); ++i) {
        if (i > 0) out += ',';
        AppendJsonString(&out, numbers[i]);
      }
      out += ']';
    }
    return out + "}";
  }

  std::string Stats() {
    std::lock_guard<std::mutex> lock(mu_);
    auto n = [](const char* k, int64_t v) {
      return std::string("\"") + k + "\":" + std::to_string(v);
    };
    return "{" + n("requests", requests_) + "," + n("created", created_) + "," +
           n("duplicates", duplicates_) + "," + n("errors_5xx", errors_5xx_) + "," +
           n("rate_limited", rate_limited_) + "," + n("rejected", rejected_calls_) + "," +
           n("unauthorized", unauthorized_) + "," + n("order_violations", order_violations_) + "," +
           n("tokens_issued", tokens_issued_) + "," + n("polls", polls_) + "," +
           n("callbacks_sent", callbacks_.sent()) + "," +
           n("callbacks_refused", callbacks_.refused()) + "," + n("csrf_fetches", csrf_fetches_) +
           "," + n("csrf_refused", csrf_refused_) + "," +
           n("min_gap_after_429_ms", min_gap_after_429_ == INT64_MAX ? -1 : min_gap_after_429_) +
           "}";
  }

  Options o_;
  std::string mode_, first_, second_;
  std::mutex mu_;
  std::mt19937 rng_{42};
  int64_t latency_ms_ = 0, slow_first_ms_ = 0;
  bool outage_ = false;
  int64_t ratelimit_ = 0, retry_after_s_ = 1;
  std::set<std::string> rejected_;
  std::map<std::string, HttpResponse> answers_;  // by Idempotency-Key
  std::map<std::string, int64_t> last_seq_;      // by crm_id
  // The order numbers created per crm_id (GET /_orders).
  std::map<std::string, std::vector<std::string>> orders_by_crm_id_;
  std::map<std::string, int64_t> last_429_;  // key -> when it got a 429
  std::map<std::string, int64_t> tokens_;    // token -> expiry
  int64_t requests_ = 0, created_ = 0, duplicates_ = 0, errors_5xx_ = 0, rate_limited_ = 0,
          rejected_calls_ = 0, unauthorized_ = 0, order_violations_ = 0, tokens_issued_ = 0;
  int64_t min_gap_after_429_ = INT64_MAX;
  bool async_ = false, callback_ = false, csrf_ = false;
  std::string callback_auth_ = "both";
  std::string csrf_token_, csrf_session_;
  int64_t csrf_fetches_ = 0, csrf_refused_ = 0;
  int64_t job_ms_ = 100, polls_ = 0, failed_jobs_ = 0;
  std::string status_base_;
  std::map<std::string, JobState> jobs_;
  Delayer delayer_;
  CallbackSender callbacks_;
};

int Main(int argc, char** argv) {
  Options o;
  CLI::App app{"dvrouter-erp-sim: an ERP order API that misbehaves on command"};
  app.add_option("--listen", o.listen, "HOST:PORT (port 0: a free one)");
  app.add_option("--latency-ms", o.latency_ms, "answer delay");
  app.add_option("--error-rate", o.error_rate, "share of calls answered 500");
  app.add_option("--auth", o.auth,
                 "none | basic:USER:PASS | api_key:HEADER:KEY | oauth2:ID:SECRET");
  app.add_option("--token-ttl-s", o.token_ttl_s, "lifetime of issued tokens");
  app.add_option("--callback-secret", o.callback_secret, "Bearer token sent with job callbacks");
  app.add_option("--tls-cert", o.tls_cert, "PEM certificate chain: serve HTTPS");
  app.add_option("--tls-key", o.tls_key, "PEM private key for --tls-cert");
  CLI11_PARSE(app, argc, argv);
  HttpServerLimits limits;
  limits.max_connections = 100'000;
  return RunSimulator("erp-sim", o.listen, o.tls_cert, o.tls_key, limits,
                      [&] { return std::make_unique<ErpSim>(o); });
}

}  // namespace
}  // namespace dvrouter::sim

int main(int argc, char** argv) { return dvrouter::sim::Main(argc, argv); }
