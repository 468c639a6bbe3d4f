#include "adapters/sql/sql_row.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <cctype>

#include "router/common/ascii.h"
#include "router/common/identifiers.h"
#include "router/decode/attributes.h"

namespace dvrouter {

namespace {}  // namespace

Status BuildSqlRow(const Delivery& d, const SqlConfig& config, SqlRow* out) {
  const EventHeader& h = *d.header;
  out->op = SqlOp::kSkip;
  out->version = d.seq;
  out->attributes.clear();
  const int64_t op_ms = h.operation_created_on_ms != 0 ? h.operation_created_on_ms : d.received_ms;
  out->updated_at = FormatIsoUtc(op_ms);

  ChangeSet scratch;
  const ChangeSet* cs = nullptr;
  Status st = ExtractChanges(d.body, d.changes, &scratch, &cs);
  if (!st.ok()) return InvalidArgument("body: " + std::string(st.message()));
  const ChangeSet& changes = *cs;
  const bool is_delete = EqualsIgnoreCase(h.message_name, "Delete");
  if (!changes.has_target || (changes.is_reference && !is_delete)) return Status::Ok();  // skip

  const std::string& entity = h.primary_entity_name;
  out->mapping = config.FindTable(entity);
  out->table = out->mapping != nullptr ? out->mapping->table : config.table_prefix + entity;
  if (!ValidSqlIdentifier(entity) || !ValidSqlIdentifier(out->table)) {
    return InvalidArgument("table '" + entity + "' gives no usable SQL table name ('" + out->table +
                           "'): a-z, 0-9, '_', at most 63 characters");
  }
  if (out->table.starts_with(kReservedTablePrefix)) {
    return InvalidArgument("table '" + entity + "' maps to '" + out->table + "': the prefix " +
                           std::string(kReservedTablePrefix) +
                           " is reserved for the router's own tables");
  }
  if (!config.Allows(entity)) {
    return InvalidArgument("table '" + entity +
                           "' is not one this adapter writes (tables_allowed, or the tables its "
                           "routes and mappings name)");
  }
  out->id = !h.primary_entity_id.empty() ? h.primary_entity_id : changes.id;
  for (char& c : out->id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!IsGuid(out->id)) return InvalidArgument("row id '" + out->id + "' is not a GUID");
  if (is_delete) {
    out->op = SqlOp::kDelete;
  } else {
    out->op = SqlOp::kUpsert;
    // A shared memo's attributes are copied; our own scratch's are taken.
    if (cs == &scratch) {
      out->attributes = std::move(scratch.attributes);
    } else {
      out->attributes = changes.attributes;
    }
  }
  return Status::Ok();
}

Status SqlTableLimit::Take(const std::string& table) {
  if (!config_.any_table) return Status::Ok();
  std::lock_guard<std::mutex> lock(mu_);
  if (taken_.count(table) != 0) return Status::Ok();
  if (taken_.size() >= config_.create_tables_limit) {
    return FailedPrecondition("table '" + table + "' would be table " +
                              std::to_string(taken_.size() + 1) + " and create_tables_limit is " +
                              std::to_string(config_.create_tables_limit) +
                              ": list the tables in tables_allowed or raise the limit");
  }
  taken_.insert(table);
  return Status::Ok();
}

void BuildSqlJob(std::span<const Delivery> batch, const SqlConfig& config, SqlTableLimit* limit,
                 SqlMetrics* metrics, DeliveryDone* done, SqlJob* job) {
  job->done = done;
  job->results.assign(batch.size(), DeliveryResult{});
  job->rows.clear();
  uint64_t skipped = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    PrefetchAhead(batch, i);
    SqlRow row;
    row.index = i;
    if (Status st = BuildSqlRow(batch[i], config, &row); !st.ok()) {
      job->results[i].outcome = DeliveryOutcome::kPermanent;
      job->results[i].error = std::string(st.message());
      metrics->Error(SqlErrorClass::kData);
      continue;
    }
    if (row.op == SqlOp::kSkip) {
      ++skipped;
      continue;
    }
    if (Status st = limit->Take(row.table); !st.ok()) {
      job->results[i].outcome = DeliveryOutcome::kPermanent;
      job->results[i].error = std::string(st.message());
      metrics->Error(SqlErrorClass::kSetup);
      continue;
    }
    job->rows.push_back(std::move(row));
  }
  if (skipped != 0) metrics->Rows(0, 0, skipped);
}

void FailSqlJob(SqlJob* job, const std::string& error) {
  for (const SqlRow& r : job->rows) {
    job->results[r.index].outcome = DeliveryOutcome::kRetryable;
    job->results[r.index].error = error;
  }
  job->done->OnDelivered(job->results);
}

std::string_view SqlErrorClassName(SqlErrorClass c) {
  switch (c) {
    case SqlErrorClass::kConnection:
      return "connection";
    case SqlErrorClass::kSerialization:
      return "serialization";
    case SqlErrorClass::kDeadlock:
      return "deadlock";
    case SqlErrorClass::kShutdown:
      return "shutdown";
    case SqlErrorClass::kTimeout:
      return "timeout";
    case SqlErrorClass::kResources:
      return "resources";
    case SqlErrorClass::kConstraint:
      return "constraint";
    case SqlErrorClass::kData:
      return "data";
    case SqlErrorClass::kSyntax:
      return "syntax";
    case SqlErrorClass::kSetup:
      return "setup";
    case SqlErrorClass::kOther:
      return "other";
  }
  return "other";
}

