// ErpAdapter: one HTTP call per event to the customer's ERP, built from a request template
// (router/config ErpRequest; router/common/json_template.h), over the shared HTTP client.
//
// Per event: the first template whose tables and messages match renders the path and the JSON
// body from the event (Target's converted attributes, header fields, event id and seq); the call
// carries `Idempotency-Key: <event id>`, so a resend after a lost answer is absorbed by the ERP;
// authentication is basic, an API-key header, or an OAuth 2.0 client-credentials bearer token
// (cached, fetched again before expiry, and once more after a 401). An event no template
// matches is permanent (a configuration gap the DLQ shows).
//
// Answers: 2xx is delivered (202: processing) with the configured JSON pointers captured into
// the status's answer ({"order_number": "SO-1"}); 408, 429, 5xx, timeouts and connection
// errors are retried, honouring Retry-After (seconds or an HTTP date), and so are 401/403
// (credentials to fix, not a reason to dead-letter everything) and 409/425 (the ERP still works
// on an earlier copy of the key); every other 4xx is permanent, with an excerpt of the answer.
//
// Jobs (`async`): a 202 answer leaves the event processing. The ERP confirms it by calling back
// (POST /callbacks/<adapter>/<event id>?token=<the event's token> on the ingress listener, the
// URL every call carries as `X-Callback-Url` when `public_url` is set; or with `Authorization:
// Bearer <secret>` instead of the token), or the adapter polls
// the status URL of the 202 answer (`url_pointer`, else its Location header) every `interval`
// until the status at `status_pointer` is one of `completed` or `failed` (or `timeout` passes:
// failed). The answer's captures are read from the final body; a failure goes to the DLQ with the
// text at `error_pointer`. Polls are kept in memory: after a restart only callbacks confirm
// (the event's status stays processing otherwise; docs/adapters/erp.md).
//
// SAP OData (`profile: sap_odata`): SAP Gateway wants a CSRF token on every modifying call: one
// GET of base_url + csrf_path with `x-csrf-token: Fetch` answers it (and the session cookies it
// belongs to); calls carry both; a 403 "CSRF token validation failed" (or x-csrf-token: Required)
// fetches a new one and sends the call once more.
//
// Concurrency: up to concurrency.max calls at once (one thread each). With `adaptive` the limit
// moves like TCP congestion control: +1/limit per success, halved (at most every 200 ms) on a
// 429, 503, timeout or connection error, never below 1. Records keep their order through the
// engine (one event per record in flight); many records are in flight together.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "adapters/adapter.h"
#include "adapters/common/call_pool.h"
#include "adapters/common/http_client.h"
#include "adapters/common/oauth.h"
#include "adapters/erp/erp_config.h"
#include "router/common/json_template.h"
#include "router/config/config.h"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace dvrouter {

class ErpAdapter final : public Adapter, public AsyncConfirmations {
 public:
  ErpAdapter(AdapterConfig config, prometheus::Registry* registry);
  ~ErpAdapter() override;

  std::string_view name() const override { return config_.name; }
  Status Start(uint64_t redelivery_from_seq) override;
  void Deliver(std::span<const Delivery> batch, DeliveryDone* done) override;
  void Stop() override;
  AsyncConfirmations* async_confirmations() override { return this; }
  void SetConfirmationSink(ConfirmationSink* sink) override { sink_ = sink; }
  Result<DeliveryResult> ParseCallback(const CallbackCredentials& credentials,
                                       std::string_view body) override;
  // The event's token as the URL's `token` parameter (CallbackToken, the form X-Callback-Url
  // carries), or `Authorization: Bearer <async.callback.secret>` (any event: the weaker form,
  // kept for ERPs that send it); either compared in constant time.
  Status AuthorizeCallback(const CallbackCredentials& credentials) const override;
  // A job's status answer (callback or poll): nullopt while it is still running.
  // `quote_body`: an unreadable answer's error quotes it (only the ERP's own answers are quoted).
  static std::optional<DeliveryResult> JobOutcome(
      const ErpAsync& async, const std::vector<std::pair<std::string, std::string>>& capture,
      std::string_view body, bool quote_body = true);

  // The captured answer: a JSON object of name -> the value at each pointer (null if absent);
  // empty when nothing is to be captured.
  static std::string Capture(const std::vector<std::pair<std::string, std::string>>& capture,
                             std::string_view body);
  double concurrency_limit() const;

 private:
  struct Compiled {
    const ErpRequest* request = nullptr;
    JsonTemplate path, body;
  };
  struct Call {
    const Compiled* tmpl = nullptr;
    std::string url, body, event_id;
    EventKey key;
  };
  struct Poll {
    EventKey key;
    std::string url;
    std::string refused;  // why the URL is not fetched (the event fails at its first turn)
    const Compiled* tmpl = nullptr;
    int64_t next_ms = 0, deadline_ms = 0;
  };

  Status Prepare(const Delivery& d, Call* call) const;
  DeliveryResult Execute(const Call& call);
  void Adapt(bool congested);
  void AuthHeaders(ClientRequest* req, std::string* token);
  // sap_odata: the CSRF token and session cookies, fetched when missing or after `stale` was
  // refused. Error: the fetch failed (retry the call later).
  Status CsrfHeaders(ClientRequest* req, const std::string& stale, std::string* used);
  void StartPoll(const Call& call, const ClientResponse& answer);
  void PollLoop();
  bool StopRequested();

  AdapterConfig config_;
  const ErpConfig& erp_ = config_.Settings<ErpConfig>();  // the type's own settings
  // base_url's CanonicalOrigin ("" for a base_url ParseUrl refuses).
  const std::string erp_origin_ = [this] {
    Result<Url> u = ParseUrl(erp_.base_url);
    return u.ok() ? CanonicalOrigin(*u) : std::string();
  }();
  std::vector<Compiled> templates_;
  HttpClient http_;
  std::unique_ptr<OAuthTokenSource> tokens_;

  prometheus::Family<prometheus::Counter>* requests_ = nullptr;
  prometheus::Counter* answers_[4] = {};  // 2xx, 4xx, 5xx, no answer
  std::string basic_;                     // the Authorization value for basic auth
  prometheus::Histogram* duration_ = nullptr;
  prometheus::Gauge* limit_gauge_ = nullptr;

  std::mutex adapt_mu_;
  int64_t last_decrease_ms_ = 0;
  std::vector<std::pair<std::string, std::string>> callback_capture_;  // every template's
  ConfirmationSink* sink_ = nullptr;

  std::mutex csrf_mu_;
  std::string csrf_token_, csrf_cookies_;
  prometheus::Counter* csrf_fetches_ = nullptr;

  std::mutex poll_mu_;
  std::condition_variable poll_cv_;
  std::vector<Poll> polls_;
  bool poll_stop_ = false;
  std::thread poller_;
  CallPool pool_;
};

}  // namespace dvrouter
