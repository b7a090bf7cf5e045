#include "storage/sqlite_db.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "storage/str_util.h"

namespace gcl::storage {

absl::Status SqliteStatus(sqlite3* db, int rc, std::string_view context) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) return absl::OkStatus();
  const char* msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  std::string text = internal::Cat(context, ": ", msg, " (sqlite ", rc, ")");
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(text);
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return absl::AlreadyExistsError(text);
      }
      return absl::FailedPreconditionError(text);
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(text);
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
      return absl::PermissionDeniedError(text);
    default:
      return absl::InternalError(text);
  }
}

// ---- Statement ----

Statement::Statement(Db* db, sqlite3_stmt* stmt, std::string sql)
    : db_(db), stmt_(stmt), sql_(std::move(sql)) {}

Statement::Statement(Statement&& other) noexcept
    : db_(other.db_), stmt_(other.stmt_), sql_(std::move(other.sql_)), bind_rc_(other.bind_rc_) {
  other.stmt_ = nullptr;
}

Statement::~Statement() {
  if (stmt_ == nullptr) return;
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  db_->Release(std::move(sql_), stmt_);
}

Statement& Statement::BindNull(int index) {
  int rc = sqlite3_bind_null(stmt_, index);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}
Statement& Statement::Bind(int index, int64_t value) {
  int rc = sqlite3_bind_int64(stmt_, index, value);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}
Statement& Statement::Bind(int index, double value) {
  int rc = sqlite3_bind_double(stmt_, index, value);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}
Statement& Statement::Bind(int index, std::string_view text) {
  int rc = sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}
Statement& Statement::BindBlob(int index, std::string_view bytes) {
  // A zero-length blob must still be a BLOB (not NULL): pass a non-null pointer.
  static const char kEmpty = 0;
  const void* data = bytes.empty() ? static_cast<const void*>(&kEmpty) : bytes.data();
  int rc = sqlite3_bind_blob64(stmt_, index, data, bytes.size(), SQLITE_TRANSIENT);
  if (bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  return *this;
}

absl::StatusOr<bool> Statement::Step() {
  if (bind_rc_ != SQLITE_OK) return SqliteStatus(db_->raw(), bind_rc_, internal::Cat("bind: ", sql_));
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  absl::Status s = SqliteStatus(db_->raw(), rc, sql_);
  sqlite3_reset(stmt_);
  return s;
}

absl::Status Statement::Run() {
  while (true) {
    absl::StatusOr<bool> row = Step();
    if (!row.ok()) return row.status();
    if (!*row) return absl::OkStatus();
  }
}

void Statement::Reset() { sqlite3_reset(stmt_); }

bool Statement::IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
int64_t Statement::ColumnInt64(int col) const { return sqlite3_column_int64(stmt_, col); }
double Statement::ColumnDouble(int col) const { return sqlite3_column_double(stmt_, col); }
std::string Statement::ColumnText(int col) const {
  const unsigned char* p = sqlite3_column_text(stmt_, col);
  if (p == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, col));
}
std::string Statement::ColumnBlob(int col) const {
  const void* p = sqlite3_column_blob(stmt_, col);
  if (p == nullptr) return {};
  return std::string(static_cast<const char*>(p), sqlite3_column_bytes(stmt_, col));
}

// ---- Db ----

absl::StatusOr<std::unique_ptr<Db>> Db::Open(const std::string& path, const DbOptions& options) {
  int flags = SQLITE_OPEN_NOMUTEX;  // the owner serialises access
  flags |= options.read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  if (options.create && !options.read_only) flags |= SQLITE_OPEN_CREATE;
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = SqliteStatus(raw, rc, internal::Cat("open ", path));
    sqlite3_close_v2(raw);
    return s;
  }
  sqlite3_extended_result_codes(raw, 1);
  std::unique_ptr<Db> db(new Db(raw, path));
  sqlite3_busy_timeout(raw, options.busy_timeout_ms);
  if (options.foreign_keys) {
    if (auto s = db->Exec("PRAGMA foreign_keys=ON"); !s.ok()) return s;
  }
  if (options.wal && !options.read_only) {
    absl::StatusOr<std::string> mode = db->QueryText("PRAGMA journal_mode=WAL");
    if (!mode.ok()) return mode.status();
    if (internal::Lower(*mode) != "wal") {
      return absl::FailedPreconditionError(
          internal::Cat("open ", path, ": journal_mode=WAL refused (got '", *mode, "')"));
    }
  }
  if (auto s = db->Exec(options.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
      !s.ok()) {
    return s;
  }
  return db;
}

