#include "worker/gcl/data/nifti_io.h"

#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <ATen/ATen.h>
#include <nifti2_io.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gcl/base/status_macros.h"
#include "gcl/base/torch_status.h"

namespace gcl::core {
namespace {

namespace fs = std::filesystem;

struct NimDeleter {
  void operator()(nifti_image* nim) const { nifti_image_free(nim); }
};
using NimPtr = std::unique_ptr<nifti_image, NimDeleter>;

struct GzCloser {
  void operator()(gzFile_s* f) const { gzclose(f); }
};
using GzPtr = std::unique_ptr<gzFile_s, GzCloser>;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// nifti_clib reports problems only on stderr and answers NULL, so the header
// is checked here first to give a precise reason (magic, truncation).
absl::Status CheckHeader(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  GzPtr f(gzopen(path.c_str(), "rb"));  // reads plain files transparently
  if (!f) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  unsigned char hdr[352];
  int n = gzread(f.get(), hdr, sizeof(hdr));
  if (n < 0) {
    int errnum = 0;
    return absl::DataLossError(absl::StrCat(path, ": corrupt gzip stream (", gzerror(f.get(), &errnum), ")"));
  }
  if (n < 4) return absl::DataLossError(absl::StrCat(path, ": truncated NIfTI header (", n, " bytes)"));
  int32_t size_le, size_be;
  std::memcpy(&size_le, hdr, 4);
  size_be = static_cast<int32_t>(__builtin_bswap32(static_cast<uint32_t>(size_le)));
  const bool n1 = size_le == 348 || size_be == 348;
  const bool n2 = size_le == 540 || size_be == 540;
  if (!n1 && !n2) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a NIfTI file (sizeof_hdr is ", size_le, ", expected 348 or 540)"));
  }
  if (n1) {
    if (n < 348) return absl::DataLossError(absl::StrCat(path, ": truncated NIfTI-1 header (", n, " of 348 bytes)"));
    const char* magic = reinterpret_cast<const char*>(hdr) + 344;
    if (std::memcmp(magic, "n+1\0", 4) != 0 && std::memcmp(magic, "ni1\0", 4) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": wrong NIfTI-1 magic bytes (expected \"n+1\")"));
    }
  } else {
    if (n < 12) return absl::DataLossError(absl::StrCat(path, ": truncated NIfTI-2 header"));
    const char* magic = reinterpret_cast<const char*>(hdr) + 4;
    if (std::memcmp(magic, "n+2\0", 4) != 0 && std::memcmp(magic, "ni2\0", 4) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": wrong NIfTI-2 magic bytes (expected \"n+2\")"));
    }
  }
  return absl::OkStatus();
}

// Called after nifti_image_load failed: finds out why (for the message).
absl::Status DiagnoseData(const std::string& path, int64_t expected_end) {
  GzPtr f(gzopen(path.c_str(), "rb"));
  if (!f) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::vector<char> buf(1 << 20);
  int64_t total = 0;
  while (true) {
    int n = gzread(f.get(), buf.data(), static_cast<unsigned>(buf.size()));
    if (n < 0) {
      int errnum = 0;
      return absl::DataLossError(absl::StrCat(path, ": corrupt or truncated gzip stream (",
                                              gzerror(f.get(), &errnum), ") after ", total, " bytes"));
    }
    if (n == 0) break;
    total += n;
  }
  if (total < expected_end) {
    return absl::DataLossError(
        absl::StrCat(path, ": truncated image data (", total, " of ", expected_end, " bytes)"));
  }
  return absl::DataLossError(absl::StrCat(path, ": nifti_clib could not read the image data"));
}

template <typename T>
void CopyToDouble(const void* src, int64_t n, double* dst) {
  const T* s = static_cast<const T*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<double>(s[i]);
}

