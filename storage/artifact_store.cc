#include "storage/artifact_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gcl/base/sha256.h"
#include "gcl/base/status_macros.h"
#include "storage/str_util.h"

namespace gcl::storage {
namespace fs = std::filesystem;
namespace {

constexpr char kPartialTag[] = ".partial-";

absl::Status ErrnoStatus(std::string_view what, const fs::path& path, int err) {
  std::string msg = internal::Cat(what, " ", path.string(), ": ", std::strerror(err));
  if (err == ENOENT) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  if (err == ENOSPC) return absl::ResourceExhaustedError(msg);
  return absl::InternalError(msg);
}

bool IsSafeName(std::string_view s) {
  if (s.empty() || s[0] == '.') return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
  }
  return true;
}

absl::Status WriteAll(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("write", path, errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open dir", dir, errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) return ErrnoStatus("fsync dir", dir, err);
  return absl::OkStatus();
}

absl::Status CheckShaText(std::string_view sha) {
  if (sha.size() != 64 || !std::all_of(sha.begin(), sha.end(), [](char c) {
        return absl::ascii_isxdigit(static_cast<unsigned char>(c));
      })) {
    return absl::InvalidArgumentError(internal::Cat("expected sha256 must be 64 hex digits, got '", sha, "'"));
  }
  return absl::OkStatus();
}

}  // namespace

struct ArtifactWriter::HashState : gcl::Sha256 {};

// ---------------------------------------------------------------- writer

ArtifactWriter::ArtifactWriter(fs::path final_path, fs::path tmp_path, std::string rel_path, int fd)
    : final_path_(std::move(final_path)),
      tmp_path_(std::move(tmp_path)),
      rel_path_(std::move(rel_path)),
      fd_(fd),
      hash_(std::make_unique<HashState>()) {}

ArtifactWriter::~ArtifactWriter() { Abort(); }

void ArtifactWriter::Abort() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!done_) {
    std::error_code ec;
    fs::remove(tmp_path_, ec);
    done_ = true;
  }
}

absl::Status ArtifactWriter::Append(std::string_view chunk) {
  if (done_) return absl::FailedPreconditionError(internal::Cat("write of ", rel_path_, " already finished"));
  absl::Status s = WriteAll(fd_, chunk, tmp_path_);
  if (!s.ok()) {
    Abort();
    return s;
  }
  hash_->Update(chunk);
  bytes_ += static_cast<int64_t>(chunk.size());
  return absl::OkStatus();
}

absl::StatusOr<ArtifactInfo> ArtifactWriter::Commit(std::string_view expected_sha256) {
  if (done_) return absl::FailedPreconditionError(internal::Cat("write of ", rel_path_, " already finished"));
  if (!expected_sha256.empty()) {
    if (absl::Status s = CheckShaText(expected_sha256); !s.ok()) {
      Abort();
      return s;
    }
  }
  ArtifactInfo info{rel_path_, hash_->HexDigest(), bytes_};
  if (!expected_sha256.empty() && internal::Lower(expected_sha256) != info.sha256) {
    Abort();
    return absl::DataLossError(internal::Cat("sha256 mismatch for ", rel_path_, ": expected ",
                                            internal::Lower(expected_sha256), ", got ", info.sha256,
                                            " over ", bytes_, " bytes"));
  }
  // Data on disk before the name points at it (rename is atomic, not durable).
  if (::fsync(fd_) != 0) {
    absl::Status s = ErrnoStatus("fsync", tmp_path_, errno);
    Abort();
    return s;
  }
  ::close(fd_);
  fd_ = -1;
  std::error_code ec;
  if (fs::exists(final_path_, ec)) {
    // Same content: an upload retried after a lost reply. Else never clobber.
    gcl::Sha256 h;
    int in = ::open(final_path_.c_str(), O_RDONLY | O_CLOEXEC);
    std::string existing;
    if (in >= 0) {
      char buf[1 << 16];
      ssize_t n;
      while ((n = ::read(in, buf, sizeof(buf))) > 0) h.Update(std::string_view(buf, static_cast<size_t>(n)));
      ::close(in);
      existing = h.HexDigest();
    }
    Abort();
    if (existing == info.sha256) return info;
    return absl::AlreadyExistsError(internal::Cat(rel_path_, " exists with different content (sha256 ",
                                                 existing, ")"));
  }
  if (::rename(tmp_path_.c_str(), final_path_.c_str()) != 0) {
    absl::Status s = ErrnoStatus("rename", tmp_path_, errno);
    Abort();
    return s;
  }
  done_ = true;
  GCL_RETURN_IF_ERROR(FsyncDir(final_path_.parent_path()));
  return info;
}

// ---------------------------------------------------------------- store

absl::StatusOr<std::unique_ptr<ArtifactStore>> ArtifactStore::Open(const std::string& root) {
  if (root.empty()) return absl::InvalidArgumentError("artifact root must not be empty");
  std::error_code ec;
  fs::create_directories(fs::path(root) / "jobs", ec);
  if (ec) return absl::InternalError(internal::Cat("create ", root, ": ", ec.message()));
  fs::path abs = fs::weakly_canonical(fs::path(root), ec);
  if (ec) return absl::InternalError(internal::Cat("resolve ", root, ": ", ec.message()));
  // Sweep temporaries of writers that died before Commit/Abort.
  for (auto it = fs::recursive_directory_iterator(abs / "jobs", ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec) && it->path().filename().string().find(kPartialTag) != std::string::npos) {
      std::error_code rm;
      fs::remove(it->path(), rm);
    }
  }
  return std::unique_ptr<ArtifactStore>(new ArtifactStore(abs));
}

