#include "adapters/sql/postgres_adapter.h"

#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>

#include "router/common/clock.h"

namespace dvrouter {

namespace {

// PostgreSQL allows 65535 parameters per statement.
constexpr size_t kMaxRowsPerStatement = 4096;

std::string Quote(const std::string& identifier) { return "\"" + identifier + "\""; }

std::string PgType(const std::string& type) { return type == "double" ? "double precision" : type; }

// The typed column's value out of jsonb expression `j`.
std::string ColumnExpr(const SqlColumn& c, const std::string& j) {
  const std::string a = "'" + c.attribute + "'";
  if (c.type == "jsonb") return "(" + j + "->" + a + ")";
  if (c.type == "uuid") {
    return "(CASE WHEN jsonb_typeof(" + j + "->" + a + ") = 'object' THEN " + j + "->" + a +
           "->>'id' ELSE " + j + "->>" + a + " END)::uuid";
  }
  if (c.type == "date") return "((" + j + "->>" + a + ")::timestamptz AT TIME ZONE 'UTC')::date";
  return "(" + j + "->>" + a + ")::" + PgType(c.type);
}

std::string Values(size_t rows, size_t per_row) {
  std::string out;
  size_t n = 1;
  for (size_t r = 0; r < rows; ++r) {
    out += r == 0 ? "(" : ",(";
    for (size_t k = 0; k < per_row; ++k) {
      if (k != 0) out += ',';
      out += '$' + std::to_string(n++);
    }
    out += ')';
  }
  return out;
}

std::string ResultError(const PGresult* res, const PGconn* conn, SqlErrorClass* cls) {
  const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
  *cls = ClassifySqlState(state != nullptr ? state : "");
  const char* msg = res != nullptr ? PQresultErrorMessage(res) : "";
  std::string text = msg != nullptr && *msg != '\0' ? msg : PQerrorMessage(conn);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.size() > 1000) text.resize(1000);
  return std::string(state != nullptr ? state : "connection") + ": " + text;
}

struct Statement {
  std::string sql;
  std::vector<std::string> params;
};

}  // namespace

// A pool connection; owned by its thread.
struct PostgresAdapter::Conn {
  PGconn* pg = nullptr;
  int64_t retry_at_ms = 0;   // no reconnect before this
  int64_t backoff_ms = 250;  // doubles per failed connect up to 10 s
  std::string last_error;
  ~Conn() { Close(); }
  void Close() {
    if (pg != nullptr) PQfinish(pg);
    pg = nullptr;
  }
};

PostgresAdapter::PostgresAdapter(AdapterConfig config, prometheus::Registry* registry,
                                 Strategy strategy)
    : config_(std::move(config)),
      strategy_(strategy),
      metrics_(registry, config_.name, sql_.pool_size),
      queue_([](Job& job) { FailSqlJob(&job, "postgres adapter stopped"); }) {
  down_ = static_cast<int64_t>(sql_.pool_size);
}

PostgresAdapter::~PostgresAdapter() { Stop(); }

std::string PostgresAdapter::CreateTableSql(const std::string& table, const SqlTable* mapping) {
  std::string sql = "CREATE TABLE IF NOT EXISTS " + Quote(table) +
                    " (id uuid PRIMARY KEY, attributes jsonb NOT NULL, version bigint NOT NULL, "
                    "deleted boolean NOT NULL DEFAULT false, updated_at timestamptz NOT NULL";
  if (mapping != nullptr) {
    for (const SqlColumn& c : mapping->columns)
      sql += ", " + Quote(c.column) + " " + PgType(c.type);
  }
  return sql + ")";
}

