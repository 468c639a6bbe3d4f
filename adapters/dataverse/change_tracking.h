// Change tracking catch-up, the pure part (docs/reconciliation.md, "Change tracking"): a page of
// a table's changes as the Web API answers `Prefer: odata.track-changes` (rows and
// `$deletedEntity` entries), what a journaled webhook tells of the row version it carried, the
// rule that decides whether a changed row was already seen, and the identity of the event a
// change becomes. Pure functions: any thread (the reconciler's).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "adapters/dataverse/failed_jobs.h"
#include "router/common/status.h"

namespace dvrouter {

// One entry of a change tracking page: a row as it is now, or a deleted row's id.
struct TrackedRow {
  std::string id;  // lowercase GUID
  bool deleted = false;
  int64_t modified_ms = 0;  // modifiedon (0: not selected)
  int64_t created_ms = 0;   // createdon (0: not selected)
  int64_t version = 0;      // versionnumber (0: not selected)
  std::string modified_by;  // _modifiedby_value, lowercase ("" : not selected)
  std::string json;         // the row's JSON object as answered ("" for a deleted row)
};

struct DeltaPage {
  std::vector<TrackedRow> rows;  // in the page's order
  std::vector<BadJobRow> bad;    // entries that are neither a row with its id nor a deletion
  std::string next_link;         // @odata.nextLink ("" on the last page)
  std::string delta_link;        // @odata.deltaLink (on the last page)
};

// A page of `table`'s changes; the row id is `<table>id`. InvalidArgument when the body is not
// an OData collection or a page has neither link nor is followed by one (see the .cc).
Result<DeltaPage> ParseDeltaPage(std::string_view body, std::string_view table);

// The newest version of a row the journal holds an event of.
struct SeenVersion {
  int64_t modified_ms = 0;  // the event's Target (or post image) modifiedon
  int64_t version = 0;      // its RowVersion
  bool deleted = false;     // a Delete was journaled
};

// What a journaled webhook body of `message` says of its row's version: Target's RowVersion and
// modifiedon attribute (the first post image's when the Target has none); Delete marks it
// deleted. Nothing (all zero) when the body carries neither.
SeenVersion SeenInWebhook(std::string_view body, std::string_view message);
// Keeps the newer of the two in *into.
void MergeSeen(const SeenVersion& seen, SeenVersion* into);

// Whether the journal already holds `row` as new as it is: versionnumbers compared when both
// sides have one, else modifiedon (same second counts as seen); a deleted row is seen only by a
// journaled Delete.
bool IsSeen(const SeenVersion& seen, const TrackedRow& row);

// The failed-job-shaped description of the event a tracked change becomes: OwningExtension.Id a
// GUID named after the table (the same on every router), OperationId a GUID made of the table,
// row, message and the row's version (or `token`, the delta link read, for a deletion), so a run
// repeated after a crash journals a duplicate, not a second event.
FailedJob TrackedChangeJob(std::string_view table, const TrackedRow& row, std::string_view message,
                           std::string_view token);
// The pseudo step's name in the event: "dvrouter change tracking: <table>".
std::string TrackedChangeStepName(std::string_view table);

}  // namespace dvrouter
