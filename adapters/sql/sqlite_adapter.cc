#include "adapters/sql/sqlite_adapter.h"

#include <simdjson.h>
#include <sqlite3.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <unordered_map>

#include "router/common/fs.h"
#include "router/common/json.h"

namespace dvrouter {

namespace {

std::string Quote(const std::string& identifier) { return "\"" + identifier + "\""; }

std::string SqliteType(const std::string& type) {
  if (type == "integer" || type == "bigint" || type == "boolean") return "INTEGER";
  if (type == "numeric") return "NUMERIC";
  if (type == "double") return "REAL";
  return "TEXT";
}

// The typed column's value out of the merged attributes bound as ?2.
std::string ColumnExpr(const SqlColumn& c) {
  const std::string path = "'$." + c.attribute + "'";
  if (c.type == "uuid") {
    return "CASE WHEN json_type(?2, " + path + ") = 'object' THEN json_extract(?2, '$." +
           c.attribute + ".id') ELSE json_extract(?2, " + path + ") END";
  }
  if (c.type == "jsonb") return "json_quote(json_extract(?2, " + path + "))";
  if (c.type == "date") return "date(json_extract(?2, " + path + "))";
  return "json_extract(?2, " + path + ")";
}

}  // namespace

Status MergeJsonObjects(std::string_view base, std::string_view update, std::string* out) {
  std::vector<std::pair<std::string, std::string>> b, u;
  if (Status st = JsonObjectMembers(base, "stored attributes", &b); !st.ok()) return st;
  if (Status st = JsonObjectMembers(update, "event attributes", &u); !st.ok()) return st;
  std::unordered_map<std::string, size_t> updated;  // key -> index in u, not yet written
  for (size_t i = 0; i < u.size(); ++i) updated[u[i].first] = i;
  out->clear();
  out->push_back('{');
  bool first = true;
  auto member = [&](const std::string& key, const std::string& raw) {
    if (!first) out->push_back(',');
    first = false;
    AppendJsonString(out, key);
    out->push_back(':');
    *out += raw;
  };
  for (const auto& [key, raw] : b) {
    auto it = updated.find(key);
    if (it == updated.end()) {
      member(key, raw);
    } else {
      member(key, u[it->second].second);
      updated.erase(it);
    }
  }
  for (size_t i = 0; i < u.size(); ++i) {
    auto it = updated.find(u[i].first);
    if (it != updated.end() && it->second == i) member(u[i].first, u[i].second);
  }
  out->push_back('}');
  return Status::Ok();
}

SqlErrorClass ClassifySqliteCode(int code) {
  switch (code & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return SqlErrorClass::kTimeout;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_PROTOCOL:
    case SQLITE_CORRUPT:  // retried, not dropped: the operator repairs the file
    case SQLITE_NOTADB:
      return SqlErrorClass::kConnection;
    case SQLITE_FULL:
    case SQLITE_NOMEM:
      return SqlErrorClass::kResources;
    case SQLITE_CONSTRAINT:
      return SqlErrorClass::kConstraint;
    case SQLITE_MISMATCH:
    case SQLITE_TOOBIG:
    case SQLITE_RANGE:
      return SqlErrorClass::kData;
    case SQLITE_ERROR:
      return SqlErrorClass::kSyntax;
    default:
      return SqlErrorClass::kOther;
  }
}

SqliteAdapter::SqliteAdapter(AdapterConfig config, prometheus::Registry* registry)
    : config_(std::move(config)),
      metrics_(registry, config_.name, 1),
      queue_([](Job& job) { FailSqlJob(&job, "sqlite adapter stopped"); }) {}

SqliteAdapter::~SqliteAdapter() {
  Stop();
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  statements_.clear();
  if (db_ != nullptr) sqlite3_close(db_);
}

Status SqliteAdapter::Start(uint64_t) {
  std::lock_guard<std::mutex> lock(start_mu_);
  if (queue_.started()) return Status::Ok();
  const std::string& path = sql_.path;
  const size_t slash = path.rfind('/');
  if (slash != std::string::npos && slash != 0) {
    if (Status st = MakeDirectories(path.substr(0, slash)); !st.ok()) return st;
  }
  int rc =
      sqlite3_open_v2(path.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    return Unavailable("sqlite " + path + ": " + msg);
  }
  sqlite3_busy_timeout(db_, static_cast<int>(sql_.busy_timeout_ms));
  std::string error;
  if (Exec("PRAGMA synchronous=FULL", &error) != SQLITE_OK) {
    return Unavailable("sqlite " + path + ": PRAGMA synchronous=FULL: " + error);
  }
  // WAL lets readers work while the router writes; a file system without shared memory
  // support refuses it (the journal mode stays as it was: still durable, readers block).
  sqlite3_stmt* wal = nullptr;
  std::string mode;
  if (sqlite3_prepare_v2(db_, "PRAGMA journal_mode=WAL", -1, &wal, nullptr) == SQLITE_OK &&
      sqlite3_step(wal) == SQLITE_ROW) {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(wal, 0));
    mode = text != nullptr ? text : "";
  }
  sqlite3_finalize(wal);
  if (mode != "wal") {
    std::fprintf(stderr, "dvrouter: adapter %s: sqlite %s is not in WAL mode (journal_mode %s)\n",
                 config_.name.c_str(), path.c_str(), mode.empty() ? "unknown" : mode.c_str());
  }
  metrics_.Pool(1, 0, 0);
  queue_.Start(1, "dv-sqlite", [this](std::monostate&, Job& job) {
    metrics_.Pool(0, 1, 0);
    Run(job);
    metrics_.Pool(1, 0, 0);
  });
  return Status::Ok();
}