absl::Status ConvertData(const nifti_image* nim, const std::string& path, int64_t n, double* dst) {
  switch (nim->datatype) {
    case DT_UINT8: CopyToDouble<uint8_t>(nim->data, n, dst); break;
    case DT_INT8: CopyToDouble<int8_t>(nim->data, n, dst); break;
    case DT_INT16: CopyToDouble<int16_t>(nim->data, n, dst); break;
    case DT_UINT16: CopyToDouble<uint16_t>(nim->data, n, dst); break;
    case DT_INT32: CopyToDouble<int32_t>(nim->data, n, dst); break;
    case DT_UINT32: CopyToDouble<uint32_t>(nim->data, n, dst); break;
    case DT_INT64: CopyToDouble<int64_t>(nim->data, n, dst); break;
    case DT_UINT64: CopyToDouble<uint64_t>(nim->data, n, dst); break;
    case DT_FLOAT32: CopyToDouble<float>(nim->data, n, dst); break;
    case DT_FLOAT64: CopyToDouble<double>(nim->data, n, dst); break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported NIfTI datatype ", nim->datatype, " (",
                                                     nifti_datatype_string(nim->datatype), ")"));
  }
  return absl::OkStatus();
}

Affine FromDmat(const nifti_dmat44& m) {
  Affine a{};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) a[r][c] = m.m[r][c];
  return a;
}

const std::vector<std::string>& LabelSuffixes() {
  static const std::vector<std::string> kSuffixes = {"", "_segmentation", "_label", "_gt", "_seg"};
  return kSuffixes;
}

bool IsNiftiName(const std::string& name) {
  if (name.empty() || name[0] == '.') return false;  // hidden and "._" resource forks
  return EndsWith(name, ".nii.gz") || EndsWith(name, ".nii");
}

absl::StatusOr<std::vector<std::string>> ListNifti(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (IsNiftiName(name) && fs::is_regular_file(it->path(), ec)) out.push_back(name);
  }
  if (ec) return absl::NotFoundError(absl::StrCat(dir.string(), ": cannot list (", ec.message(), ")"));
  std::sort(out.begin(), out.end());
  return out;
}

bool HasLabelSuffix(const std::string& stem) {
  for (const auto& s : LabelSuffixes())
    if (!s.empty() && EndsWith(stem, s)) return true;
  return false;
}

std::string FindLabel(const fs::path& dir, const std::string& stem, const std::string& image_path) {
  std::error_code ec;
  for (const auto& suffix : LabelSuffixes()) {
    for (const char* ext : {".nii.gz", ".nii"}) {
      fs::path p = dir / (stem + suffix + ext);
      if (p.string() != image_path && fs::is_regular_file(p, ec)) return p.string();
    }
  }
  return "";
}

absl::Status WriteNim(nifti_image* nim, const std::string& path) {
  // Temporary name in the same folder, keeping the extension that selects
  // compression, then rename: readers never see a half-written file.
  fs::path final_path(path);
  fs::path tmp = final_path.parent_path() /
                 absl::StrCat(".tmp", ::getpid(), "_", std::hash<std::thread::id>()(std::this_thread::get_id()) % 1000000, "_",
                              final_path.filename().string());
  nifti_set_debug_level(0);
  if (nifti_set_filenames(nim, tmp.c_str(), 0, 1) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a valid NIfTI file name (.nii or .nii.gz)"));
  }
  nim->nifti_type = NIFTI_FTYPE_NIFTI1_1;
  // write_opts 3 = write the data and leave the file open (1 would close it
  // and answer NULL, indistinguishable from failure).
  znzFile fp = nifti_image_write_hdr_img2(nim, 3, "wb", nullptr, nullptr);
  if (znz_isnull(fp)) {
    std::error_code ec;
    fs::remove(tmp, ec);
    return absl::InternalError(absl::StrCat(path, ": writing failed"));
  }
  znzclose(fp);
  std::error_code ec;
  // Read the header back: catches a write that failed after opening.
  NimPtr check(nifti_image_read(tmp.c_str(), /*read_data=*/0));
  if (!check || check->nvox != nim->nvox) {
    fs::remove(tmp, ec);
    return absl::InternalError(absl::StrCat(path, ": writing failed (no data written)"));
  }
  fs::rename(tmp, final_path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    return absl::InternalError(absl::StrCat(path, ": rename failed (", ec.message(), ")"));
  }
  return absl::OkStatus();
}

}  // namespace

