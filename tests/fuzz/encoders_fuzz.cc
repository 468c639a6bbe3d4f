// Every adapter's encoder on what the decoder accepts: the SQL row, the ClickHouse row, the lake
// row and its directory, the write-back's PATCH. What comes out must be safe where it goes:
// valid JSON, a SQL identifier that is not the router's own, a relative path without dot
// segments, a Web API resource without separators.
#include <simdjson.h>

#include <cstdint>
#include <string>

#include "adapters/adapter.h"
#include "adapters/clickhouse/clickhouse_adapter.h"
#include "adapters/clickhouse/clickhouse_config.h"
#include "adapters/dataverse/dataverse_adapter.h"
#include "adapters/dataverse/dataverse_config.h"
#include "adapters/lake/lake_adapter.h"
#include "adapters/sql/sql_config.h"
#include "adapters/sql/sql_row.h"
#include "router/common/identifiers.h"
#include "router/decode/decode.h"
#include "router/delivery/status_record.h"
#include "tests/fuzz/fuzz_util.h"

using dvrouter::fuzz::Check;

namespace {

// Valid JSON; integers beyond 64 bits (valid, copied as the webhook sent them) included.
bool IsJson(std::string_view text) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  const auto error = parser.parse(text).get(doc);
  return error == simdjson::SUCCESS ||
         (error == simdjson::NUMBER_ERROR && dvrouter::fuzz::HasHugeInteger(text));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static dvrouter::Decoder decoder(1 << 20);
  const std::string body(reinterpret_cast<const char*>(data), size);
  dvrouter::EventHeader h;
  if (!decoder.Decode(body.data(), body.size(), body.size(), &h).ok()) return 0;
  dvrouter::Delivery d;
  d.seq = 7;
  d.header = &h;
  d.body = body;
  d.received_ms = 1'700'000'000'000;

  // SQL (both adapters share it), with an empty prefix: the table is the event's own name.
  dvrouter::SqlConfig sql;
  sql.table_prefix = "";
  dvrouter::SqlRow row;
  if (dvrouter::BuildSqlRow(d, sql, &row).ok() && row.op != dvrouter::SqlOp::kSkip) {
    Check(dvrouter::ValidSqlIdentifier(row.table), "SQL table is not an identifier");
    Check(!row.table.starts_with(dvrouter::kReservedTablePrefix), "SQL table is the router's own");
    Check(row.op == dvrouter::SqlOp::kDelete || IsJson(row.attributes), "SQL attributes not JSON");
  }

  // ClickHouse: one JSON line.
  dvrouter::ClickHouseConfig ch;
  std::string line;
  if (dvrouter::ClickHouseAdapter::EncodeRow(d, ch, &line).ok()) {
    Check(!line.empty() && line.back() == '\n', "ClickHouse row without its newline");
    Check(IsJson(std::string_view(line).substr(0, line.size() - 1)), "ClickHouse row not JSON");
  }

  // The lake: a JSON row under a relative directory of plain components.
  std::string lake_row, dir;
  if (dvrouter::LakeAdapter::EncodeRow(d, &lake_row, &dir).ok()) {
    Check(IsJson(lake_row), "lake row not JSON");
    Check(!dir.empty() && dir.front() != '/', "lake directory not relative");
    Check(dir.find("..") == std::string::npos, "lake directory with a dot segment");
    Check(dir.find('\0') == std::string::npos, "lake directory with a NUL");
  }

  // The write-back: a status record of this event becomes a PATCH of one row.
  dvrouter::StatusRecord rec;
  rec.event_id = "0123456789abcdef0123456789abcdef";
  rec.adapter = "erp";
  rec.state = "failed";
  rec.table = h.primary_entity_name;
  rec.row_id = h.primary_entity_id;
  rec.error = h.message_name;  // any text the event carries
  rec.answer = h.organization_name;
  dvrouter::EventHeader status = h;
  status.status_record = true;
  dvrouter::DataverseConfig dv;
  dv.status_column = "new_status";
  dv.status_values = {{"failed", 2}};
  dv.error_column = "new_error";
  auto patch = dvrouter::DataverseAdapter::BuildPatch(dv, status, EncodeStatusRecord(rec));
  if (patch.ok()) {
    Check(patch->resource.find_first_of("/?#\\") == std::string::npos, "PATCH resource escapes");
    Check(patch->body.empty() || IsJson(patch->body), "PATCH body not JSON");
  }

  return 0;
}
