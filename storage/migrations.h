// Schema versions of the registry. `PRAGMA user_version` holds the version;
// migrations are ordered, compiled in, forward only, and each one runs in
// its own BEGIN IMMEDIATE transaction together with the user_version bump,
// so a crash leaves the file at a whole version (ecosystem-notes §4).
#pragma once

#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "storage/sqlite_db.h"

namespace gcl::storage {

struct Migration {
  int version;                   // the user_version after this step; 1, 2, ...
  std::string_view description;  // one line
  std::string_view sql;          // DDL/DML only, no parameters
};

// All steps in order; Migrations()[i].version == i + 1.
const std::vector<Migration>& Migrations();
// The newest schema version this binary knows.
int HeadVersion();

// PRAGMA user_version of `db` (0 for a new file).
absl::StatusOr<int> SchemaVersion(Db& db);

// Applies every step above the file's version up to `target` (default head).
// REQUIRES: 0 <= target <= HeadVersion(). A file whose version is newer than
// HeadVersion() is refused with kFailedPrecondition naming both versions
// (an older binary must not write a schema it does not understand); a file
// already at or above `target` (but not above head) is left alone.
absl::Status Migrate(Db& db, int target = -1);

}  // namespace gcl::storage