void SqliteAdapter::Deliver(std::span<const Delivery> batch, DeliveryDone* done) {
  auto job = std::make_unique<Job>();
  BuildSqlJob(batch, sql_, &table_limit_, &metrics_, done, job.get());
  if (job->rows.empty()) {
    done->OnDelivered(job->results);
    return;
  }
  queue_.Push(std::move(job));
}

void SqliteAdapter::Stop() { queue_.Stop(); }

int SqliteAdapter::Exec(const std::string& sql, std::string* error) {
  char* msg = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &msg);
  if (rc != SQLITE_OK) {
    *error = msg != nullptr ? msg : sqlite3_errstr(rc);
    *error += " (" + sql.substr(0, 80) + ")";
  }
  sqlite3_free(msg);
  return rc;
}

int SqliteAdapter::Prepare(const std::string& sql, sqlite3_stmt** stmt, std::string* error) {
  auto it = statements_.find(sql);
  if (it != statements_.end()) {
    *stmt = it->second;
    return SQLITE_OK;
  }
  const int rc = sqlite3_prepare_v2(db_, sql.c_str(), static_cast<int>(sql.size()), stmt, nullptr);
  if (rc != SQLITE_OK) {
    *error = sqlite3_errmsg(db_);
    return rc;
  }
  statements_.emplace(sql, *stmt);
  return SQLITE_OK;
}

int SqliteAdapter::EnsureTable(const SqlRow& row, std::string* error) {
  if (!sql_.create_tables || tables_.count(row.table) != 0) return SQLITE_OK;
  int rc = Exec("CREATE TABLE IF NOT EXISTS " + Quote(row.table) +
                    " (id TEXT PRIMARY KEY, attributes TEXT NOT NULL, version INTEGER NOT NULL, "
                    "deleted INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL)",
                error);
  if (rc != SQLITE_OK) return rc;
  if (sql_.hard_delete) {
    rc = Exec(
        "CREATE TABLE IF NOT EXISTS dvrouter_tombstones (table_name TEXT, id TEXT, version "
        "INTEGER NOT NULL, PRIMARY KEY (table_name, id))",
        error);
    if (rc != SQLITE_OK) return rc;
  }
  if (row.mapping != nullptr && !row.mapping->columns.empty()) {
    std::set<std::string> existing;
    sqlite3_stmt* info = nullptr;
    rc = sqlite3_prepare_v2(db_, ("PRAGMA table_info(" + Quote(row.table) + ")").c_str(), -1, &info,
                            nullptr);
    if (rc != SQLITE_OK) {
      *error = sqlite3_errmsg(db_);
      return rc;
    }
    while ((rc = sqlite3_step(info)) == SQLITE_ROW) {
      existing.insert(reinterpret_cast<const char*>(sqlite3_column_text(info, 1)));
    }
    sqlite3_finalize(info);
    if (rc != SQLITE_DONE) {
      *error = sqlite3_errmsg(db_);
      return rc;
    }
    for (const SqlColumn& c : row.mapping->columns) {
      if (existing.count(c.column) != 0) continue;
      rc = Exec("ALTER TABLE " + Quote(row.table) + " ADD COLUMN " + Quote(c.column) + " " +
                    SqliteType(c.type),
                error);
      if (rc != SQLITE_OK) return rc;
    }
  }
  tables_.insert(row.table);
  return SQLITE_OK;
}