std::string PostgresAdapter::UpsertSql(const std::string& table, const SqlTable* mapping,
                                       size_t rows, bool hard_delete) {
  std::string cols = "id, attributes, version, deleted, updated_at";
  std::string exprs = "v.id::uuid, v.a::jsonb, v.ver::bigint, false, v.ts::timestamptz";
  std::string sets =
      "attributes = CASE WHEN t.deleted THEN EXCLUDED.attributes ELSE t.attributes || "
      "EXCLUDED.attributes END, version = EXCLUDED.version, deleted = false, updated_at = "
      "EXCLUDED.updated_at";
  if (mapping != nullptr) {
    for (const SqlColumn& c : mapping->columns) {
      const std::string col = Quote(c.column);
      cols += ", " + col;
      exprs += ", " + ColumnExpr(c, "v.a::jsonb");
      // A column the event does not carry keeps its value (a partial update).
      sets += ", " + col + " = CASE WHEN t.deleted OR EXCLUDED.attributes ? '" + c.attribute +
              "' THEN EXCLUDED." + col + " ELSE t." + col + " END";
    }
  }
  std::string sql = "INSERT INTO " + Quote(table) + " AS t (" + cols + ") SELECT " + exprs +
                    " FROM (VALUES " + Values(rows, 4) + ") AS v(id, a, ver, ts)";
  if (hard_delete) {
    sql += " WHERE NOT EXISTS (SELECT 1 FROM dvrouter_tombstones d WHERE d.table_name = '" + table +
           "' AND d.id = v.id::uuid AND d.version >= v.ver::bigint)";
  }
  return sql + " ON CONFLICT (id) DO UPDATE SET " + sets + " WHERE t.version < EXCLUDED.version";
}

std::string PostgresAdapter::DeleteSql(const std::string& table, size_t rows, bool hard_delete) {
  if (!hard_delete) {
    return "INSERT INTO " + Quote(table) +
           " AS t (id, attributes, version, deleted, updated_at) SELECT v.id::uuid, '{}'::jsonb, "
           "v.ver::bigint, true, v.ts::timestamptz FROM (VALUES " +
           Values(rows, 3) +
           ") AS v(id, ver, ts) ON CONFLICT (id) DO UPDATE SET deleted = true, version = "
           "EXCLUDED.version, updated_at = EXCLUDED.updated_at WHERE t.version < "
           "EXCLUDED.version";
  }
  return "WITH v(id, ver, ts) AS (VALUES " + Values(rows, 3) +
         "), tomb AS (INSERT INTO dvrouter_tombstones AS d (table_name, id, version) SELECT '" +
         table +
         "', v.id::uuid, v.ver::bigint FROM v ON CONFLICT (table_name, id) DO UPDATE SET "
         "version = EXCLUDED.version WHERE d.version < EXCLUDED.version) DELETE FROM " +
         Quote(table) + " t USING v WHERE t.id = v.id::uuid AND t.version < v.ver::bigint";
}

Status PostgresAdapter::Start(uint64_t) {
  queue_.Start(sql_.pool_size, "dv-pg", [this](Conn& conn, Job& job) { RunCounted(conn, job); });
  return Status::Ok();
}

void PostgresAdapter::Deliver(std::span<const Delivery> batch, DeliveryDone* done) {
  auto job = std::make_unique<Job>();
  BuildSqlJob(batch, sql_, &table_limit_, &metrics_, done, job.get());
  if (job->rows.empty()) {
    done->OnDelivered(job->results);
    return;
  }
  queue_.Push(std::move(job));
}

void PostgresAdapter::Stop() { queue_.Stop(); }

void PostgresAdapter::UpdatePool() {
  // pool_mu_ held.
  // A connection that is down while its thread fails a batch counts as down, not busy.
  const auto total = static_cast<int64_t>(sql_.pool_size);
  const int64_t busy = std::min(busy_, total - down_);
  metrics_.Pool(std::max<int64_t>(0, total - busy - down_), busy, down_);
}

void PostgresAdapter::RunCounted(Conn& conn, Job& job) {
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    ++busy_;
    UpdatePool();
  }
  const bool was_up = conn.pg != nullptr;
  Run(conn, job);
  {
    std::lock_guard<std::mutex> lock(pool_mu_);
    --busy_;
    const bool is_up = conn.pg != nullptr;
    if (was_up != is_up) down_ += is_up ? -1 : 1;
    UpdatePool();
  }
}

