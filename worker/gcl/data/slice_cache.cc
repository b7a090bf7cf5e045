#include "worker/gcl/data/slice_cache.h"

#include "gcl/base/sha256.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <thread>

#include <ATen/ATen.h>
#include <torch/serialize.h>

#include "absl/strings/str_cat.h"
#include "gcl/base/status_macros.h"
#include "gcl/base/torch_status.h"

namespace gcl::core {
namespace {

namespace fs = std::filesystem;
using c10::IValue;

// Records are generic lists rather than tuples: GCC 12 reports false
// -Warray-bounds in LibTorch's inline tuple storage for tuples over 3 fields.
IValue MakeList(std::vector<IValue> items) {
  c10::impl::GenericList list(c10::AnyType::get());
  for (IValue& item : items) list.push_back(std::move(item));
  return list;
}

std::string Header() { return absl::StrCat("GCLCACHE ", kSliceCacheVersion, "\n"); }

IValue VolumeToIValue(const Volume& v) {
  IValue label;  // None when unlabelled
  if (v.label.defined()) {
    const bool small = v.label.numel() == 0 || (v.label.min().item<int64_t>() >= 0 && v.label.max().item<int64_t>() <= 255);
    label = small ? v.label.to(at::kByte) : v.label;
  }
  c10::List<double> spacing({v.spacing_zyx[0], v.spacing_zyx[1], v.spacing_zyx[2]});
  return MakeList({IValue(v.id), IValue(v.case_id), IValue(static_cast<int64_t>(v.phase)),
                   IValue(v.image.contiguous()), label, IValue(spacing), IValue(v.source)});
}

Volume VolumeFromIValue(const IValue& iv) {
  const auto e = iv.toListRef();
  TORCH_CHECK(e.size() == 7, "volume tuple has ", e.size(), " fields");
  Volume v;
  v.id = e[0].toStringRef();
  v.case_id = e[1].toStringRef();
  v.phase = static_cast<int>(e[2].toInt());
  v.image = e[3].toTensor();
  TORCH_CHECK(v.image.scalar_type() == at::kFloat && v.image.dim() == 3, "bad image tensor");
  if (!e[4].isNone()) {
    v.label = e[4].toTensor().to(at::kLong);
    TORCH_CHECK(v.label.sizes() == v.image.sizes(), "label shape differs from image shape");
  }
  const auto spacing = e[5].toDoubleList();
  TORCH_CHECK(spacing.size() == 3, "bad spacing");
  for (size_t i = 0; i < 3; ++i) v.spacing_zyx[i] = spacing.get(i);
  v.source = e[6].toStringRef();
  return v;
}

IValue SplitToIValue(const std::vector<Volume>& vols) {
  c10::impl::GenericList list(c10::AnyType::get());
  for (const Volume& v : vols) list.push_back(VolumeToIValue(v));
  return list;
}

std::vector<Volume> SplitFromIValue(const IValue& iv) {
  std::vector<Volume> out;
  for (const IValue& v : iv.toListRef()) out.push_back(VolumeFromIValue(v));
  return out;
}

}  // namespace


absl::StatusOr<std::string> FileFingerprint(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  std::error_code ec;
  const std::string abs = fs::absolute(path, ec).string();
  const int64_t mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return absl::StrCat(abs, "|", static_cast<int64_t>(st.st_size), "|", mtime_ns);
}

std::string SliceCacheKey(const std::vector<std::string>& parts) {
  std::string all = absl::StrCat("gcl-slice-cache|", kSliceCacheVersion, "|");
  for (const std::string& p : parts) absl::StrAppend(&all, p.size(), ":", p, "|");
  return Sha256Hex(all);
}

std::string SliceCachePath(const std::string& cache_dir, const std::string& key) {
  return (fs::path(cache_dir) / (key + ".gclcache")).string();
}

absl::Status SaveDatasetCache(const std::string& path, const Dataset& dataset) {
  std::string payload;
  GCL_RETURN_IF_ERROR(gcl::CatchToStatus(path, [&]() -> absl::Status {
    c10::List<std::string> names;
    for (const auto& n : dataset.class_names) names.push_back(n);
    IValue root = MakeList({IValue(static_cast<int64_t>(kSliceCacheVersion)), IValue(names), IValue(dataset.has_phase),
                            SplitToIValue(dataset.train), SplitToIValue(dataset.val), SplitToIValue(dataset.test)});
    std::vector<char> bytes = torch::pickle_save(root);
    payload.assign(bytes.begin(), bytes.end());
    return absl::OkStatus();
  }));
  const fs::path final_path(path);
  std::error_code ec;
  fs::create_directories(final_path.parent_path(), ec);
  if (ec) return absl::InternalError(absl::StrCat(final_path.parent_path().string(), ": cannot create (", ec.message(), ")"));
  const fs::path tmp = final_path.parent_path() /
                       absl::StrCat(".", final_path.filename().string(), ".tmp", ::getpid(), "_",
                                    std::hash<std::thread::id>()(std::this_thread::get_id()) % 1000000);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << Header() << Sha256Hex(payload) << "\n";
    out.write(payload.data(), static_cast<std::streamsize>(payload.size()));
    out.flush();
    if (!out) {
      out.close();
      fs::remove(tmp, ec);
      return absl::InternalError(absl::StrCat(tmp.string(), ": write failed"));
    }
  }
  fs::rename(tmp, final_path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return absl::InternalError(absl::StrCat(path, ": rename failed (", ec.message(), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Dataset> LoadDatasetCache(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": no cache entry"));
  std::string header, digest;
  if (!std::getline(in, header) || header + "\n" != Header()) {
    return absl::DataLossError(absl::StrCat(path, ": not a cache entry of version ", kSliceCacheVersion));
  }
  if (!std::getline(in, digest) || digest.size() != 64) return absl::DataLossError(absl::StrCat(path, ": bad checksum line"));
  std::string payload((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (Sha256Hex(payload) != digest) return absl::DataLossError(absl::StrCat(path, ": checksum mismatch (corrupt entry)"));
  Dataset ds;
  absl::Status s = gcl::CatchToStatus(path, [&]() -> absl::Status {
    IValue root = torch::pickle_load(std::vector<char>(payload.begin(), payload.end()));
    const auto e = root.toListRef();
    TORCH_CHECK(e.size() == 6 && e[0].toInt() == kSliceCacheVersion, "unexpected layout");
    for (const IValue& n : e[1].toListRef()) ds.class_names.push_back(n.toStringRef());
    ds.has_phase = e[2].toBool();
    ds.train = SplitFromIValue(e[3]);
    ds.val = SplitFromIValue(e[4]);
    ds.test = SplitFromIValue(e[5]);
    return absl::OkStatus();
  });
  if (!s.ok()) return absl::DataLossError(absl::StrCat(path, ": unreadable cache entry: ", s.message()));
  return ds;
}

}  // namespace gcl::core
