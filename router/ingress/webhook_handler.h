// WebhookHandler: the Dataverse webhook route, as request logic that knows nothing of sockets.
//
// For each request, on its header: route (404), method (405 unless POST), authentication in the
// configured Dataverse form (401; secrets compared in constant time), framing (411 unless the
// request has a Content-Length: Dataverse sends one); then, with the body,
// decode (400 naming the field), then
// Append to the journal. The answer is sent from the journal's callback: 200 only once the event
// is durable (or a duplicate of a durable one), 503 with Retry-After when the journal refuses it.
// Every outcome is counted.
//
// Threads: Handle() runs on I/O threads and uses that thread's Decoder; the journal callback
// runs on the journal's writer thread; a callback is answered from its CallbackOperations' thread.
// Per-connection buffers (the EventHeader and the AppendRequest) live in the connection state, so
// no allocation per request in steady state.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "router/config/config.h"
#include "router/decode/decode.h"
#include "router/ingress/http.h"
#include "router/journal/journal.h"
#include "router/metrics/metrics.h"

namespace dvrouter {

// Callbacks from sinks on the ingress listener: POST /callbacks/<adapter>/<event id> (an ERP
// confirming a job it answered 202 for). The operations authenticate and apply them; plugged in
// once the delivery engine runs (until then: 503). Called on ingress I/O threads.
struct CallbackRequest {
  std::string_view adapter;  // POST /callbacks/<adapter>/<event id>[?query]
  std::string_view event_id;
  std::string_view target;         // path and query, as sent
  std::string_view authorization;  // the Authorization header, "" if none
};

class CallbackOperations {
 public:
  virtual ~CallbackOperations() = default;
  // On the header alone: may this callback be read? OK, or NotFound (no such adapter, or it takes
  // no callbacks) or PermissionDenied; refusals are counted here.
  virtual Status Authorize(const CallbackRequest& request) = 0;
  // With the body: applies the callback and answers it through `exchange` (once, from any
  // thread; the request's views stay valid until then).
  virtual void Callback(const CallbackRequest& request, std::string_view body,
                        HttpExchange* exchange) = 0;
};

inline constexpr std::string_view kCallbackPrefix = "/callbacks/";

class WebhookHandler final : public HttpHandler {
 public:
  // `journal` may be set later (set_journal) so the listener can exist during recovery; until
  // then requests get 503.
  WebhookHandler(const IngressConfig& config, uint32_t partitions, int io_threads,
                 RouterMetrics* metrics);

  void set_journal(Journal* journal) { journal_.store(journal, std::memory_order_release); }
  void set_callbacks(CallbackOperations* ops) { callbacks_.store(ops, std::memory_order_release); }

  std::unique_ptr<HttpConnectionState> NewConnection() override;
  std::optional<HttpResponse> Precheck(const HttpRequestView& request) override;
  void Handle(const HttpRequestView& request, HttpConnectionState* state, HttpExchange* exchange,
              int io_thread) override;
  void OnTransportReject(TransportReject reject) override;

 private:
  struct Call;
  bool Authorized(const HttpRequestView& request) const;
  std::optional<HttpResponse> PrecheckCallback(const HttpRequestView& request);
  void Finish(Call* call, const AppendResult& result);
  void Reply(Call* call, HttpExchange* exchange, RequestOutcome outcome, HttpResponse response);

  const IngressConfig config_;
  const uint32_t partitions_;
  RouterMetrics* metrics_;
  std::atomic<Journal*> journal_{nullptr};
  std::atomic<CallbackOperations*> callbacks_{nullptr};
  std::vector<std::unique_ptr<Decoder>> decoders_;  // one per I/O thread
};

}  // namespace dvrouter