Db::~Db() {
  for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
  cache_.clear();
  // close_v2 defers the close while any statement is still alive (it must not be).
  sqlite3_close_v2(db_);
}

absl::Status Db::Exec(std::string_view sql) {
  std::string copy(sql);
  char* err = nullptr;
  int rc = sqlite3_exec(db_, copy.c_str(), nullptr, nullptr, &err);
  if (err != nullptr) sqlite3_free(err);
  return SqliteStatus(db_, rc, copy);
}

absl::StatusOr<Statement> Db::Prepare(std::string_view sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end()) {
    sqlite3_stmt* stmt = it->second;
    std::string key = it->first;
    cache_.erase(it);
    return Statement(this, stmt, std::move(key));
  }
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                              &stmt, nullptr);
  if (rc != SQLITE_OK) return SqliteStatus(db_, rc, internal::Cat("prepare: ", sql));
  if (stmt == nullptr) return absl::InvalidArgumentError(internal::Cat("empty statement: ", sql));
  return Statement(this, stmt, std::string(sql));
}

void Db::Release(std::string sql, sqlite3_stmt* stmt) {
  // Keep a bounded cache: dynamic SQL (ListJobs filters) has a few shapes only.
  if (cache_.size() >= 256) {
    sqlite3_finalize(stmt);
    return;
  }
  cache_.emplace(std::move(sql), stmt);
}

absl::StatusOr<int64_t> Db::QueryInt64(std::string_view sql) {
  absl::StatusOr<Statement> st = Prepare(sql);
  if (!st.ok()) return st.status();
  absl::StatusOr<bool> row = st->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(internal::Cat("no row: ", sql));
  return st->ColumnInt64(0);
}

absl::StatusOr<std::string> Db::QueryText(std::string_view sql) {
  absl::StatusOr<Statement> st = Prepare(sql);
  if (!st.ok()) return st.status();
  absl::StatusOr<bool> row = st->Step();
  if (!row.ok()) return row.status();
  if (!*row) return absl::NotFoundError(internal::Cat("no row: ", sql));
  return st->ColumnText(0);
}

absl::Status Db::CheckpointPassive() {
  int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
  if ((rc & 0xff) == SQLITE_BUSY) return absl::OkStatus();
  return SqliteStatus(db_, rc, "wal_checkpoint(PASSIVE)");
}

int64_t Db::LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }
int Db::Changes() const { return sqlite3_changes(db_); }
bool Db::InTransaction() const { return sqlite3_get_autocommit(db_) == 0; }

// ---- Transaction ----

absl::StatusOr<Transaction> Transaction::Begin(Db& db) {
  if (auto s = db.Exec("BEGIN IMMEDIATE"); !s.ok()) return s;
  return Transaction(&db);
}

Transaction::~Transaction() { Rollback(); }

absl::Status Transaction::Commit() {
  if (db_ == nullptr) return absl::FailedPreconditionError("transaction already finished");
  absl::Status s = db_->Exec("COMMIT");
  if (s.ok()) {
    db_ = nullptr;
  }
  return s;  // on failure the destructor rolls back
}

void Transaction::Rollback() {
  if (db_ == nullptr) return;
  if (db_->InTransaction()) db_->Exec("ROLLBACK").IgnoreError();
  db_ = nullptr;
}

}  // namespace gcl::storage
