#include "worker/gcl/data/acdc_h5.h"

#include <hdf5.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <mutex>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gcl/base/status_macros.h"
#include "gcl/base/torch_status.h"
#include "worker/gcl/data/nifti_io.h"

namespace gcl::core {
namespace {

namespace fs = std::filesystem;

// libhdf5 (Debian's serial build) has global state and is not thread-safe.
std::mutex& Hdf5Mutex() {
  static std::mutex mu;
  return mu;
}

// Closes an HDF5 handle at scope exit.
class H5Handle {
 public:
  H5Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~H5Handle() {
    if (id_ >= 0) close_(id_);
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

// Reads dataset `name` converted to `mem_type` into a tensor of `dtype`.
absl::Status ReadDataset(hid_t file, const std::string& path, const char* name, hid_t mem_type,
                         at::ScalarType dtype, at::Tensor* out) {
  H5Handle ds(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose);
  if (!ds.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": cannot open dataset /", name));
  H5Handle space(H5Dget_space(ds.get()), H5Sclose);
  const int rank = space.ok() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 0 || rank > 8) return absl::InvalidArgumentError(absl::StrCat(path, ": /", name, " has no simple dataspace"));
  hsize_t dims[8];
  H5Sget_simple_extent_dims(space.get(), dims, nullptr);
  H5Handle ftype(H5Dget_type(ds.get()), H5Tclose);
  const H5T_class_t cls = ftype.ok() ? H5Tget_class(ftype.get()) : H5T_NO_CLASS;
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": /", name, " is not numeric"));
  }
  std::vector<int64_t> shape(dims, dims + rank);
  at::Tensor t = at::empty(shape, dtype);
  if (t.numel() > 0 && H5Dread(ds.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data_ptr()) < 0) {
    return absl::DataLossError(absl::StrCat(path, ": reading /", name, " failed (truncated or corrupt data)"));
  }
  *out = t;
  return absl::OkStatus();
}

bool AllDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

}  // namespace

std::vector<std::string> AcdcClassNames() { return {"background", "RV", "Myo", "LV"}; }

absl::Status ReadH5ImageLabel(const std::string& path, int expected_rank, at::Tensor* image, at::Tensor* label) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  return gcl::CatchToStatus(path, [&]() -> absl::Status {
    std::lock_guard<std::mutex> lock(Hdf5Mutex());
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    if (H5Fis_hdf5(path.c_str()) <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": not an HDF5 file"));
    }
    H5Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    if (!file.ok()) return absl::DataLossError(absl::StrCat(path, ": cannot open HDF5 file (corrupt?)"));
    if (H5Lexists(file.get(), "image", H5P_DEFAULT) <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": no /image dataset"));
    }
    at::Tensor img, lab;
    GCL_RETURN_IF_ERROR(ReadDataset(file.get(), path, "image", H5T_NATIVE_FLOAT, at::kFloat, &img));
    if (img.dim() != expected_rank) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": /image has rank ", img.dim(), ", expected ", expected_rank));
    }
    if (H5Lexists(file.get(), "label", H5P_DEFAULT) > 0) {
      GCL_RETURN_IF_ERROR(ReadDataset(file.get(), path, "label", H5T_NATIVE_INT64, at::kLong, &lab));
      if (lab.sizes() != img.sizes()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": /label shape [", absl::StrJoin(lab.sizes().vec(), ", "),
                                                       "] differs from /image shape [",
                                                       absl::StrJoin(img.sizes().vec(), ", "), "]"));
      }
    }
    *image = img;
    *label = lab;
    return absl::OkStatus();
  });
}

absl::StatusOr<std::map<std::string, AcdcVolumeFiles>> IndexAcdcDataDir(const std::string& data_dir) {
  std::error_code ec;
  if (!fs::is_directory(data_dir, ec)) return absl::NotFoundError(absl::StrCat(data_dir, ": no such folder"));
  std::map<std::string, AcdcVolumeFiles> index;
  std::map<std::string, std::vector<std::pair<int, std::string>>> slices;
  for (fs::directory_iterator it(data_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() < 4 || name.compare(name.size() - 3, 3, ".h5") != 0 || name[0] == '.') continue;
    const std::string stem = name.substr(0, name.size() - 3);
    const size_t pos = stem.rfind("_slice_");
    if (pos != std::string::npos && AllDigits(stem.substr(pos + 7))) {
      slices[stem.substr(0, pos)].emplace_back(std::stoi(stem.substr(pos + 7)), it->path().string());
    } else {
      index[stem].id = stem;
      index[stem].volume_file = it->path().string();
    }
  }
  if (ec) return absl::NotFoundError(absl::StrCat(data_dir, ": cannot list (", ec.message(), ")"));
  for (auto& [id, list] : slices) {
    std::sort(list.begin(), list.end());
    AcdcVolumeFiles& files = index[id];
    files.id = id;
    for (size_t k = 0; k < list.size(); ++k) {
      if (list[k].first != static_cast<int>(k) + 1) {
        return absl::InvalidArgumentError(absl::StrCat(data_dir, ": slices of ", id, " are not numbered 1..",
                                                       list.size(), " (slice ", list[k].first, " at position ",
                                                       k + 1, ")"));
      }
      files.slices.push_back(list[k].second);
    }
  }
  return index;
}

absl::StatusOr<std::vector<std::string>> ReadIdList(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open list file"));
  std::vector<std::string> ids;
  std::string line;
  while (std::getline(in, line)) {
    const size_t hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    const size_t b = line.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) continue;
    const size_t e = line.find_last_not_of(" \t\r\n");
    std::string id = line.substr(b, e - b + 1);
    for (const char* ext : {".h5", ".nii.gz", ".nii"}) {
      const std::string x(ext);
      if (id.size() > x.size() && id.compare(id.size() - x.size(), x.size(), x) == 0) id.resize(id.size() - x.size());
    }
    ids.push_back(id);
  }
  return ids;
}

absl::StatusOr<Volume> ReadAcdcVolume(const AcdcVolumeFiles& files) {
  Volume v;
  v.id = files.id;
  CaseAndPhaseFromId(files.id, &v.case_id, &v.phase);
  if (!files.volume_file.empty()) {
    GCL_RETURN_IF_ERROR(ReadH5ImageLabel(files.volume_file, 3, &v.image, &v.label));
    v.source = files.volume_file;
    return v;
  }
  if (files.slices.empty()) return absl::NotFoundError(absl::StrCat(files.id, ": no volume or slice files"));
  std::vector<at::Tensor> images, labels;
  for (const std::string& path : files.slices) {
    at::Tensor img, lab;
    GCL_RETURN_IF_ERROR(ReadH5ImageLabel(path, 2, &img, &lab));
    if (!images.empty() && img.sizes() != images[0].sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": slice shape [", absl::StrJoin(img.sizes().vec(), ", "),
                                                     "] differs from ", files.slices[0], " [",
                                                     absl::StrJoin(images[0].sizes().vec(), ", "), "]"));
    }
    if (!images.empty() && lab.defined() != labels[0].defined()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": /label present in some slices of ", files.id, " only"));
    }
    images.push_back(img);
    labels.push_back(lab);
  }
  v.image = at::stack(images);
  if (labels[0].defined()) v.label = at::stack(labels);
  v.source = absl::StrCat(fs::path(files.slices[0]).parent_path().string(), "/", files.id, "_slice_{1..",
                          files.slices.size(), "}.h5");
  return v;
}

}  // namespace gcl::core
