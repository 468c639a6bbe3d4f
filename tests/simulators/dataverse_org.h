// The Dataverse simulator's organization: the state every part of it shares (rows with versions,
// tombstones, registration tables, failed system jobs, table <-> entity set names, test faults)
// and the small JSON, GUID and time helpers they use.
//
// Threads: one Org per simulator; every member below `mu` is guarded by it. The I/O threads
// (requests) and the webhook sender thread lock it; helpers marked "locked" expect it held.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "router/ingress/http.h"

namespace dvrouter::sim {

using Columns = std::map<std::string, std::string>;  // name -> raw JSON value

HttpResponse Json(int status, std::string body);
HttpResponse ODataError(int status, const std::string& code, const std::string& message);
std::string ColumnsJson(const Columns& c);
bool ParseColumns(std::string_view body, Columns* out);
// The string inside a JSON string literal; anything else unchanged.
std::string Unquote(std::string v);
std::string Quote(std::string_view s);
// A GUID made of a counter (stable ids for registration rows) or a random (version 4) one.
std::string NewGuid(uint64_t n, uint32_t kind);
std::string RandomGuid();
bool IsGuid(std::string_view s);

int64_t NowMs();                      // steady clock
int64_t WallSeconds();                // Unix seconds
std::string IsoTime(int64_t unix_s);  // 2026-12-05T01:02:03Z
// ISO 8601 (2026-12-05T01:02:03Z, fractions and +hh:mm offsets accepted) -> Unix ms; false if not.
bool ParseIsoMs(std::string_view text, int64_t* ms);

struct Row {
  std::string table;
  Columns columns;  // lookups as _<name>_value, as the Web API returns them
  int64_t version = 0;
  int64_t created_s = 0, modified_s = 0;
};

struct Tombstone {
  std::string id;
  int64_t version = 0;
  int64_t deleted_s = 0;
};

// A failed system job (asyncoperation): its columns as the Web API returns them.
struct Job {
  std::string id;
  int64_t completed_s = 0;
  Columns columns;
};

// Answers of a route made malformed on demand (/_control?malform=route:kind&count=N).
struct Malform {
  std::string kind;
  int64_t remaining = 0;
};

struct Org {
  std::string app_user, organization = "simorg.crm.dynamics.com";
  std::atomic<uint16_t> port{0};  // the listening port, for links when Host has none

  std::mutex mu;
  std::map<std::string, std::map<std::string, Row>> rows;   // set -> id -> row
  std::map<std::string, std::vector<Tombstone>> deleted;    // set -> tombstones, oldest first
  std::map<std::string, std::vector<Columns>> collections;  // registration tables
  std::map<std::string, std::string> set_of_table, table_of_set;
  std::set<std::string> change_tracking;  // tables
  int64_t version = 0;                    // last versionnumber given
  int64_t delta_expired_upto = 0;         // delta tokens <= this answer "expired"
  std::vector<Job> jobs;                  // failed jobs, in completedon order
  int64_t last_completed_s = 0;
  std::map<std::string, Malform> malform;  // route -> fault
  int64_t ack_lost = 0;
  bool webhooks_on = true;
  int64_t webhooks_posted = 0, webhooks_delivered = 0, webhooks_failed = 0, failed_jobs = 0,
          jobs_deleted = 0, asyncoperation_queries = 0, delta_queries = 0, changes_applied = 0;

  // locked: registers a table and its entity set (both ways).
  void MapTable(const std::string& table, const std::string& set);
  // locked: the set of a table, "" if unknown.
  std::string SetOf(const std::string& table) const;
  // locked: the next versionnumber.
  int64_t NextVersion() { return ++version; }
  // locked: a row as GET <set>(<id>) answers it: columns, <table>id, versionnumber, createdon,
  // modifiedon and @odata.etag.
  Columns RowView(const std::string& id, const Row& row) const;
  // locked: takes one malformed answer of `route` if one is pending; "" if none.
  std::string TakeMalform(const std::string& route);
};

// A JSON answer `head` + items (comma-separated) + `tail`, malformed by `kind` when not empty:
// missing_field drops `fields` from each item, bad_guid puts a non-GUID in those present,
// not_json answers HTML, status_500 an OData error, truncated cuts the body in half.
HttpResponse MalformedOr(const std::string& kind, std::vector<Columns> items,
                         const std::vector<std::string>& fields, const std::string& head,
                         const std::string& tail);

}  // namespace dvrouter::sim
