// A thin RAII wrapper over the SQLite C API: Db (one connection), Statement
// (a prepared statement with Bind/Step/Column) and Transaction (BEGIN
// IMMEDIATE ... COMMIT, rolled back on scope exit unless committed).
//
// Not thread-safe by itself: a Db and its Statements belong to one thread at
// a time (the Registry serialises access with a mutex).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

struct sqlite3;
struct sqlite3_stmt;

namespace gcl::storage {

class Db;

// Maps an SQLite result code to an absl::Status: SQLITE_BUSY/LOCKED ->
// kUnavailable, SQLITE_CONSTRAINT -> kAlreadyExists for UNIQUE/PRIMARY KEY,
// kFailedPrecondition for other constraints, SQLITE_CORRUPT/NOTADB -> kDataLoss,
// everything else kInternal. The message names `context` and sqlite's errmsg.
absl::Status SqliteStatus(sqlite3* db, int rc, std::string_view context);

// A prepared statement. Parameters are 1-based, columns 0-based (as in
// SQLite). Obtained from Db::Prepare; returned to the Db's cache on
// destruction (reset and with bindings cleared). REQUIRES: the Db outlives it.
class Statement {
 public:
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  ~Statement();

  Statement& BindNull(int index);
  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, int32_t value) { return Bind(index, static_cast<int64_t>(value)); }
  Statement& Bind(int index, double value);
  Statement& Bind(int index, std::string_view text);  // TEXT (copied)
  Statement& Bind(int index, const char* text) { return Bind(index, std::string_view(text)); }
  Statement& Bind(int index, const std::string& text) { return Bind(index, std::string_view(text)); }
  Statement& BindBlob(int index, std::string_view bytes);  // BLOB (copied)

  // Advances: true when a row is available, false when done. A bind error
  // recorded above is reported here.
  absl::StatusOr<bool> Step();
  // Steps to completion, expecting no rows (INSERT/UPDATE/DELETE).
  absl::Status Run();
  // Resets so that the statement can run again; keeps the bindings.
  void Reset();

  bool IsNull(int col) const;
  int64_t ColumnInt64(int col) const;
  double ColumnDouble(int col) const;
  std::string ColumnText(int col) const;  // "" for NULL
  std::string ColumnBlob(int col) const;  // "" for NULL

 private:
  friend class Db;
  Statement(Db* db, sqlite3_stmt* stmt, std::string sql);
  Db* db_;
  sqlite3_stmt* stmt_;
  std::string sql_;
  int bind_rc_ = 0;  // first failing sqlite3_bind_* result
};

struct DbOptions {
  bool read_only = false;
  bool create = true;
  int busy_timeout_ms = 5000;
  // journal_mode=WAL + synchronous=FULL (see ecosystem-notes §4: WAL+NORMAL
  // can lose acknowledged commits on power loss).
  bool wal = true;
  bool synchronous_full = true;
  bool foreign_keys = true;
};

// One SQLite connection with the per-connection pragmas applied.
class Db {
 public:
  // Opens (and creates) `path`; applies busy_timeout, foreign_keys,
  // journal_mode=WAL (checked: kFailedPrecondition when the file system
  // refuses WAL) and synchronous.
  static absl::StatusOr<std::unique_ptr<Db>> Open(const std::string& path, const DbOptions& options = {});
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  // Runs one or more statements without parameters (schema DDL, pragmas with
  // compiled-in constants). Never pass data here: use Prepare + Bind.
  absl::Status Exec(std::string_view sql);
  // Prepares (or reuses a cached) statement for `sql`.
  absl::StatusOr<Statement> Prepare(std::string_view sql);
  // Runs `sql` (a query returning one row, one integer column).
  absl::StatusOr<int64_t> QueryInt64(std::string_view sql);
  absl::StatusOr<std::string> QueryText(std::string_view sql);

  // PRAGMA wal_checkpoint(PASSIVE) through the C API: copies what it can of
  // the WAL into the database file without waiting for readers or writers.
  // Another checkpoint in progress is not an error.
  absl::Status CheckpointPassive();

  int64_t LastInsertRowId() const;
  int Changes() const;  // rows changed by the last statement
  bool InTransaction() const;
  sqlite3* raw() const { return db_; }
  const std::string& path() const { return path_; }

 private:
  friend class Statement;
  Db(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  void Release(std::string sql, sqlite3_stmt* stmt);
  sqlite3* db_;
  std::string path_;
  std::multimap<std::string, sqlite3_stmt*, std::less<>> cache_;  // idle statements
};

// BEGIN IMMEDIATE on creation (takes the write lock at once, waiting up to
// busy_timeout: a deferred BEGIN that reads then writes fails with
// SQLITE_BUSY immediately in WAL mode). Rolls back on destruction unless
// Commit() succeeded.
class Transaction {
 public:
  static absl::StatusOr<Transaction> Begin(Db& db);
  Transaction(Transaction&& other) noexcept : db_(other.db_) { other.db_ = nullptr; }
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();
  absl::Status Commit();
  void Rollback();

 private:
  explicit Transaction(Db* db) : db_(db) {}
  Db* db_;  // null once committed or rolled back
};

}  // namespace gcl::storage
