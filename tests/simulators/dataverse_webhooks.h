// The Dataverse simulator's registered steps at work: applies changes (POST /_changes, and the
// Web API's PATCH) to the organization's rows, builds the RemoteExecutionContext each matching
// sdkmessageprocessingstep would post to its serviceendpoint, and delivers them the way
// Dataverse does (timeout, one retry on 502/503/504 only; a failure of an asynchronous step
// becomes a failed asyncoperation whose id is the body's OperationId).
//
// Threads: ParseChanges and ApplyChanges run on I/O threads (ApplyChanges with org->mu held);
// Sender owns the one thread that posts, in order, and answers the /_changes request.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "router/ingress/http.h"
#include "tests/simulators/dataverse_org.h"

namespace dvrouter::sim {

// One change of a POST /_changes body. Column values as given: JSON scalars, or objects
// {"@odata.type":"EntityReference","id":G,"logicalname":T} / {"@odata.type":"OptionSetValue"|
// "Money","value":N}.
struct Change {
  std::string op;  // create, update, delete, assign
  std::string table, id;
  std::string user;  // InitiatingUserId; "" for the default user
  Columns columns;
};

// A JSON array of changes; false with the reason in *error.
bool ParseChanges(std::string_view body, std::vector<Change>* out, std::string* error);

// One webhook post a step makes.
struct Delivery {
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  bool async = true;
  std::string operation_id, correlation_id, step_id, step_name, message, table, row_id;
  std::string user;  // whose operation the step ran for (the system job's creator)
  int64_t created_s = 0;
};

// locked: applies the changes in order (each checked first against the rows as the earlier ones
// left them: create of an existing row, or another op on a missing one, refuses the whole batch
// with nothing applied) and appends the deliveries of every matching registered step.
bool ApplyChanges(Org* org, const std::vector<Change>& changes, std::vector<Delivery>* out,
                  std::string* error);

// locked: the Update deliveries of a Web API PATCH of `set`(`id`) with the body's columns
// (lookups as name@odata.bind), made by the app user. The row is already updated.
void PatchDeliveries(Org* org, const std::string& set, const std::string& id,
                     const Columns& patched, std::vector<Delivery>* out);

class Sender {
 public:
  // `acked_log`, when not empty, is a file to which the event id of every post the receiver
  // answered 2xx with an `event_id` (dvrouter's answer) is appended, one per line.
  Sender(Org* org, int64_t timeout_ms, const std::string& acked_log = "");
  ~Sender();
  // Posts the deliveries after those queued before; then answers `exchange` (if not null) with
  // {"changes":N,"delivered":D,"failed_jobs":F,"failed":X}.
  void Enqueue(std::vector<Delivery> deliveries, int64_t changes, HttpExchange* exchange);

 private:
  struct Batch {
    std::vector<Delivery> deliveries;
    int64_t changes = 0;
    HttpExchange* exchange = nullptr;
  };
  void Run();
  void LogAcked(std::string_view answer);
  Org* org_;
  int64_t timeout_ms_;
  std::FILE* acked_log_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace dvrouter::sim