SliceAxis SliceAxisFromAffine(const Affine& a) {
  SliceAxis best;
  double best_score = -1.0;
  for (int axis = 2; axis >= 0; --axis) {
    const double norm = std::sqrt(a[0][axis] * a[0][axis] + a[1][axis] * a[1][axis] + a[2][axis] * a[2][axis]);
    const double score = norm > 0.0 ? std::abs(a[2][axis]) / norm : 0.0;
    if (score > best_score + 1e-9) {
      best_score = score;
      best.axis = axis;
      best.flip = a[2][axis] < 0.0;
    }
  }
  return best;
}

at::Tensor OrientToSlices(const at::Tensor& kji, SliceAxis slice) {
  const int64_t dim = 2 - slice.axis;  // tensor dim of that voxel axis
  std::vector<int64_t> order = {dim};
  for (int64_t d = 0; d < 3; ++d)
    if (d != dim) order.push_back(d);
  at::Tensor out = kji.permute(order);
  if (slice.flip) out = out.flip({0});
  return out.contiguous();
}

std::array<double, 3> SpacingZyx(const std::array<double, 3>& pixdim_ijk, SliceAxis slice) {
  const int64_t dim = 2 - slice.axis;
  std::array<double, 3> out{};
  int n = 0;
  out[n++] = pixdim_ijk[2 - dim];
  for (int64_t d = 0; d < 3; ++d)
    if (d != dim) out[n++] = pixdim_ijk[2 - d];
  for (double v : out)
    if (!(v > 0.0) || !std::isfinite(v)) return {0.0, 0.0, 0.0};
  return out;
}

absl::StatusOr<NiftiArray> ReadNiftiArray(const std::string& path, ExtraDims extra) {
  GCL_RETURN_IF_ERROR(CheckHeader(path));
  nifti_set_debug_level(0);
  NimPtr nim(nifti_image_read(path.c_str(), /*read_data=*/0));
  if (!nim) return absl::InvalidArgumentError(absl::StrCat(path, ": invalid NIfTI header"));
  const int ndim = static_cast<int>(nim->dim[0]);
  if (ndim < 2 || ndim > 7) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": unsupported number of dimensions ", ndim));
  }
  const int64_t nx = nim->dim[1], ny = nim->dim[2], nz = ndim >= 3 ? nim->dim[3] : 1;
  const int64_t nt = ndim >= 4 ? nim->dim[4] : 1;
  for (int d = 1; d <= ndim; ++d) {
    if (nim->dim[d] < 1) return absl::InvalidArgumentError(absl::StrCat(path, ": dim[", d, "] = ", nim->dim[d]));
    if (d >= 5 && nim->dim[d] != 1) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", ndim, "D image (dim[", d, "] = ", nim->dim[d],
                                                     "); at most 4 dimensions are supported"));
    }
  }
  if (nt > 1 && extra == ExtraDims::kError) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": 4D image with ", nt, " volumes (dim[4] = ", nt, ") where a 3D volume is needed"));
  }
  const int64_t nvox3 = nx * ny * nz;
  if (nvox3 > (int64_t{1} << 31)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": implausibly large volume (", nvox3, " voxels)"));
  }
  if (nifti_image_load(nim.get()) < 0 || nim->data == nullptr) {
    return DiagnoseData(path, static_cast<int64_t>(nim->iname_offset) + nim->nvox * nim->nbyper);
  }
  NiftiArray out;
  GCL_RETURN_IF_ERROR(gcl::CatchToStatus(path, [&]() -> absl::Status {
    at::Tensor data = at::empty({nz, ny, nx}, at::kDouble);
    // Channel 0 = the first nx*ny*nz voxels (t is slower than x, y, z).
    GCL_RETURN_IF_ERROR(ConvertData(nim.get(), path, nvox3, data.data_ptr<double>()));
    const double slope = nim->scl_slope, inter = nim->scl_inter;
    if (slope != 0.0 && std::isfinite(slope) && std::isfinite(inter) && (slope != 1.0 || inter != 0.0)) {
      data.mul_(slope).add_(inter);
    }
    out.data = data;
    return absl::OkStatus();
  }));
  for (int i = 0; i < 3; ++i) out.pixdim_ijk[i] = std::abs(nim->pixdim[i + 1]);
  if (ndim == 2) out.pixdim_ijk[2] = out.pixdim_ijk[2] > 0 ? out.pixdim_ijk[2] : 1.0;
  out.from_sform = nim->sform_code > 0;
  out.voxel_to_world = FromDmat(out.from_sform ? nim->sto_xyz : nim->qto_xyz);
  return out;
}