absl::StatusOr<std::string> ArtifactStore::CheckpointPath(std::string_view job_id, int32_t attempt,
                                                          std::string_view name) const {
  if (!IsSafeName(job_id)) return absl::InvalidArgumentError(internal::Cat("bad job id '", job_id, "'"));
  if (!IsSafeName(name)) return absl::InvalidArgumentError(internal::Cat("bad artifact name '", name, "'"));
  if (attempt < 0) return absl::InvalidArgumentError("attempt must be >= 0");
  return internal::Cat("jobs/", job_id, "/attempt-", attempt, "/checkpoints/", name);
}

absl::StatusOr<std::string> ArtifactStore::LogPath(std::string_view job_id, int32_t attempt) const {
  if (!IsSafeName(job_id)) return absl::InvalidArgumentError(internal::Cat("bad job id '", job_id, "'"));
  if (attempt < 0) return absl::InvalidArgumentError("attempt must be >= 0");
  return internal::Cat("jobs/", job_id, "/attempt-", attempt, "/logs/train.log");
}

absl::StatusOr<fs::path> ArtifactStore::Resolve(std::string_view rel_path) const {
  fs::path rel(std::string{rel_path});
  if (rel_path.empty() || rel.is_absolute()) {
    return absl::InvalidArgumentError(internal::Cat("artifact path must be relative: '", rel_path, "'"));
  }
  for (const fs::path& part : rel) {
    if (part == ".." || part == ".") {
      return absl::InvalidArgumentError(internal::Cat("artifact path escapes the root: '", rel_path, "'"));
    }
  }
  return root_ / rel;
}

absl::StatusOr<std::unique_ptr<ArtifactWriter>> ArtifactStore::BeginCheckpoint(std::string_view job_id,
                                                                               int32_t attempt,
                                                                               std::string_view name) {
  GCL_ASSIGN_OR_RETURN(std::string rel, CheckpointPath(job_id, attempt, name));
  GCL_ASSIGN_OR_RETURN(fs::path final_path, Resolve(rel));
  std::error_code ec;
  fs::create_directories(final_path.parent_path(), ec);
  if (ec) return absl::InternalError(internal::Cat("mkdir ", final_path.parent_path().string(), ": ", ec.message()));
  std::random_device rd;
  for (int tries = 0; tries < 8; ++tries) {
    fs::path tmp = final_path.parent_path() /
                   absl::StrFormat(".%s%s%08x", name, kPartialTag, static_cast<uint32_t>(rd()));
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) {
      return std::unique_ptr<ArtifactWriter>(new ArtifactWriter(final_path, tmp, rel, fd));
    }
    if (errno != EEXIST) return ErrnoStatus("create", tmp, errno);
  }
  return absl::InternalError(internal::Cat("no free temporary name for ", rel));
}

absl::StatusOr<std::string> ArtifactStore::ReadChunk(std::string_view rel_path, int64_t offset,
                                                     int64_t max_bytes) const {
  if (offset < 0 || max_bytes <= 0) {
    return absl::InvalidArgumentError("ReadChunk needs offset >= 0 and max_bytes > 0");
  }
  GCL_ASSIGN_OR_RETURN(fs::path path, Resolve(rel_path));
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open", path, errno);
  std::string out(static_cast<size_t>(max_bytes), '\0');
  size_t got = 0;
  while (got < out.size()) {
    ssize_t n = ::pread(fd, out.data() + got, out.size() - got, offset + static_cast<int64_t>(got));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return ErrnoStatus("read", path, err);
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  out.resize(got);
  return out;
}

absl::StatusOr<std::string> ArtifactStore::Sha256File(std::string_view rel_path) const {
  GCL_ASSIGN_OR_RETURN(fs::path path, Resolve(rel_path));
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open", path, errno);
  gcl::Sha256 h;
  std::string buf(1 << 16, '\0');
  while (true) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      return ErrnoStatus("read", path, err);
    }
    if (n == 0) break;
    h.Update(std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  ::close(fd);
  return h.HexDigest();
}

absl::StatusOr<int64_t> ArtifactStore::FileSize(std::string_view rel_path) const {
  GCL_ASSIGN_OR_RETURN(fs::path path, Resolve(rel_path));
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus("stat", path, errno);
  return static_cast<int64_t>(st.st_size);
}

absl::Status ArtifactStore::Verify(std::string_view rel_path, std::string_view expected_sha256) const {
  GCL_RETURN_IF_ERROR(CheckShaText(expected_sha256));
  GCL_ASSIGN_OR_RETURN(std::string got, Sha256File(rel_path));
  std::string want = internal::Lower(expected_sha256);
  if (got != want) {
    return absl::DataLossError(internal::Cat("sha256 mismatch for ", rel_path, ": expected ", want, ", got ", got));
  }
  return absl::OkStatus();
}

absl::Status ArtifactStore::Remove(std::string_view rel_path) {
  GCL_ASSIGN_OR_RETURN(fs::path path, Resolve(rel_path));
  std::error_code ec;
  fs::remove(path, ec);
  if (ec) return absl::InternalError(internal::Cat("remove ", path.string(), ": ", ec.message()));
  return absl::OkStatus();
}

absl::Status ArtifactStore::AppendLog(std::string_view job_id, int32_t attempt, std::string_view text) {
  GCL_ASSIGN_OR_RETURN(std::string rel, LogPath(job_id, attempt));
  GCL_ASSIGN_OR_RETURN(fs::path path, Resolve(rel));
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return absl::InternalError(internal::Cat("mkdir ", path.parent_path().string(), ": ", ec.message()));
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("open", path, errno);
  absl::Status s = WriteAll(fd, text, path);
  ::close(fd);
  return s;
}

}  // namespace gcl::storage