int SqliteAdapter::Apply(const SqlRow& row, bool* written, std::string* error) {
  *written = false;
  const bool hard = sql_.hard_delete;
  auto fail = [&](int rc) {
    *error = sqlite3_errmsg(db_);
    return rc;
  };
  auto bind_text = [](sqlite3_stmt* s, int i, const std::string& v) {
    sqlite3_bind_text(s, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  };
  // The stored row (and tombstone) for the version guard and the merge.
  sqlite3_stmt* sel = nullptr;
  int rc =
      Prepare("SELECT version, deleted, attributes FROM " + Quote(row.table) + " WHERE id = ?1",
              &sel, error);
  if (rc != SQLITE_OK) return rc;
  bind_text(sel, 1, row.id);
  bool exists = false, deleted = false;
  int64_t version = 0;
  std::string stored;
  rc = sqlite3_step(sel);
  if (rc == SQLITE_ROW) {
    exists = true;
    version = sqlite3_column_int64(sel, 0);
    deleted = sqlite3_column_int(sel, 1) != 0;
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(sel, 2));
    stored.assign(text != nullptr ? text : "{}",
                  text != nullptr ? static_cast<size_t>(sqlite3_column_bytes(sel, 2)) : 2);
    rc = sqlite3_step(sel);
  }
  sqlite3_reset(sel);
  sqlite3_clear_bindings(sel);
  if (rc != SQLITE_DONE) return fail(rc);
  const auto seq = static_cast<int64_t>(row.version);
  if (exists && version >= seq) return SQLITE_OK;  // stale: the row is newer
  if (hard) {
    sqlite3_stmt* tomb = nullptr;
    rc = Prepare("SELECT version FROM dvrouter_tombstones WHERE table_name = ?1 AND id = ?2", &tomb,
                 error);
    if (rc != SQLITE_OK) return rc;
    bind_text(tomb, 1, row.table);
    bind_text(tomb, 2, row.id);
    rc = sqlite3_step(tomb);
    const bool newer_tombstone = rc == SQLITE_ROW && sqlite3_column_int64(tomb, 0) >= seq;
    if (rc == SQLITE_ROW) rc = sqlite3_step(tomb);
    sqlite3_reset(tomb);
    sqlite3_clear_bindings(tomb);
    if (rc != SQLITE_DONE) return fail(rc);
    if (newer_tombstone) return SQLITE_OK;
  }

  sqlite3_stmt* w = nullptr;
  if (row.op == SqlOp::kUpsert) {
    std::string merged;
    if (exists && !deleted) {
      if (Status st = MergeJsonObjects(stored, row.attributes, &merged); !st.ok()) {
        *error = std::string(st.message());
        return SQLITE_MISMATCH;
      }
    } else {
      merged = row.attributes;
    }
    std::string cols = "id, attributes, version, deleted, updated_at";
    std::string vals = "?1, ?2, ?3, 0, ?4";
    std::string sets =
        "attributes = excluded.attributes, version = excluded.version, deleted = 0, "
        "updated_at = excluded.updated_at";
    if (row.mapping != nullptr) {
      for (const SqlColumn& c : row.mapping->columns) {
        cols += ", " + Quote(c.column);
        vals += ", " + ColumnExpr(c);
        sets += ", " + Quote(c.column) + " = excluded." + Quote(c.column);
      }
    }
    rc = Prepare("INSERT INTO " + Quote(row.table) + " (" + cols + ") VALUES (" + vals +
                     ") ON CONFLICT (id) DO UPDATE SET " + sets,
                 &w, error);
    if (rc != SQLITE_OK) return rc;
    bind_text(w, 1, row.id);
    bind_text(w, 2, merged);
    sqlite3_bind_int64(w, 3, seq);
    bind_text(w, 4, row.updated_at);
  } else if (!hard) {
    rc = Prepare("INSERT INTO " + Quote(row.table) +
                     " (id, attributes, version, deleted, updated_at) VALUES (?1, '{}', ?2, 1, "
                     "?3) ON CONFLICT (id) DO UPDATE SET deleted = 1, version = "
                     "excluded.version, updated_at = excluded.updated_at",
                 &w, error);
    if (rc != SQLITE_OK) return rc;
    bind_text(w, 1, row.id);
    sqlite3_bind_int64(w, 2, seq);
    bind_text(w, 3, row.updated_at);
  } else {
    sqlite3_stmt* del = nullptr;
    rc = Prepare("DELETE FROM " + Quote(row.table) + " WHERE id = ?1", &del, error);
    if (rc != SQLITE_OK) return rc;
    bind_text(del, 1, row.id);
    rc = sqlite3_step(del);
    sqlite3_reset(del);
    sqlite3_clear_bindings(del);
    if (rc != SQLITE_DONE) return fail(rc);
    rc = Prepare(
        "INSERT INTO dvrouter_tombstones (table_name, id, version) VALUES (?1, ?2, ?3) ON "
        "CONFLICT (table_name, id) DO UPDATE SET version = excluded.version",
        &w, error);
    if (rc != SQLITE_OK) return rc;
    bind_text(w, 1, row.table);
    bind_text(w, 2, row.id);
    sqlite3_bind_int64(w, 3, seq);
  }
  rc = sqlite3_step(w);
  sqlite3_reset(w);
  sqlite3_clear_bindings(w);
  if (rc != SQLITE_DONE) return fail(rc);
  *written = true;
  return SQLITE_OK;
}