bool SqlErrorRetryable(SqlErrorClass c) {
  switch (c) {
    case SqlErrorClass::kConnection:
    case SqlErrorClass::kSerialization:
    case SqlErrorClass::kDeadlock:
    case SqlErrorClass::kShutdown:
    case SqlErrorClass::kTimeout:
    case SqlErrorClass::kResources:
    case SqlErrorClass::kSetup:
      return true;
    default:
      return false;
  }
}

SqlErrorClass ClassifySqlState(std::string_view s) {
  if (s.size() != 5) return SqlErrorClass::kConnection;  // no SQLSTATE: libpq lost the server
  if (s == "40001") return SqlErrorClass::kSerialization;
  if (s == "40P01") return SqlErrorClass::kDeadlock;
  if (s == "57014") return SqlErrorClass::kTimeout;     // query_canceled: statement_timeout
  if (s == "55P03") return SqlErrorClass::kTimeout;     // lock_not_available: lock_timeout
  if (s == "40002") return SqlErrorClass::kConstraint;  // integrity violation at commit
  if (s == "57P01" || s == "57P02" || s == "57P03" || s == "57P04" || s == "57P05") {
    return SqlErrorClass::kShutdown;
  }
  const std::string_view cls = s.substr(0, 2);
  if (cls == "08") return SqlErrorClass::kConnection;
  if (cls == "53") return SqlErrorClass::kResources;  // disk full, out of memory, too many conns
  if (cls == "58") return SqlErrorClass::kResources;  // system error (I/O)
  if (cls == "40") return SqlErrorClass::kSerialization;  // other rollbacks: try again
  if (cls == "23") return SqlErrorClass::kConstraint;
  if (cls == "22") return SqlErrorClass::kData;
  if (cls == "42") return SqlErrorClass::kSyntax;
  if (cls == "25") return SqlErrorClass::kSerialization;  // invalid transaction state: retry
  return SqlErrorClass::kOther;
}

SqlMetrics::SqlMetrics(prometheus::Registry* registry, const std::string& adapter,
                       size_t connections)
    : adapter_(adapter) {
  if (registry == nullptr) return;
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  auto& rows = BuildCounter()
                   .Name("dvrouter_sql_rows_total")
                   .Help(
                       "Events applied by a SQL adapter: written, stale (version guard: an "
                       "older or replayed event, no change) or skipped (no entity Target)")
                   .Register(*registry);
  written_ = &rows.Add({{"adapter", adapter}, {"result", "written"}});
  stale_ = &rows.Add({{"adapter", adapter}, {"result", "stale"}});
  skipped_ = &rows.Add({{"adapter", adapter}, {"result", "skipped"}});
  duration_ = &BuildHistogram()
                   .Name("dvrouter_sql_batch_duration_seconds")
                   .Help("Time to write one batch in one transaction, connection time excluded")
                   .Register(*registry)
                   .Add({{"adapter", adapter}}, prometheus::Histogram::BucketBoundaries{
                                                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
  auto& pool = BuildGauge()
                   .Name("dvrouter_sql_connections")
                   .Help("SQL adapter connections by state (idle, busy, down)")
                   .Register(*registry);
  idle_ = &pool.Add({{"adapter", adapter}, {"state", "idle"}});
  busy_ = &pool.Add({{"adapter", adapter}, {"state", "busy"}});
  down_ = &pool.Add({{"adapter", adapter}, {"state", "down"}});
  down_->Set(static_cast<double>(connections));
  errors_ = &BuildCounter()
                 .Name("dvrouter_sql_errors_total")
                 .Help(
                     "Failed SQL batches or rows by error class (retryable: connection, "
                     "serialization, deadlock, shutdown, timeout, resources, setup)")
                 .Register(*registry);
  // Every class exported from the start, at 0, so rate() and alerts see the series.
  for (int c = 0; c <= static_cast<int>(SqlErrorClass::kOther); ++c) {
    errors_->Add({{"adapter", adapter},
                  {"class", std::string(SqlErrorClassName(static_cast<SqlErrorClass>(c)))}});
  }
}

void SqlMetrics::Rows(uint64_t written, uint64_t stale, uint64_t skipped) {
  if (written_ == nullptr) return;
  written_->Increment(static_cast<double>(written));
  stale_->Increment(static_cast<double>(stale));
  skipped_->Increment(static_cast<double>(skipped));
}

void SqlMetrics::BatchSeconds(double seconds) {
  if (duration_ != nullptr) duration_->Observe(seconds);
}

void SqlMetrics::Error(SqlErrorClass c) {
  if (errors_ == nullptr) return;
  errors_->Add({{"adapter", adapter_}, {"class", std::string(SqlErrorClassName(c))}}).Increment();
}

void SqlMetrics::Pool(int64_t idle, int64_t busy, int64_t down) {
  if (idle_ == nullptr) return;
  idle_->Set(static_cast<double>(idle));
  busy_->Set(static_cast<double>(busy));
  down_->Set(static_cast<double>(down));
}

}  // namespace dvrouter