namespace {

// Opens a connection with the configured options; nullptr and the error on failure.
PGconn* Connect(const SqlConfig& c, std::string* error) {
  const std::string port = std::to_string(c.port);
  const std::string timeout = std::to_string((c.connect_timeout_ms + 999) / 1000);
  const std::string options = "-c statement_timeout=" + std::to_string(c.statement_timeout_ms);
  // A peer that vanishes without a reset (a cut network) must not hold a pool thread for the
  // kernel's two hours: TCP keepalives and a user timeout a little above statement_timeout.
  const std::string user_timeout = std::to_string(c.statement_timeout_ms + 15'000);
  std::vector<const char*> keys = {"host",
                                   "port",
                                   "dbname",
                                   "user",
                                   "sslmode",
                                   "connect_timeout",
                                   "application_name",
                                   "options",
                                   "target_session_attrs",
                                   "keepalives",
                                   "keepalives_idle",
                                   "keepalives_interval",
                                   "keepalives_count",
                                   "tcp_user_timeout"};
  std::vector<const char*> values = {c.host.c_str(),
                                     port.c_str(),
                                     c.dbname.c_str(),
                                     c.user.c_str(),
                                     c.sslmode.c_str(),
                                     timeout.c_str(),
                                     c.application_name.c_str(),
                                     options.c_str(),
                                     "read-write",
                                     "1",
                                     "30",
                                     "10",
                                     "3",
                                     user_timeout.c_str()};
  if (!c.password.empty()) {
    keys.push_back("password");
    values.push_back(c.password.c_str());
  }
  if (!c.sslrootcert.empty()) {
    keys.push_back("sslrootcert");
    values.push_back(c.sslrootcert.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  PGconn* pg = PQconnectdbParams(keys.data(), values.data(), 0);
  if (pg != nullptr && PQstatus(pg) == CONNECTION_OK) {
    // Notices ("relation already exists, skipping") are not errors: keep them off stderr.
    PQsetNoticeProcessor(
        pg, [](void*, const char*) {}, nullptr);
    return pg;
  }
  *error = pg != nullptr ? PQerrorMessage(pg) : "out of memory";
  while (!error->empty() && (error->back() == '\n' || error->back() == ' ')) error->pop_back();
  if (pg != nullptr) PQfinish(pg);
  return nullptr;
}

// Sends the statements in one pipeline (one round trip) and reads every result. False on the
// first error, with its class and message; `affected` sums the rows the statements changed.
bool Pipeline(PGconn* pg, const std::vector<Statement>& statements, uint64_t* affected,
              SqlErrorClass* cls, std::string* error) {
  if (PQenterPipelineMode(pg) != 1) {
    *error = ResultError(nullptr, pg, cls);
    return false;
  }
  bool sent = true;
  for (const Statement& s : statements) {
    std::vector<const char*> values;
    values.reserve(s.params.size());
    for (const std::string& p : s.params) values.push_back(p.c_str());
    if (PQsendQueryParams(pg, s.sql.c_str(), static_cast<int>(values.size()), nullptr,
                          values.data(), nullptr, nullptr, 0) != 1) {
      sent = false;
      break;
    }
  }
  if (!sent || PQpipelineSync(pg) != 1) {
    *error = ResultError(nullptr, pg, cls);
    *cls = SqlErrorClass::kConnection;  // a send failed: the connection is unusable
    return false;
  }
  bool ok = true;
  for (size_t i = 0; i < statements.size(); ++i) {
    while (PGresult* res = PQgetResult(pg)) {
      const ExecStatusType st = PQresultStatus(res);
      if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        const char* n = PQcmdTuples(res);
        if (n != nullptr && *n != '\0') *affected += std::strtoull(n, nullptr, 10);
      } else if (st != PGRES_PIPELINE_ABORTED && ok) {
        ok = false;
        *error = ResultError(res, pg, cls);
      }
      PQclear(res);
    }
    if (PQstatus(pg) == CONNECTION_BAD) break;
  }
  if (PQstatus(pg) == CONNECTION_BAD) {
    if (ok) *error = ResultError(nullptr, pg, cls);
    *cls = SqlErrorClass::kConnection;
    return false;
  }
  // The sync point, then leave pipeline mode.
  while (PGresult* res = PQgetResult(pg)) {
    const bool sync = PQresultStatus(res) == PGRES_PIPELINE_SYNC;
    PQclear(res);
    if (sync) break;
  }
  if (PQexitPipelineMode(pg) != 1) {
    if (ok) *error = ResultError(nullptr, pg, cls);
    *cls = SqlErrorClass::kConnection;  // the connection's state is unknown: reopen it
    return false;
  }
  // An error inside BEGIN leaves the transaction block aborted after the sync: end it, or every
  // later batch on this connection would fail.
  if (PQtransactionStatus(pg) != PQTRANS_IDLE) {
    PGresult* res = PQexec(pg, "ROLLBACK");
    const bool rolled_back = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!rolled_back) {
      if (ok) *error = ResultError(nullptr, pg, cls);
      *cls = SqlErrorClass::kConnection;
      return false;
    }
  }
  return ok;
}

}  // namespace

bool PostgresAdapter::EnsureTables(Conn& conn, const std::vector<const SqlRow*>& rows,
                                   SqlErrorClass* cls, std::string* error) {
  if (!sql_.create_tables) return true;
  std::lock_guard<std::mutex> lock(ddl_mu_);
  // Only what is missing: CREATE ... IF NOT EXISTS still needs the CREATE privilege, which a
  // least-privilege role on existing tables does not have.
  auto existing_columns = [&](const std::string& table, bool* exists) {
    std::set<std::string> cols;
    const char* param = table.c_str();
    PGresult* res = PQexecParams(conn.pg,
                                 "SELECT column_name FROM information_schema.columns WHERE "
                                 "table_schema = current_schema() AND table_name = $1",
                                 1, nullptr, &param, nullptr, nullptr, 0);
    *exists = false;
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
      for (int i = 0; i < PQntuples(res); ++i) cols.insert(PQgetvalue(res, i, 0));
      *exists = PQntuples(res) > 0;
    } else {
      *error = ResultError(res, conn.pg, cls);
    }
    PQclear(res);
    return cols;
  };
  std::vector<Statement> ddl;
  std::set<std::string> batch_tables;
  std::vector<std::pair<std::string, const SqlTable*>> needed;
  for (const SqlRow* r : rows) {
    if (created_.count(r->table) == 0 && batch_tables.insert(r->table).second) {
      needed.emplace_back(r->table, r->mapping);
    }
  }
  if (sql_.hard_delete && created_.count("dvrouter_tombstones") == 0 && !needed.empty()) {
    needed.emplace_back("dvrouter_tombstones", nullptr);
    batch_tables.insert("dvrouter_tombstones");
  }
  for (const auto& [table, mapping] : needed) {
    bool exists = false;
    error->clear();
    const std::set<std::string> cols = existing_columns(table, &exists);
    if (!error->empty()) {
      if (PQstatus(conn.pg) == CONNECTION_BAD) *cls = SqlErrorClass::kConnection;
      return false;
    }
    if (!exists) {
      ddl.push_back({table == "dvrouter_tombstones"
                         ? "CREATE TABLE IF NOT EXISTS dvrouter_tombstones (table_name text, id "
                           "uuid, version bigint NOT NULL, PRIMARY KEY (table_name, id))"
                         : CreateTableSql(table, mapping),
                     {}});
    } else if (mapping != nullptr) {
      // A mapping extended after the table was created: add the new columns.
      for (const SqlColumn& c : mapping->columns) {
        if (cols.count(c.column) != 0) continue;
        ddl.push_back({"ALTER TABLE " + Quote(table) + " ADD COLUMN IF NOT EXISTS " +
                           Quote(c.column) + " " + PgType(c.type),
                       {}});
      }
    }
  }
  uint64_t ignored = 0;
  if (!ddl.empty() && !Pipeline(conn.pg, ddl, &ignored, cls, error)) {
    // The events are fine; the table is not there yet (privileges, a concurrent creator).
    if (*cls != SqlErrorClass::kConnection) *cls = SqlErrorClass::kSetup;
    *error = "creating tables: " + *error;
    return false;
  }
  created_.insert(batch_tables.begin(), batch_tables.end());
  return true;
}

