// NIfTI-1/2 volumes (.nii, .nii.gz) via nifti_clib: reading with
// reorientation into [S, H, W] slices along world z, writing, and discovery
// of paired image/label folders (format "nifti", architecture.md section 4).
#pragma once

#include <array>
#include <string>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/gcl/data/volume.h"

namespace gcl::core {

// Voxel (i, j, k) -> world (x, y, z) in mm: rows x, y, z of the 4x4 affine.
using Affine = std::array<std::array<double, 4>, 3>;

// What to do with a 4D file whose 4th dimension is > 1 (dim[4] == 1 always
// counts as 3D; dims 5..7 must be 1).
enum class ExtraDims {
  kError,         // kInvalidArgument: "4D image ... where 3D is needed"
  kFirstChannel,  // keep t = 0 (MSD multi-modal images: channel 0)
};

// The array as stored in the file, before reorientation.
struct NiftiArray {
  // float64 [nk, nj, ni]: C order of NIfTI's i-fastest storage, after
  // scl_slope / scl_inter (applied when slope != 0) and channel selection.
  at::Tensor data;
  std::array<double, 3> pixdim_ijk{0.0, 0.0, 0.0};  // |pixdim[1..3]| in mm
  Affine voxel_to_world{};  // sform when sform_code > 0, else qform
  bool from_sform = false;
};

// Which voxel axis becomes the slice axis S, and whether it is reversed.
struct SliceAxis {
  int axis = 2;       // voxel axis 0 = i, 1 = j, 2 = k
  bool flip = false;  // true when world z decreases along `axis`
};

// The voxel axis whose direction (affine column) has the largest |z| component
// relative to its length; ties prefer k, then j. flip = that component < 0.
SliceAxis SliceAxisFromAffine(const Affine& voxel_to_world);

// [nk, nj, ni] -> [S, H, W]: S = `slice` axis (reversed when flip, so slice
// index grows with world z), H and W = the two other voxel axes in storage
// order (the slower one is H). k-slicing therefore gives [k, j, i].
at::Tensor OrientToSlices(const at::Tensor& kji, SliceAxis slice);

// pixdim of the (S, H, W) axes; all zeros when any pixdim is 0 or not finite.
std::array<double, 3> SpacingZyx(const std::array<double, 3>& pixdim_ijk, SliceAxis slice);

// Reads one file. Errors name `path`: kNotFound (missing file), kInvalidArgument
// (not NIfTI / bad magic, unsupported datatype such as RGB or complex, 4D
// under ExtraDims::kError, more than 4 dimensions), kDataLoss (truncated
// header or data, corrupt gzip stream). Never prints (debug level 0), never
// aborts. Thread-compatible (nifti_clib keeps a global debug level only).
absl::StatusOr<NiftiArray> ReadNiftiArray(const std::string& path,
                                          ExtraDims extra = ExtraDims::kError);

// Reads an image (float32) and optionally its label map (int64, values
// rounded; empty label_path: unlabelled) as a Volume sliced along world z
// (SliceAxisFromAffine of the IMAGE header, applied to both files).
// The label's spatial dims must equal the image's (kInvalidArgument naming
// both files otherwise). id = file name without .nii/.nii.gz; case_id / phase
// from the id: "<case>_frame01" -> phase 0, "<case>_frame02" -> phase 1,
// other "<case>_frameNN" -> phase -1; no "_frame": case_id = id, phase -1.
absl::StatusOr<Volume> ReadNiftiVolume(const std::string& image_path,
                                       const std::string& label_path = "",
                                       ExtraDims extra = ExtraDims::kError);

// Splits "<case>_frameNN" as described above.
void CaseAndPhaseFromId(const std::string& id, std::string* case_id, int* phase);

// File name without directory and without ".nii.gz" / ".nii".
std::string NiftiStem(const std::string& path);

// Writes [S, H, W] as a NIfTI-1 file (.nii.gz compressed, .nii plain, by
// extension) with voxel axes i = W, j = H, k = S, pixdim = spacing (1 mm where
// unknown), qform and sform = diag(spacing) (codes 1). Labels (is_label) are
// stored as uint8 when all values are in [0, 255], else int32; images as
// float32. Atomic: written to a temporary name in the same folder, then renamed.
absl::Status WriteNiftiVolume(const std::string& path, const at::Tensor& zyx,
                              std::array<double, 3> spacing_zyx, bool is_label);

// Lower level: writes a storage-order array [nk, nj, ni] or [nt, nk, nj, ni]
// with the given affine as qform (code 1) and, when with_sform, also as sform
// (code 1; otherwise sform_code 0). The affine's rotation part must be
// orthogonal up to column scaling for the qform to represent it.
absl::Status WriteNiftiArray(const std::string& path, const at::Tensor& kji,
                             const std::array<double, 3>& pixdim_ijk, const Affine& voxel_to_world,
                             bool is_label, bool with_sform = true);

// Writes dir/imagesTr/<id>.nii.gz and, for labelled volumes,
// dir/labelsTr/<id>.nii.gz, so that LoadDataset({format: "nifti", path: dir})
// reads them back (ids "<case>_frame01/02" keep case and phase).
absl::Status WriteDatasetAsNifti(const std::vector<Volume>& volumes, const std::string& dir);

// One image file and its label file ("" when none was found).
struct NiftiPair {
  std::string id;     // NiftiStem(image)
  std::string image;  // full path
  std::string label;  // full path or ""
};

// Pairs images with labels under `root`, first layout found wins:
//   root/imagesTr + root/labelsTr, then root/images + root/labels, then the
//   flat folder root itself (label files are those whose stem ends in a label
//   suffix).
// Rule: the label of image <stem>.nii[.gz] is the first existing file among
// <stem>, <stem>_segmentation, <stem>_label, <stem>_gt, <stem>_seg (each
// .nii.gz then .nii) in the label folder. Hidden files and "._*" (macOS
// resource forks, common in MSD archives) are skipped. Images without a label
// are returned with label "". Sorted by id. kNotFound when root is missing or
// holds no NIfTI image.
absl::StatusOr<std::vector<NiftiPair>> FindNiftiPairs(const std::string& root);

}  // namespace gcl::core