std::string NiftiStem(const std::string& path) {
  std::string name = fs::path(path).filename().string();
  if (EndsWith(name, ".nii.gz")) return name.substr(0, name.size() - 7);
  if (EndsWith(name, ".nii")) return name.substr(0, name.size() - 4);
  return name;
}

void CaseAndPhaseFromId(const std::string& id, std::string* case_id, int* phase) {
  *case_id = id;
  *phase = -1;
  const size_t pos = id.rfind("_frame");
  if (pos == std::string::npos || pos == 0) return;
  const std::string num = id.substr(pos + 6);
  if (num.empty() || !std::all_of(num.begin(), num.end(), [](char c) { return c >= '0' && c <= '9'; })) return;
  *case_id = id.substr(0, pos);
  const int frame = std::stoi(num);
  *phase = frame == 1 ? 0 : frame == 2 ? 1 : -1;
}

absl::StatusOr<Volume> ReadNiftiVolume(const std::string& image_path, const std::string& label_path,
                                       ExtraDims extra) {
  GCL_ASSIGN_OR_RETURN(NiftiArray image, ReadNiftiArray(image_path, extra));
  Volume v;
  v.id = NiftiStem(image_path);
  CaseAndPhaseFromId(v.id, &v.case_id, &v.phase);
  v.source = image_path;
  const SliceAxis axis = SliceAxisFromAffine(image.voxel_to_world);
  v.spacing_zyx = SpacingZyx(image.pixdim_ijk, axis);
  v.image = OrientToSlices(image.data, axis).to(at::kFloat);
  if (!label_path.empty()) {
    GCL_ASSIGN_OR_RETURN(NiftiArray label, ReadNiftiArray(label_path, ExtraDims::kError));
    if (label.data.sizes() != image.data.sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "label ", label_path, " has shape [", absl::StrJoin(label.data.sizes().vec(), ", "),
          "] (k, j, i) but image ", image_path, " has [", absl::StrJoin(image.data.sizes().vec(), ", "), "]"));
    }
    v.label = OrientToSlices(label.data.round(), axis).to(at::kLong);
    v.source = absl::StrCat(image_path, " + ", label_path);
  }
  return v;
}

absl::Status WriteNiftiArray(const std::string& path, const at::Tensor& kji_in,
                             const std::array<double, 3>& pixdim_ijk, const Affine& a, bool is_label,
                             bool with_sform) {
  return gcl::CatchToStatus(path, [&]() -> absl::Status {
    if (kji_in.dim() != 3 && kji_in.dim() != 4) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": expected a 3D or 4D array, got ", kji_in.dim(), "D"));
    }
    at::Tensor kji = kji_in.cpu().contiguous();
    int datatype = DT_FLOAT32;
    at::ScalarType st = at::kFloat;
    if (is_label) {
      kji = kji.round().to(at::kLong);
      const bool small = kji.numel() == 0 || (kji.min().item<int64_t>() >= 0 && kji.max().item<int64_t>() <= 255);
      datatype = small ? DT_UINT8 : DT_INT32;
      st = small ? at::kByte : at::kInt;
    }
    kji = kji.to(st).contiguous();
    const int64_t nd = kji.dim();
    int64_t dims[8] = {nd, kji.size(nd - 1), kji.size(nd - 2), kji.size(nd - 3), nd == 4 ? kji.size(0) : 1, 1, 1, 1};
    NimPtr nim(nifti_make_new_nim(dims, datatype, /*data_fill=*/1));
    if (!nim) return absl::InternalError(absl::StrCat(path, ": nifti_make_new_nim failed"));
    std::memcpy(nim->data, kji.data_ptr(), static_cast<size_t>(kji.numel()) * kji.element_size());
    for (int i = 0; i < 3; ++i) nim->pixdim[i + 1] = pixdim_ijk[i] > 0 ? pixdim_ijk[i] : 1.0;
    nim->dx = nim->pixdim[1];
    nim->dy = nim->pixdim[2];
    nim->dz = nim->pixdim[3];
    nim->xyz_units = NIFTI_UNITS_MM;
    nifti_dmat44 m{};
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) m.m[r][c] = a[r][c];
    m.m[3][3] = 1.0;
    nim->qform_code = NIFTI_XFORM_SCANNER_ANAT;
    nim->qto_xyz = m;
    double dx, dy, dz;
    nifti_dmat44_to_quatern(m, &nim->quatern_b, &nim->quatern_c, &nim->quatern_d, &nim->qoffset_x,
                            &nim->qoffset_y, &nim->qoffset_z, &dx, &dy, &dz, &nim->qfac);
    nim->sform_code = with_sform ? NIFTI_XFORM_SCANNER_ANAT : 0;
    nim->sto_xyz = m;
    return WriteNim(nim.get(), path);
  });
}

