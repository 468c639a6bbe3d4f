// Failed system jobs and the events they stand for (docs/reconciliation.md): a page of
// `asyncoperations` as the Web API answers it, read into FailedJobs, and the webhook body
// Dataverse would have posted for one of them, rebuilt from the row's current columns (or as a
// Delete when the row is gone). Pure functions: any thread (the reconciler's).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "router/common/status.h"
#include "router/decode/event.h"

namespace dvrouter {

// One failed job of an asynchronous step: the webhook Dataverse could not deliver. GUIDs are
// lowercase.
struct FailedJob {
  std::string id;              // asyncoperationid: the lost webhook's OperationId
  std::string step_id;         // _owningextensionid_value: its OwningExtension.Id
  std::string message;         // messagename
  std::string table;           // primaryentitytype
  std::string row_id;          // _regardingobjectid_value: its PrimaryEntityId
  int64_t completed_ms = 0;    // completedon
  int64_t created_ms = 0;      // createdon (0: absent)
  std::string correlation_id;  // correlationid ("" : absent)
  // _createdby_value: the user whose operation the step ran for, the lost webhook's
  // InitiatingUserId ("": absent, then the row's last modifier stands in).
  std::string user_id;
};

// A row of the page that cannot be a failed job (a field missing or malformed), and why.
struct BadJobRow {
  size_t index = 0;
  std::string reason;
};

struct FailedJobsPage {
  std::vector<FailedJob> jobs;  // in the page's order
  std::vector<BadJobRow> bad;
  std::string next_link;  // @odata.nextLink, "" on the last page
};

// InvalidArgument when the body is not an OData collection (not JSON, no "value" array).
Result<FailedJobsPage> ParseFailedJobsPage(std::string_view body);

// The dedupe key of the webhook the job stands for: OwningExtension.Id, OperationId,
// MessageName and PrimaryEntityId, as the ingress computes it for a webhook.
EventKey FailedJobKey(const FailedJob& job);

// The webhook body for `job` (docs/reconciliation.md, "The event"): a RemoteExecutionContext with
// the job's message, table, row, step and OperationId, `SharedVariables` holding
// `dvrouter.reconciled`, and as Target an Entity of `row` (a Web API row: a JSON object with
// annotations) converted to the webhook's shapes; with no row (it is gone), a Delete of an
// EntityReference. `source` opens the shared variable's value ("<source> <job id>").
// InvalidArgument when `row` is not a JSON object.
Result<std::string> ReconciledWebhook(const FailedJob& job, std::string_view step_name,
                                      int32_t stage, const std::optional<std::string>& row,
                                      std::string_view source = "failed_job");

}  // namespace dvrouter