bool PostgresAdapter::WriteTransaction(Conn& conn, const std::vector<const SqlRow*>& rows,
                                       uint64_t* written, SqlErrorClass* cls, std::string* error) {
  if (!EnsureTables(conn, rows, cls, error)) return false;
  std::vector<Statement> statements;
  statements.push_back({"BEGIN", {}});
  const bool hard = sql_.hard_delete;
  if (strategy_ == Strategy::kPerEvent) {
    for (const SqlRow* r : rows) {
      if (r->op == SqlOp::kUpsert) {
        statements.push_back({UpsertSql(r->table, r->mapping, 1, hard),
                              {r->id, r->attributes, std::to_string(r->version), r->updated_at}});
      } else {
        statements.push_back(
            {DeleteSql(r->table, 1, hard), {r->id, std::to_string(r->version), r->updated_at}});
      }
    }
  } else {
    // Group by (op, table), preserving the rows' order within each group.
    std::map<std::pair<SqlOp, std::string>, std::vector<const SqlRow*>> groups;
    for (const SqlRow* r : rows) groups[{r->op, r->table}].push_back(r);
    for (const auto& [key, group] : groups) {
      for (size_t at = 0; at < group.size(); at += kMaxRowsPerStatement) {
        const size_t n = std::min(kMaxRowsPerStatement, group.size() - at);
        Statement s;
        s.sql = key.first == SqlOp::kUpsert ? UpsertSql(key.second, group[at]->mapping, n, hard)
                                            : DeleteSql(key.second, n, hard);
        for (size_t k = at; k < at + n; ++k) {
          const SqlRow* r = group[k];
          s.params.push_back(r->id);
          if (r->op == SqlOp::kUpsert) s.params.push_back(r->attributes);
          s.params.push_back(std::to_string(r->version));
          s.params.push_back(r->updated_at);
        }
        statements.push_back(std::move(s));
      }
    }
  }
  statements.push_back({"COMMIT", {}});
  uint64_t affected = 0;
  if (!Pipeline(conn.pg, statements, &affected, cls, error)) return false;
  *written = affected;
  return true;
}

