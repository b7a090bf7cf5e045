#include "worker/agent/checkpoint_fetch.h"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gcl/base/sha256.h"

namespace gcl::agent {
namespace fs = std::filesystem;

absl::StatusOr<std::string> FetchCheckpoint(
    gcl::v1::WorkerService::StubInterface& stub,
    const std::function<void(grpc::ClientContext*)>& setup, const std::string& id,
    const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  grpc::ClientContext ctx;
  setup(&ctx);
  gcl::v1::DownloadCheckpointRequest req;
  req.set_id(id);
  auto reader = stub.DownloadCheckpoint(&ctx, req);
  gcl::v1::CheckpointChunk chunk;
  gcl::v1::Checkpoint desc;
  std::string tmp, final_path;
  std::ofstream out;
  Sha256 digest;
  int64_t bytes = 0;
  bool first = true;
  while (reader->Read(&chunk)) {
    if (first) {
      first = false;
      if (!chunk.has_checkpoint()) {
        ctx.TryCancel();
        reader->Finish();
        return absl::DataLossError(absl::StrCat("checkpoint ", id, ": no descriptor"));
      }
      desc = chunk.checkpoint();
      final_path = (fs::path(dir) / absl::StrFormat("step-%08d.ckpt", desc.step())).string();
      tmp = final_path + ".partial";
      out.open(tmp, std::ios::binary | std::ios::trunc);
      if (!out) {
        ctx.TryCancel();
        reader->Finish();
        return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
      }
    }
    digest.Update(chunk.data());
    out.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
    bytes += static_cast<int64_t>(chunk.data().size());
  }
  const grpc::Status s = reader->Finish();
  out.close();
  auto fail = [&](absl::Status st) {
    if (!tmp.empty()) fs::remove(tmp, ec);
    return st;
  };
  if (!s.ok()) {
    return fail(absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                             absl::StrCat("download of checkpoint ", id, ": ", s.error_message())));
  }
  if (first) return absl::DataLossError(absl::StrCat("checkpoint ", id, ": empty download"));
  if (!out) return fail(absl::UnavailableError(absl::StrCat("write error on ", tmp)));
  const std::string got = digest.HexDigest();
  if (bytes != desc.size_bytes() || got != desc.sha256()) {
    return fail(absl::DataLossError(absl::StrCat("checkpoint ", id, ": received ", bytes, " bytes with sha256 ",
                                                 got, ", expected ", desc.size_bytes(), " bytes with ",
                                                 desc.sha256())));
  }
  const std::string name = fs::path(final_path).filename().string();
  std::ofstream(final_path + ".sha256", std::ios::trunc) << got << "  " << name << "\n";
  fs::rename(tmp, final_path, ec);
  if (ec) return fail(absl::UnavailableError(absl::StrCat("cannot rename ", tmp, ": ", ec.message())));
  return final_path;
}

}  // namespace gcl::agent
