#include "storage/artifact_store.h"

#include "gcl/base/sha256.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace gcl::storage {
namespace {

namespace fs = std::filesystem;
using ::gcl::testing::IsOk;
using ::gcl::testing::StatusIs;

int CountFiles(const fs::path& dir) {
  int n = 0;
  for (auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file() ? 1 : 0;
  return n;
}

TEST(Sha256Test, KnownVectors) {
  // FIPS 180-2 test vectors.
  EXPECT_EQ(gcl::Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(gcl::Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ArtifactStoreTest, ChunkedWriteVerifiedAndReadBack) {
  gcl::testing::TempDir dir;
  GCL_ASSERT_OK_AND_ASSIGN(auto store, ArtifactStore::Open((dir.path() / "art").string()));
  std::string payload;
  for (int i = 0; i < 100000; ++i) payload.push_back(static_cast<char>((i * 131) % 251));
  const std::string sha = gcl::Sha256Hex(payload);
  GCL_ASSERT_OK_AND_ASSIGN(auto w, store->BeginCheckpoint("j-0123456789ab", 2, "step-100.safetensors"));
  for (size_t off = 0; off < payload.size(); off += 30000) {
    ASSERT_THAT(w->Append(std::string_view(payload).substr(off, 30000)), IsOk());
  }
  // Nothing under the final name before Commit.
  EXPECT_FALSE(fs::exists(store->root() / w->path()));
  GCL_ASSERT_OK_AND_ASSIGN(ArtifactInfo info, w->Commit(sha));
  EXPECT_EQ(info.path, "jobs/j-0123456789ab/attempt-2/checkpoints/step-100.safetensors");
  EXPECT_EQ(info.sha256, sha);
  EXPECT_EQ(info.bytes, 100000);
  EXPECT_EQ(CountFiles(store->root()), 1);  // the temporary is gone
  GCL_ASSERT_OK_AND_ASSIGN(std::string file_sha, store->Sha256File(info.path));
  EXPECT_EQ(file_sha, sha);
  ASSERT_THAT(store->Verify(info.path, sha), IsOk());
  EXPECT_THAT(store->Verify(info.path, std::string(64, '0')), StatusIs(absl::StatusCode::kDataLoss, "mismatch"));
  GCL_ASSERT_OK_AND_ASSIGN(int64_t size, store->FileSize(info.path));
  EXPECT_EQ(size, 100000);

  // Chunked download reassembles the same bytes.
  std::string back;
  for (int64_t off = 0;; off += 32768) {
    GCL_ASSERT_OK_AND_ASSIGN(std::string chunk, store->ReadChunk(info.path, off, 32768));
    if (chunk.empty()) break;
    back += chunk;
  }
  EXPECT_EQ(back, payload);
  GCL_ASSERT_OK_AND_ASSIGN(std::string mid, store->ReadChunk(info.path, 10, 5));
  EXPECT_EQ(mid, payload.substr(10, 5));

  // Idempotent retry with the same bytes; different bytes never clobber.
  GCL_ASSERT_OK_AND_ASSIGN(auto again, store->BeginCheckpoint("j-0123456789ab", 2, "step-100.safetensors"));
  ASSERT_THAT(again->Append(payload), IsOk());
  EXPECT_THAT(again->Commit(sha), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(auto other, store->BeginCheckpoint("j-0123456789ab", 2, "step-100.safetensors"));
  ASSERT_THAT(other->Append("different"), IsOk());
  EXPECT_THAT(other->Commit(""), StatusIs(absl::StatusCode::kAlreadyExists, "different content"));
  GCL_ASSERT_OK_AND_ASSIGN(std::string still, store->Sha256File(info.path));
  EXPECT_EQ(still, sha);
  EXPECT_EQ(CountFiles(store->root()), 1);

  ASSERT_THAT(store->Remove(info.path), IsOk());
  EXPECT_THAT(store->ReadChunk(info.path, 0, 10), StatusIs(absl::StatusCode::kNotFound, ""));
  ASSERT_THAT(store->Remove(info.path), IsOk());
}

TEST(ArtifactStoreTest, ShaMismatchLeavesNoFile) {
  gcl::testing::TempDir dir;
  GCL_ASSERT_OK_AND_ASSIGN(auto store, ArtifactStore::Open(dir.path().string()));
  GCL_ASSERT_OK_AND_ASSIGN(auto w, store->BeginCheckpoint("j-1", 1, "ckpt.pt"));
  ASSERT_THAT(w->Append("hello "), IsOk());
  ASSERT_THAT(w->Append("world"), IsOk());
  const std::string wrong = gcl::Sha256Hex("hello world!");
  auto r = w->Commit(wrong);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kDataLoss, wrong));
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kDataLoss, gcl::Sha256Hex("hello world")));
  EXPECT_EQ(CountFiles(dir.path()), 0);
  EXPECT_THAT(w->Append("more"), StatusIs(absl::StatusCode::kFailedPrecondition, "finished"));
  // Upper-case hex is accepted.
  GCL_ASSERT_OK_AND_ASSIGN(auto w2, store->BeginCheckpoint("j-1", 1, "ckpt.pt"));
  ASSERT_THAT(w2->Append("hello world"), IsOk());
  std::string upper = gcl::Sha256Hex("hello world");
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_THAT(w2->Commit(upper), IsOk());
  EXPECT_EQ(CountFiles(dir.path()), 1);
}

TEST(ArtifactStoreTest, AbandonedWritesLeaveNothingAndAreSweptOnOpen) {
  gcl::testing::TempDir dir;
  {
    GCL_ASSERT_OK_AND_ASSIGN(auto store, ArtifactStore::Open(dir.path().string()));
    GCL_ASSERT_OK_AND_ASSIGN(auto w, store->BeginCheckpoint("j-1", 1, "a.pt"));
    ASSERT_THAT(w->Append("partial"), IsOk());
  }  // destroyed without Commit
  EXPECT_EQ(CountFiles(dir.path()), 0);
  // A temporary left by a crashed process is swept by the next Open.
  fs::create_directories(dir.path() / "jobs/j-1/attempt-1/checkpoints");
  std::ofstream(dir.path() / "jobs/j-1/attempt-1/checkpoints/.b.pt.partial-deadbeef") << "junk";
  std::ofstream(dir.path() / "jobs/j-1/attempt-1/checkpoints/keep.pt") << "good";
  GCL_ASSERT_OK_AND_ASSIGN(auto store, ArtifactStore::Open(dir.path().string()));
  EXPECT_EQ(CountFiles(dir.path()), 1);
  EXPECT_TRUE(fs::exists(dir.path() / "jobs/j-1/attempt-1/checkpoints/keep.pt"));
}

TEST(ArtifactStoreTest, PathsNeverEscapeTheRoot) {
  gcl::testing::TempDir dir;
  GCL_ASSERT_OK_AND_ASSIGN(auto store, ArtifactStore::Open(dir.path().string()));
  EXPECT_THAT(store->BeginCheckpoint("../x", 1, "a"), StatusIs(absl::StatusCode::kInvalidArgument, "job id"));
  EXPECT_THAT(store->BeginCheckpoint("j", 1, "../../etc"), StatusIs(absl::StatusCode::kInvalidArgument, "name"));
  EXPECT_THAT(store->BeginCheckpoint("j", 1, ".hidden"), StatusIs(absl::StatusCode::kInvalidArgument, "name"));
  EXPECT_THAT(store->ReadChunk("../secret", 0, 10), StatusIs(absl::StatusCode::kInvalidArgument, "escapes"));
  EXPECT_THAT(store->ReadChunk("/etc/passwd", 0, 10), StatusIs(absl::StatusCode::kInvalidArgument, "relative"));
  EXPECT_THAT(store->Sha256File("jobs/../../x"), StatusIs(absl::StatusCode::kInvalidArgument, "escapes"));
  EXPECT_THAT(store->ReadChunk("jobs", -1, 10), StatusIs(absl::StatusCode::kInvalidArgument, "offset"));
}

TEST(ArtifactStoreTest, LogsArePerAttempt) {
  gcl::testing::TempDir dir;
  GCL_ASSERT_OK_AND_ASSIGN(auto store, ArtifactStore::Open(dir.path().string()));
  ASSERT_THAT(store->AppendLog("j-1", 1, "step 1 loss 2.0\n"), IsOk());
  ASSERT_THAT(store->AppendLog("j-1", 1, "step 2 loss 1.5\n"), IsOk());
  ASSERT_THAT(store->AppendLog("j-1", 2, "resumed from step 2\n"), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(std::string p1, store->LogPath("j-1", 1));
  GCL_ASSERT_OK_AND_ASSIGN(std::string p2, store->LogPath("j-1", 2));
  EXPECT_EQ(p1, "jobs/j-1/attempt-1/logs/train.log");
  GCL_ASSERT_OK_AND_ASSIGN(std::string l1, store->ReadChunk(p1, 0, 1 << 20));
  GCL_ASSERT_OK_AND_ASSIGN(std::string l2, store->ReadChunk(p2, 0, 1 << 20));
  EXPECT_EQ(l1, "step 1 loss 2.0\nstep 2 loss 1.5\n");
  EXPECT_EQ(l2, "resumed from step 2\n");
  // Follow from an offset (logs -f).
  GCL_ASSERT_OK_AND_ASSIGN(std::string tail, store->ReadChunk(p1, 16, 1 << 20));
  EXPECT_EQ(tail, "step 2 loss 1.5\n");
  // Logs survive a reopen.
  GCL_ASSERT_OK_AND_ASSIGN(auto reopened, ArtifactStore::Open(dir.path().string()));
  GCL_ASSERT_OK_AND_ASSIGN(std::string again, reopened->ReadChunk(p1, 0, 1 << 20));
  EXPECT_EQ(again, l1);
}

}  // namespace
}  // namespace gcl::storage
