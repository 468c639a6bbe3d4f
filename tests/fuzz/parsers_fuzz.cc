// The small parsers of outside text, chosen by the first byte: URLs (adapter settings, an ERP's
// status URL), listener endpoints, query parameters, Dataverse dates, JSON templates, status
// records, the YAML configuration, reconciliation's Web API pages (failed jobs, change tracking
// deltas) and its state files. No crash, and what each accepts holds its promise.
#include <simdjson.h>

#include <cstdint>
#include <string>

#include "adapters/common/http_client.h"
#include "adapters/dataverse/change_tracking.h"
#include "adapters/dataverse/failed_jobs.h"
#include "adapters/dataverse/reconcile_state.h"
#include "adapters/dataverse/tracking_state.h"
#include "adapters/registry.h"
#include "router/common/json_template.h"
#include "router/config/config.h"
#include "router/decode/decode.h"
#include "router/delivery/status_record.h"
#include "router/ingress/http.h"
#include "tests/fuzz/fuzz_util.h"

using dvrouter::fuzz::Check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 9) {
    case 0: {
      auto url = dvrouter::ParseUrl(text);
      if (url.ok()) {
        Check(!url->host.empty() && url->port != 0, "a URL without host or port");
        Check(url->target.starts_with("/"), "a URL target without its slash");
        auto again = dvrouter::ParseUrl(dvrouter::CanonicalOrigin(*url) + url->target);
        Check(again.ok() && again->host.size() == url->host.size() && again->port == url->port,
              "a URL's canonical form parses differently");
      }
      break;
    }
    case 1: {
      auto ep = dvrouter::ParseEndpoint(text);
      if (ep.ok()) {
        auto back = dvrouter::ParseEndpoint(ep->ToString());
        Check(back.ok() && back->host == ep->host && back->port == ep->port,
              "an endpoint does not parse back");
      }
      break;
    }
    case 2: {
      std::string value;
      const size_t eq = text.find('\n');
      const std::string name = eq == std::string::npos ? "key" : text.substr(0, eq);
      (void)dvrouter::QueryParameter(text, name, &value);
      Check(value.size() <= text.size(), "a query value longer than the query");
      break;
    }
    case 3: {
      auto ms = dvrouter::ParseDataverseDate(text);
      (void)ms;
      break;
    }
    case 4: {
      auto t = dvrouter::JsonTemplate::Compile(text);
      if (t.ok()) {
        std::string out;
        t->Render([](std::string_view, std::string* o) { *o += "null"; }, &out);
      }
      break;
    }
    case 5: {
      auto r = dvrouter::DecodeStatusRecord(text);
      if (r.ok()) {
        auto back = dvrouter::DecodeStatusRecord(dvrouter::EncodeStatusRecord(*r));
        Check(back.ok() && back->state == r->state && back->adapter == r->adapter &&
                  back->seq == r->seq && back->order == r->order,
              "a status record does not round-trip");
      }
      break;
    }
    case 6: {
      auto config = dvrouter::ParseConfig(text, "/nonexistent");
      if (config.ok()) (void)dvrouter::DescribeConfig(*config);
      break;
    }
    case 7: {
      auto jobs = dvrouter::ParseFailedJobsPage(text);
      if (jobs.ok()) {
        for (const auto& job : jobs->jobs) {
          Check(dvrouter::IsGuid(job.id) && dvrouter::IsGuid(job.step_id) &&
                    dvrouter::IsGuid(job.row_id) && dvrouter::IsLogicalName(job.table),
                "a failed job without its GUIDs or table");
        }
      }
      auto delta = dvrouter::ParseDeltaPage(text, "account");
      if (delta.ok()) {
        Check(!delta->next_link.empty() || !delta->delta_link.empty(), "a page without a link");
        for (const auto& row : delta->rows) {
          Check(dvrouter::IsGuid(row.id), "a tracked row without its GUID");
          Check(row.deleted == row.json.empty(), "a deletion with columns or a row without");
        }
      }
      break;
    }
    case 8: {
      // What decodes, encodes to a text that decodes to the same.
      auto failed = dvrouter::DecodeReconcileState(text);
      if (failed.ok()) {
        const std::string once = dvrouter::EncodeReconcileState(*failed);
        auto back = dvrouter::DecodeReconcileState(once);
        Check(back.ok() && dvrouter::EncodeReconcileState(*back) == once,
              "a reconcile state does not round-trip");
      }
      auto tracking = dvrouter::DecodeTrackingState(text);
      if (tracking.ok()) {
        const std::string once = dvrouter::EncodeTrackingState(*tracking);
        auto back = dvrouter::DecodeTrackingState(once);
        Check(back.ok() && dvrouter::EncodeTrackingState(*back) == once,
              "a change tracking state does not round-trip");
      }
      break;
    }
  }
  return 0;
}