void PostgresAdapter::Run(Conn& conn, Job& job) {
  auto fail_all = [&](DeliveryOutcome outcome, const std::string& error) {
    for (const SqlRow& r : job.rows) {
      job.results[r.index].outcome = outcome;
      job.results[r.index].error = error;
    }
  };
  bool fresh = false;  // connected for this job: a failure is not a stale pooled connection
  if (conn.pg == nullptr) {
    fresh = true;
    const int64_t now = SteadyNowMs();
    if (now < conn.retry_at_ms) {
      fail_all(DeliveryOutcome::kRetryable, "postgres unavailable: " + conn.last_error);
      return;
    }
    std::string error;
    conn.pg = Connect(sql_, &error);
    if (conn.pg == nullptr) {
      conn.last_error = error;
      conn.retry_at_ms = SteadyNowMs() + conn.backoff_ms;
      conn.backoff_ms = std::min<int64_t>(conn.backoff_ms * 2, 10'000);
      metrics_.Error(SqlErrorClass::kConnection);
      fail_all(DeliveryOutcome::kRetryable, "postgres connect: " + error);
      return;
    }
    conn.backoff_ms = 250;
  }

  std::vector<const SqlRow*> rows;
  rows.reserve(job.rows.size());
  for (const SqlRow& r : job.rows) rows.push_back(&r);
  // Several events of one record in a batch (RecordOrdering::kOneBatchInFlight): a multi-row upsert
  // cannot touch a row twice, so they are written in rounds, the k-th event of every record in
  // round k, each round its own transaction, in order on this connection. Once a round leaves an
  // event of a record to be retried, that record's later events are not written (answered
  // retryable, and the engine sends them again without counting an attempt): an event must not
  // land before an earlier one of its record (an update merges into the row; the version guard
  // would then refuse the earlier one for good). Other records' rounds go on.
  std::vector<std::vector<const SqlRow*>> rounds;
  {
    std::map<std::pair<std::string, std::string>, size_t> seen;
    for (const SqlRow* r : rows) {
      const size_t round = seen[{r->table, r->id}]++;
      if (rounds.size() <= round) rounds.resize(round + 1);
      rounds[round].push_back(r);
    }
  }
  const auto start = std::chrono::steady_clock::now();
  // Records with an event left to retry, and that event's version (its seq).
  std::map<std::pair<std::string, std::string>, uint64_t> retried;
  for (const std::vector<const SqlRow*>& full_round : rounds) {
    std::vector<const SqlRow*> round;
    for (const SqlRow* r : full_round) {
      auto it = retried.find({r->table, r->id});
      if (it == retried.end()) {
        round.push_back(r);
        continue;
      }
      job.results[r->index].outcome = DeliveryOutcome::kRetryable;
      job.results[r->index].error = "not written: an earlier event of this record (seq " +
                                    std::to_string(it->second) + ") is retried first";
    }
    if (round.empty()) continue;
    const auto hold_back_after_retries = [&] {
      for (const SqlRow* r : round) {
        if (job.results[r->index].outcome == DeliveryOutcome::kRetryable) {
          retried.emplace(std::make_pair(r->table, r->id), r->version);
        }
      }
    };
    uint64_t written = 0;
    SqlErrorClass cls = SqlErrorClass::kOther;
    std::string error;
    bool ok = WriteTransaction(conn, round, &written, &cls, &error);
    if (!ok && cls == SqlErrorClass::kConnection && !fresh) {
      // A pooled connection the server dropped while it was idle (a restart, a failover):
      // reconnect and send once more at once, rather than failing a batch per pool thread.
      metrics_.Error(cls);
      conn.Close();
      std::string connect_error;
      conn.pg = Connect(sql_, &connect_error);
      fresh = true;
      if (conn.pg != nullptr) {
        ok = WriteTransaction(conn, round, &written, &cls, &error);
      } else {
        error = "postgres connect: " + connect_error;
      }
    }
    if (ok) {
      metrics_.Rows(written, round.size() - std::min<uint64_t>(written, round.size()), 0);
      continue;
    }
    metrics_.Error(cls);
    if (cls == SqlErrorClass::kConnection || PQstatus(conn.pg) == CONNECTION_BAD ||
        error.starts_with("25P02")) {
      conn.Close();
      conn.last_error = error;
      conn.retry_at_ms = SteadyNowMs() + conn.backoff_ms;
    }
    if (SqlErrorRetryable(cls) || conn.pg == nullptr) {
      for (const SqlRow* r : round) {
        job.results[r->index].outcome = DeliveryOutcome::kRetryable;
        job.results[r->index].error = error;
      }
      hold_back_after_retries();
      continue;
    }
    if (round.size() == 1) {
      job.results[round[0]->index].outcome = DeliveryOutcome::kPermanent;
      job.results[round[0]->index].error = error;
      continue;
    }
    // A permanent error somewhere in the batch: find the bad events one by one.
    for (const SqlRow* r : round) {
      uint64_t one_written = 0;
      SqlErrorClass one_cls = SqlErrorClass::kOther;
      std::string one_error;
      if (conn.pg != nullptr && WriteTransaction(conn, {r}, &one_written, &one_cls, &one_error)) {
        metrics_.Rows(one_written, 1 - std::min<uint64_t>(one_written, 1), 0);
        continue;
      }
      if (conn.pg == nullptr) {
        one_cls = SqlErrorClass::kConnection;
        one_error = error;
      }
      if (one_cls == SqlErrorClass::kConnection || PQstatus(conn.pg) == CONNECTION_BAD) {
        conn.Close();
        conn.last_error = one_error;
        conn.retry_at_ms = SteadyNowMs() + conn.backoff_ms;
      }
      metrics_.Error(one_cls);
      job.results[r->index].outcome =
          SqlErrorRetryable(one_cls) ? DeliveryOutcome::kRetryable : DeliveryOutcome::kPermanent;
      job.results[r->index].error = one_error;
    }
    hold_back_after_retries();
  }
  metrics_.BatchSeconds(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

}  // namespace dvrouter
