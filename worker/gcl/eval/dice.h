// Per-volume 3D Dice and HD95 (spec 8.1, protocol of GLCL) and PCL's
// dataset-level accumulated Dice.
//
// Dice of foreground class c on one volume: DSC_c = 2 |P_c ∩ G_c| / (|P_c| + |G_c|)
// with P_c = {pred == c}, G_c = {ref == c} over all S*H*W voxels.
//
// Empty-mask rule (explicit, as users of nnU-Net/MONAI expect):
//   * |P_c| + |G_c| == 0 (class absent from both): the class is SKIPPED for this
//     volume: dice_valid = hd95_valid = false; it enters no mean. (nnU-Net
//     writes NaN here; we write null in summary.json.)
//   * exactly one of P_c, G_c empty: Dice is valid and equals 0; HD95 is
//     undefined and skipped (hd95_valid = false), never 0 or infinity.
//   * both non-empty: both valid.
// mean_dice / mean_hd95 average the valid classes of the volume (NaN when none
// is valid). The spec-8.1 dataset number is then the mean of mean_dice over
// volumes (see MeanOverVolumes).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace gcl::core {

struct ClassScore {
  double dice = 0;  // NaN when !dice_valid
  double hd95 = 0;  // in VolumeScore::hd95_unit; NaN when !hd95_valid
  bool dice_valid = false;
  bool hd95_valid = false;
  int64_t n_ref = 0, n_pred = 0;  // voxel counts |G_c|, |P_c|
  int64_t n_intersection = 0;     // |P_c ∩ G_c|
};

struct VolumeScore {
  std::string case_id;
  std::vector<ClassScore> classes;  // index c-1 for foreground class c
  double mean_dice = 0;             // over valid classes; NaN when none
  double mean_hd95 = 0;             // over valid classes; NaN when none / not computed
  std::string hd95_unit;            // "mm" (spacing known) or "voxel"
};

// pred, ref: integer (int64 preferred) label maps [S, H, W] on CPU with values
// in [0, num_classes); num_classes includes background (class 0, not scored).
// spacing_zyx in mm; HD95 is in voxels when any entry is <= 0 (see hd95.h).
// compute_hd95 = false leaves every hd95_valid false and mean_hd95 NaN.
// Throws c10::Error on shape mismatch or labels out of range. case_id is left
// empty for the caller to fill.
VolumeScore ScoreVolume(const at::Tensor& pred, const at::Tensor& ref, int64_t num_classes,
                        std::array<double, 3> spacing_zyx, bool compute_hd95 = true);

// Mean over volumes of VolumeScore::mean_dice (or mean_hd95), ignoring NaN
// volumes (spec 8.1: classes first, then volumes). NaN when nothing is valid.
double MeanOverVolumes(const std::vector<VolumeScore>& cases, bool hd95 = false);

// Per foreground class c (index c-1): mean over volumes with a valid score.
// NaN for a class valid in no volume.
std::vector<double> PerClassMean(const std::vector<VolumeScore>& cases, int64_t num_classes,
                                 bool hd95 = false);

// Dataset-level accumulated Dice (PCL): per class, sum |P ∩ G| and |P| + |G|
// over every volume (or slice) added, DSC_c = 2 ΣI / Σ(|P|+|G|); Mean() over
// the foreground classes seen at least once.
class AccumulatedDice {
 public:
  // pred, ref as in ScoreVolume (any shape, equal). The first call fixes
  // num_classes; later calls must pass the same value.
  void Add(const at::Tensor& pred, const at::Tensor& ref, int64_t num_classes);
  // Same, from the counts ScoreVolume already computed (num_classes =
  // classes.size() + 1), so a scored volume need not be predicted again.
  void Add(const VolumeScore& score);
  // Size num_classes - 1 (foreground); NaN for a class never present.
  std::vector<double> PerClass() const;
  // Mean of the non-NaN PerClass() entries; NaN when none.
  double Mean() const;
  void Reset();

 private:
  int64_t num_classes_ = 0;
  std::vector<int64_t> intersection_;  // per class, background included
  std::vector<int64_t> sum_;           // |P| + |G| per class
};

// Confusion counts: returns int64 [num_classes, num_classes] with
// [r][p] = #voxels with ref == r and pred == p.
at::Tensor ConfusionMatrix(const at::Tensor& pred, const at::Tensor& ref, int64_t num_classes);

}  // namespace gcl::core
