#include "adapters/clickhouse/clickhouse_adapter.h"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#include "router/common/encoding.h"
#include "router/common/json.h"
#include "router/decode/attributes.h"

namespace dvrouter {

namespace {

// Inserts one batch may take while narrowing down bad rows (its slices' own inserts, at most
// max_insert_bytes each, do not count).
constexpr size_t kMaxNarrowingInserts = 64;

// The most a job's row buffer reserves ahead (Deliver): a batch of the type's default 10 000
// rows of a few KB (the converted Target and the event's columns) fits.
constexpr size_t kMaxJobReserve = 64u << 20;

// Exception codes that name a bad insert: retrying the same rows cannot succeed.
constexpr int kSchemaCodes[] = {16, 47, 50, 60, 62, 73, 81, 117};
constexpr int kDataCodes[] = {6, 26, 27, 38, 41, 53, 69, 70, 72, 131, 321};
// UNKNOWN_TABLE: with create_table, the table is created again rather than dead-lettered.
constexpr int kUnknownTable = 60;
// Authentication and authorization: a configuration to fix, retried meanwhile.
constexpr int kAuthCodes[] = {192, 193, 194, 497, 516};

template <size_t N>
bool In(const int (&codes)[N], int code) {
  return std::find(std::begin(codes), std::end(codes), code) != std::end(codes);
}

// "2017-09-26T00:04:07.123Z" -> "2017-09-26 00:04:07" (DateTime's text form, seconds),
// appended to *out.
void AppendDateTimeText(std::string* out, int64_t ms) {
  const size_t at = out->size();
  AppendIsoUtc(out, ms);
  (*out)[at + 10] = ' ';
  out->resize(at + 19);
}

// The flattened value of one attribute for a column of `type`, as JSON; "null" if absent.
std::string Flatten(simdjson::dom::object& attrs, const ClickHouseColumn& col) {
  simdjson::dom::element v;
  if (attrs[col.attribute].get(v) != simdjson::SUCCESS || v.is_null()) return "null";
  if (v.is_object()) {
    // An EntityReference: its id.
    std::string_view id;
    if (v["id"].get(id) == simdjson::SUCCESS) {
      std::string out;
      AppendJsonString(&out, id);
      return out;
    }
    std::string out;
    AppendJsonString(&out, simdjson::minify(v));
    return out;
  }
  if (v.is_bool()) {
    const bool b = v.get_bool().value_unsafe();
    if (col.type == "String") return b ? "\"true\"" : "\"false\"";
    return b ? "1" : "0";
  }
  if (v.is_string()) {
    std::string_view s = v.get_string().value_unsafe();
    std::string out;
    if (col.type == "DateTime" && s.size() >= 19 && s[10] == 'T') {
      std::string text(s.substr(0, 19));
      text[10] = ' ';
      AppendJsonString(&out, text);
    } else {
      AppendJsonString(&out, s);
    }
    return out;
  }
  // A number (or an array): its JSON text; a String column gets it quoted.
  std::string raw = simdjson::minify(v);
  if (col.type != "String") return raw;
  std::string out;
  AppendJsonString(&out, raw);
  return out;
}

}  // namespace

ClickHouseAdapter::ClickHouseAdapter(AdapterConfig config, prometheus::Registry* registry)
    : config_(std::move(config)),
      http_([&] {
        HttpClientOptions o;
        o.connect_timeout_ms = clickhouse_.connect_timeout_ms;
        o.request_timeout_ms = clickhouse_.request_timeout_ms;
        o.ca_file = clickhouse_.ca_file;
        o.max_idle_per_host = clickhouse_.connections;
        return o;
      }()),
      base_url_(clickhouse_.url + "/?database=" + UrlEncode(clickhouse_.database)),
      queue_(&ClickHouseAdapter::FailJob) {
  if (registry == nullptr) return;
  using prometheus::BuildCounter;
  using prometheus::BuildHistogram;
  const prometheus::Labels labels{{"adapter", config_.name}};
  rows_ = &BuildCounter()
               .Name("dvrouter_clickhouse_rows_total")
               .Help("Rows ClickHouse accepted")
               .Register(*registry)
               .Add(labels);
  bytes_ = &BuildCounter()
                .Name("dvrouter_clickhouse_bytes_total")
                .Help("Insert bytes sent to ClickHouse (the rows, before gzip)")
                .Register(*registry)
                .Add(labels);
  duration_ = &BuildHistogram()
                   .Name("dvrouter_clickhouse_insert_duration_seconds")
                   .Help("Time of one INSERT, request to answer")
                   .Register(*registry)
                   .Add(labels, prometheus::Histogram::BucketBoundaries{0.001, 0.0025, 0.005, 0.01,
                                                                        0.025, 0.05, 0.1, 0.25, 0.5,
                                                                        1, 2.5, 5, 10, 30});
  batch_rows_ = &BuildHistogram()
                     .Name("dvrouter_clickhouse_insert_rows")
                     .Help("Rows per INSERT")
                     .Register(*registry)
                     .Add(labels, prometheus::Histogram::BucketBoundaries{
                                      1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000, 100000});
  errors_ = &BuildCounter()
                 .Name("dvrouter_clickhouse_errors_total")
                 .Help(
                     "Failed inserts by class: connection, timeout, server, auth (retried); "
                     "schema, data, client (permanent)")
                 .Register(*registry);
  for (const char* cls : {"connection", "timeout", "server", "auth", "schema", "data", "client"}) {
    errors_->Add({{"adapter", config_.name}, {"class", cls}});  // exported at 0 from the start
  }
}

ClickHouseAdapter::~ClickHouseAdapter() { Stop(); }

void ClickHouseAdapter::CountError(const std::string& cls) {
  if (errors_ != nullptr) errors_->Add({{"adapter", config_.name}, {"class", cls}}).Increment();
}

std::string ClickHouseAdapter::CreateTableSql(const ClickHouseConfig& c) {
  std::string sql = "CREATE TABLE IF NOT EXISTS " + c.database + "." + c.table +
                    " (event_id String, seq UInt64, table_name String, row_id String, message "
                    "String, stage Int32, operation_time DateTime('UTC'), operation_time_ms "
                    "UInt64, received_time DateTime('UTC'), received_time_ms UInt64, attributes "
                    "String";
  for (const ClickHouseColumn& col : c.columns) {
    sql += ", " + col.column + " Nullable(" +
           (col.type == "DateTime" ? std::string("DateTime('UTC')") : col.type) + ")";
  }
  return sql +
         ") ENGINE = ReplacingMergeTree(seq) PARTITION BY toYYYYMM(operation_time) ORDER BY "
         "(table_name, event_id)";
}

Status ClickHouseAdapter::EncodeRow(const Delivery& d, const ClickHouseConfig& config,
                                    std::string* out) {
  const EventHeader& h = *d.header;
  ChangeSet scratch;
  const ChangeSet* cs = nullptr;
  Status st = ExtractChanges(d.body, d.changes, &scratch, &cs);
  if (!st.ok()) return InvalidArgument("body: " + std::string(st.message()));
  const ChangeSet& changes = *cs;
  // Both branches lvalues: the converted attributes are not copied.
  static const std::string kNoAttributes = "{}";
  const std::string& attributes =
      changes.has_target && !changes.is_reference ? changes.attributes : kNoAttributes;
  const int64_t op_ms = h.operation_created_on_ms != 0 ? h.operation_created_on_ms : d.received_ms;
  const size_t start = out->size();
  // Appended piece by piece, room reserved once: no temporary string per field.
  out->reserve(start + attributes.size() + attributes.size() / 8 + 320);
  out->append("{\"event_id\":\"");
  d.key.AppendHex(out);
  out->append("\",\"seq\":");
  AppendDecimal(out, d.seq);
  out->append(",\"table_name\":");
  AppendJsonString(out, h.primary_entity_name);
  out->append(",\"row_id\":");
  AppendJsonString(out, h.primary_entity_id);
  out->append(",\"message\":");
  AppendJsonString(out, h.message_name);
  out->append(",\"stage\":");
  AppendDecimal(out, h.stage);
  out->append(",\"operation_time\":\"");
  AppendDateTimeText(out, op_ms);
  out->append("\",\"operation_time_ms\":");
  AppendDecimal(out, op_ms);
  out->append(",\"received_time\":\"");
  AppendDateTimeText(out, d.received_ms);
  out->append("\",\"received_time_ms\":");
  AppendDecimal(out, d.received_ms);
  out->append(",\"attributes\":");
  AppendJsonString(out, attributes);
  if (!config.columns.empty()) {
    thread_local simdjson::dom::parser parser;
    simdjson::dom::object attrs;
    if (auto e = parser.parse(attributes).get_object().get(attrs)) {
      out->resize(start);
      return Internal(std::string("converted attributes: ") + simdjson::error_message(e));
    }
    for (const ClickHouseColumn& col : config.columns) {
      out->append(",\"");
      out->append(col.column);
      out->append("\":");
      out->append(Flatten(attrs, col));
    }
  }
  out->append("}\n");
  return Status::Ok();
}

int ClickHouseAdapter::ExceptionCode(const ClientResponse& r) {
  std::string header = r.Header("x-clickhouse-exception-code");
  if (!header.empty()) return std::atoi(header.c_str());
  const size_t at = r.body.find("Code: ");
  if (at == std::string::npos || at > 64) return -1;
  return std::atoi(r.body.c_str() + at + 6);
}

bool ClickHouseAdapter::RetryableAnswer(int status, int code) {
  if (In(kSchemaCodes, code) || In(kDataCodes, code)) return false;
  if (In(kAuthCodes, code)) return true;
  return status >= 500 || status == 408 || status == 429;
}

Status ClickHouseAdapter::Start(uint64_t) {
  queue_.Start(clickhouse_.connections, "dv-clickhouse",
               [this](std::monostate&, Job& job) { RunGuarded(job); });
  return Status::Ok();
}

void ClickHouseAdapter::Deliver(std::span<const Delivery> batch, DeliveryDone* done) {
  auto job = std::make_unique<Job>();
  job->done = done;
  job->results.resize(batch.size());
  job->ends.reserve(batch.size());
  job->index.reserve(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    PrefetchAhead(batch, i);
    if (Status st = EncodeRow(batch[i], clickhouse_, &job->rows); !st.ok()) {
      job->results[i].outcome = DeliveryOutcome::kPermanent;
      job->results[i].error = std::string(st.message());
      CountError("data");
      continue;
    }
    if (job->ends.empty()) {
      // Room for the rest of the batch at the first row's size, up to kMaxJobReserve: one
      // allocation instead of a doubling series of copies for the usual batch.
      job->rows.reserve(std::min(kMaxJobReserve, job->rows.size() / 4 * 5 * (batch.size() - i)));
    }
    job->ends.push_back(job->rows.size());
    job->index.push_back(i);
  }
  if (job->ends.empty()) {
    done->OnDelivered(job->results);
    return;
  }
  queue_.Push(std::move(job));
}

void ClickHouseAdapter::Stop() { queue_.Stop(); }

void ClickHouseAdapter::FailJob(Job& job) {
  for (size_t i : job.index) {
    job.results[i].outcome = DeliveryOutcome::kRetryable;
    job.results[i].error = "clickhouse adapter stopped";
  }
  job.done->OnDelivered(job.results);
}

void ClickHouseAdapter::RunGuarded(Job& job) {
  try {
    Run(job);
  } catch (const std::exception& e) {  // never out of the thread: the batch is tried again
    for (size_t i : job.index) {
      if (job.results[i].outcome != DeliveryOutcome::kDelivered) continue;
      job.results[i].outcome = DeliveryOutcome::kRetryable;
      job.results[i].error = std::string("clickhouse adapter: ") + e.what();
    }
  }
}

ClickHouseAdapter::Attempt ClickHouseAdapter::Post(const std::string& query,
                                                   std::string_view body) {
  ClientRequest req;
  req.method = "POST";
  req.url = base_url_ + "&query=" + UrlEncode(query);
  req.gzip = clickhouse_.gzip && !body.empty();
  req.body_view = body;
  if (!clickhouse_.password.empty() || clickhouse_.user != "default") {
    req.headers.emplace_back(
        "Authorization", "Basic " + Base64Encode(clickhouse_.user + ":" + clickhouse_.password));
  }
  Result<ClientResponse> res = http_.Send(req);
  Attempt a;
  if (!res.ok()) {
    a.retryable = true;
    a.error = "clickhouse: " + std::string(res.status().message());
    CountError(res.status().code() == StatusCode::kDeadlineExceeded ? "timeout" : "connection");
    return a;
  }
  if (res->status == 200) {
    a.ok = true;
    return a;
  }
  const int code = ExceptionCode(*res);
  a.code = code;
  a.retryable = RetryableAnswer(res->status, code);
  a.row_specific = In(kDataCodes, code);
  std::string text = res->body.substr(0, 1000);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  a.error = "clickhouse HTTP " + std::to_string(res->status) + ": " + text;
  CountError(In(kSchemaCodes, code) ? "schema"
             : In(kDataCodes, code) ? "data"
             : In(kAuthCodes, code) ? "auth"
             : a.retryable          ? "server"
                                    : "client");
  return a;
}

ClickHouseAdapter::Attempt ClickHouseAdapter::EnsureTable() {
  std::lock_guard<std::mutex> lock(table_mu_);
  if (table_ready_ || !clickhouse_.create_table) return Attempt{true, false, false, ""};
  Attempt a = Post(CreateTableSql(clickhouse_), "");
  if (a.ok) table_ready_ = true;
  return a;
}

ClickHouseAdapter::Attempt ClickHouseAdapter::Insert(const Job& job, size_t from, size_t to) {
  const size_t begin = job.RowBegin(from);
  const size_t bytes = job.ends[to - 1] - begin;
  const auto start = std::chrono::steady_clock::now();
  Attempt a =
      Post("INSERT INTO " + clickhouse_.database + "." + clickhouse_.table + " FORMAT JSONEachRow",
           std::string_view(job.rows).substr(begin, bytes));
  if (a.ok) {
    if (rows_ != nullptr) {
      rows_->Increment(static_cast<double>(to - from));
      bytes_->Increment(static_cast<double>(bytes));
      duration_->Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      batch_rows_->Observe(static_cast<double>(to - from));
    }
  }
  return a;
}

void ClickHouseAdapter::InsertRange(Job& job, size_t from, size_t to) {
  Attempt a = Insert(job, from, to);
  if (a.ok) return;
  if (a.code == kUnknownTable && clickhouse_.create_table) {
    // The table the adapter created is gone: a server that restarted answers so for a moment
    // before its tables are loaded, or it was dropped. The next attempt creates it again
    // (IF NOT EXISTS): the rows are retried, not dead-lettered.
    std::lock_guard<std::mutex> lock(table_mu_);
    table_ready_ = false;
    a.retryable = true;
  }
  const bool stopping = queue_.stopping();
  // Splitting is bounded: a type error that hits every row would otherwise cost two inserts
  // per row. Past the budget, what is left fails as a whole (permanent, to the DLQ).
  if (!a.retryable && a.row_specific && to - from > 1 && !stopping &&
      job.narrowing_inserts + 2 <= kMaxNarrowingInserts) {
    // Find the bad rows: halves until each failing insert is one row (schema errors hit every
    // row alike and are not split).
    job.narrowing_inserts += 2;
    const size_t mid = from + (to - from) / 2;
    InsertRange(job, from, mid);
    InsertRange(job, mid, to);
    return;
  }
  for (size_t k = from; k < to; ++k) {
    DeliveryResult& r = job.results[job.index[k]];
    r.outcome = a.retryable ? DeliveryOutcome::kRetryable : DeliveryOutcome::kPermanent;
    r.error = a.error;
  }
}

void ClickHouseAdapter::Run(Job& job) {
  Attempt table = EnsureTable();
  if (!table.ok) {
    for (size_t i : job.index) {
      job.results[i].outcome =
          table.retryable ? DeliveryOutcome::kRetryable : DeliveryOutcome::kPermanent;
      job.results[i].error = "creating the table: " + table.error;
    }
    return;
  }
  // Inserts of at most max_insert_bytes (a single larger row goes alone).
  size_t from = 0;
  while (from < job.ends.size()) {
    size_t to = from + 1;  // a single larger row goes alone
    while (to < job.ends.size() &&
           job.ends[to] - job.RowBegin(from) <= clickhouse_.max_insert_bytes) {
      ++to;
    }
    InsertRange(job, from, to);
    from = to;
  }
}

}  // namespace dvrouter
