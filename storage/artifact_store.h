// The artifact store: checkpoint files and per-attempt logs under one root,
//
//   <root>/jobs/<job_id>/attempt-<n>/checkpoints/<name>
//   <root>/jobs/<job_id>/attempt-<n>/logs/train.log
//
// Checkpoints are written atomically: chunks go to a hidden temporary file in
// the same directory; Commit fsyncs it, checks its sha256 against the
// expected digest, renames it into place and fsyncs the directory. A failed
// or abandoned write leaves no file under the final name (and Open() sweeps
// temporaries left by a crash). Paths handed out and accepted are relative
// to the root and never escape it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gcl::storage {

struct ArtifactInfo {
  std::string path;    // relative to the store root
  std::string sha256;  // 64 lowercase hex
  int64_t bytes = 0;
};

class ArtifactStore;

// One in-progress atomic write. Not thread-safe; move-only. Destroying it
// without Commit() aborts (removes the temporary).
class ArtifactWriter {
 public:
  ~ArtifactWriter();
  ArtifactWriter(const ArtifactWriter&) = delete;
  ArtifactWriter& operator=(const ArtifactWriter&) = delete;

  // Appends a chunk (any size, including empty). kFailedPrecondition after
  // Commit/Abort; I/O errors as kInternal (the write is then aborted).
  absl::Status Append(std::string_view chunk);
  // Finishes the write. expected_sha256: 64 hex (case-insensitive), or "" to
  // skip the check. Mismatch: kDataLoss naming both digests, nothing left on
  // disk. An existing file with the same content: OK (idempotent retry of
  // an upload); with other content: kAlreadyExists, the old file untouched.
  absl::StatusOr<ArtifactInfo> Commit(std::string_view expected_sha256 = "");
  // Drops the temporary; idempotent.
  void Abort();

  int64_t bytes_written() const { return bytes_; }
  const std::string& path() const { return rel_path_; }  // final relative path

 private:
  friend class ArtifactStore;
  struct HashState;
  ArtifactWriter(std::filesystem::path final_path, std::filesystem::path tmp_path, std::string rel_path,
                 int fd);
  std::filesystem::path final_path_, tmp_path_;
  std::string rel_path_;
  int fd_;
  int64_t bytes_ = 0;
  std::unique_ptr<HashState> hash_;
  bool done_ = false;
};

class ArtifactStore {
 public:
  // Creates `root` if needed and removes temporaries ("*.partial-*") left
  // under root/jobs by a crashed writer.
  static absl::StatusOr<std::unique_ptr<ArtifactStore>> Open(const std::string& root);

  const std::filesystem::path& root() const { return root_; }

  // jobs/<job_id>/attempt-<attempt>/checkpoints/<name>. REQUIRES job_id and
  // name in [A-Za-z0-9._-]+, not starting with '.', attempt >= 0
  // (kInvalidArgument otherwise).
  absl::StatusOr<std::string> CheckpointPath(std::string_view job_id, int32_t attempt,
                                             std::string_view name) const;
  absl::StatusOr<std::string> LogPath(std::string_view job_id, int32_t attempt) const;

  // Starts an atomic checkpoint write (directories created as needed).
  absl::StatusOr<std::unique_ptr<ArtifactWriter>> BeginCheckpoint(std::string_view job_id, int32_t attempt,
                                                                  std::string_view name);

  // Up to max_bytes from `offset` of a stored file ("" at or past the end).
  // kNotFound for a missing file; kInvalidArgument for a path that escapes
  // the root, a negative offset or max_bytes <= 0.
  absl::StatusOr<std::string> ReadChunk(std::string_view rel_path, int64_t offset, int64_t max_bytes) const;
  absl::StatusOr<std::string> Sha256File(std::string_view rel_path) const;
  absl::StatusOr<int64_t> FileSize(std::string_view rel_path) const;
  // Re-hashes the file and compares (kDataLoss on mismatch, naming both).
  absl::Status Verify(std::string_view rel_path, std::string_view expected_sha256) const;
  // Removes a stored file (retention); OK when already gone.
  absl::Status Remove(std::string_view rel_path);

  // Appends text to the attempt's log (created on first use; O_APPEND, so
  // concurrent appenders interleave whole writes). Logs of earlier attempts
  // stay untouched.
  absl::Status AppendLog(std::string_view job_id, int32_t attempt, std::string_view text);

 private:
  explicit ArtifactStore(std::filesystem::path root) : root_(std::move(root)) {}
  absl::StatusOr<std::filesystem::path> Resolve(std::string_view rel_path) const;
  std::filesystem::path root_;
};

}  // namespace gcl::storage