absl::Status WriteNiftiVolume(const std::string& path, const at::Tensor& zyx, std::array<double, 3> spacing_zyx,
                              bool is_label) {
  if (!zyx.defined() || zyx.dim() != 3) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": WriteNiftiVolume needs an [S, H, W] tensor"));
  }
  const std::array<double, 3> pix = {spacing_zyx[2] > 0 ? spacing_zyx[2] : 1.0,
                                     spacing_zyx[1] > 0 ? spacing_zyx[1] : 1.0,
                                     spacing_zyx[0] > 0 ? spacing_zyx[0] : 1.0};
  Affine a{};
  for (int i = 0; i < 3; ++i) a[i][i] = pix[i];
  return WriteNiftiArray(path, zyx, pix, a, is_label, /*with_sform=*/true);
}

absl::Status WriteDatasetAsNifti(const std::vector<Volume>& volumes, const std::string& dir) {
  std::error_code ec;
  const fs::path images = fs::path(dir) / "imagesTr", labels = fs::path(dir) / "labelsTr";
  fs::create_directories(images, ec);
  if (!ec) fs::create_directories(labels, ec);
  if (ec) return absl::InternalError(absl::StrCat(dir, ": cannot create folders (", ec.message(), ")"));
  for (const Volume& v : volumes) {
    if (v.id.empty()) return absl::InvalidArgumentError("WriteDatasetAsNifti: volume without id");
    GCL_RETURN_IF_ERROR(WriteNiftiVolume((images / (v.id + ".nii.gz")).string(), v.image, v.spacing_zyx, false));
    if (v.label.defined()) {
      GCL_RETURN_IF_ERROR(WriteNiftiVolume((labels / (v.id + ".nii.gz")).string(), v.label, v.spacing_zyx, true));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<NiftiPair>> FindNiftiPairs(const std::string& root_str) {
  const fs::path root(root_str);
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return absl::NotFoundError(absl::StrCat(root_str, ": no such folder"));
  fs::path image_dir, label_dir;
  bool flat = false;
  if (fs::is_directory(root / "imagesTr", ec)) {
    image_dir = root / "imagesTr";
    label_dir = root / "labelsTr";
  } else if (fs::is_directory(root / "images", ec)) {
    image_dir = root / "images";
    label_dir = root / "labels";
  } else {
    image_dir = label_dir = root;
    flat = true;
  }
  GCL_ASSIGN_OR_RETURN(std::vector<std::string> names, ListNifti(image_dir));
  const bool have_labels = fs::is_directory(label_dir, ec);
  std::vector<NiftiPair> pairs;
  for (const std::string& name : names) {
    NiftiPair p;
    p.id = NiftiStem(name);
    if (flat && HasLabelSuffix(p.id)) continue;
    p.image = (image_dir / name).string();
    if (have_labels) p.label = FindLabel(label_dir, p.id, p.image);
    pairs.push_back(std::move(p));
  }
  if (pairs.empty()) return absl::NotFoundError(absl::StrCat(image_dir.string(), ": no NIfTI images (*.nii[.gz])"));
  std::sort(pairs.begin(), pairs.end(), [](const NiftiPair& a, const NiftiPair& b) { return a.id < b.id; });
  return pairs;
}

}  // namespace gcl::core