void SqliteAdapter::Run(Job& job) {
  const auto start = std::chrono::steady_clock::now();
  auto fail = [&](const SqlRow& r, int rc, const std::string& error) {
    const SqlErrorClass cls = ClassifySqliteCode(rc);
    metrics_.Error(cls);
    job.results[r.index].outcome =
        SqlErrorRetryable(cls) ? DeliveryOutcome::kRetryable : DeliveryOutcome::kPermanent;
    job.results[r.index].error = "sqlite: " + error;
    return SqlErrorRetryable(cls);
  };
  auto fail_rest = [&](size_t from, int rc, const std::string& error) {
    for (size_t i = from; i < job.rows.size(); ++i) {
      if (job.results[job.rows[i].index].outcome == DeliveryOutcome::kDelivered) {
        fail(job.rows[i], rc, error);
      }
    }
  };
  std::string error;
  std::vector<char> usable(job.rows.size(), 1);
  for (size_t i = 0; i < job.rows.size(); ++i) {
    if (int rc = EnsureTable(job.rows[i], &error); rc != SQLITE_OK) {
      usable[i] = 0;
      if (fail(job.rows[i], rc, error)) {
        fail_rest(0, rc, error);
        return;
      }
    }
  }
  if (int rc = Exec("BEGIN IMMEDIATE", &error); rc != SQLITE_OK) {
    fail_rest(0, rc, error);
    return;
  }
  uint64_t written = 0, stale = 0;
  for (size_t i = 0; i < job.rows.size(); ++i) {
    if (!usable[i]) continue;
    int rc = Exec("SAVEPOINT ev", &error);
    bool row_written = false;
    if (rc == SQLITE_OK) rc = Apply(job.rows[i], &row_written, &error);
    if (rc == SQLITE_OK) rc = Exec("RELEASE ev", &error);
    if (rc == SQLITE_OK) {
      ++(row_written ? written : stale);
      continue;
    }
    std::string ignored;
    if (sqlite3_get_autocommit(db_) == 0) {
      (void)Exec("ROLLBACK TO ev", &ignored);
      (void)Exec("RELEASE ev", &ignored);
    }
    const bool retryable = fail(job.rows[i], rc, error);
    if (retryable || sqlite3_get_autocommit(db_) != 0) {
      // Retryable, or SQLite ended the transaction itself: nothing of the batch is kept. The
      // other events did nothing wrong: they are retried, whatever this one's error was.
      if (sqlite3_get_autocommit(db_) == 0) (void)Exec("ROLLBACK", &ignored);
      for (size_t k = 0; k < job.rows.size(); ++k) {
        DeliveryResult& r = job.results[job.rows[k].index];
        if (k == i || r.outcome != DeliveryOutcome::kDelivered) continue;
        r.outcome = DeliveryOutcome::kRetryable;
        r.error = "sqlite: batch rolled back after another event's error: " + error;
      }
      return;
    }
  }
  if (int rc = Exec("COMMIT", &error); rc != SQLITE_OK) {
    std::string ignored;
    if (sqlite3_get_autocommit(db_) == 0) (void)Exec("ROLLBACK", &ignored);
    fail_rest(0, rc, error);
    return;
  }
  metrics_.Rows(written, stale, 0);
  metrics_.BatchSeconds(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
}

}  // namespace dvrouter
