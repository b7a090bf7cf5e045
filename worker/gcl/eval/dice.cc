#include "worker/gcl/eval/dice.h"

#include <cmath>
#include <limits>

#include <c10/util/Exception.h>

#include "worker/gcl/eval/hd95.h"

namespace gcl::core {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double MeanOfValid(const std::vector<double>& values) {
  double sum = 0;
  int64_t n = 0;
  for (double v : values) {
    if (std::isnan(v)) continue;
    sum += v;
    ++n;
  }
  return n == 0 ? kNaN : sum / static_cast<double>(n);
}

}  // namespace

at::Tensor ConfusionMatrix(const at::Tensor& pred, const at::Tensor& ref, int64_t num_classes) {
  TORCH_CHECK(num_classes >= 1, "num_classes must be >= 1");
  TORCH_CHECK(pred.sizes() == ref.sizes(), "pred ", pred.sizes(), " and ref ", ref.sizes(),
              " differ in shape");
  TORCH_CHECK(!pred.is_floating_point() && !ref.is_floating_point(),
              "pred and ref must be integer label maps");
  at::Tensor p = pred.to(at::kLong).reshape({-1});
  at::Tensor r = ref.to(at::kLong).reshape({-1});
  if (p.numel() > 0) {
    TORCH_CHECK(p.min().item<int64_t>() >= 0 && p.max().item<int64_t>() < num_classes,
                "pred labels out of [0, ", num_classes, ")");
    TORCH_CHECK(r.min().item<int64_t>() >= 0 && r.max().item<int64_t>() < num_classes,
                "ref labels out of [0, ", num_classes, ")");
  }
  // One bincount instead of 2C mask passes.
  return at::bincount(r * num_classes + p, /*weights=*/{}, num_classes * num_classes)
      .reshape({num_classes, num_classes});
}

VolumeScore ScoreVolume(const at::Tensor& pred, const at::Tensor& ref, int64_t num_classes,
                        std::array<double, 3> spacing_zyx, bool compute_hd95) {
  TORCH_CHECK(pred.dim() == 3, "ScoreVolume expects [S, H, W] label maps, got ", pred.sizes());
  at::Tensor cm = ConfusionMatrix(pred, ref, num_classes).contiguous();
  const int64_t* m = cm.data_ptr<int64_t>();
  VolumeScore out;
  out.hd95_unit = Hd95Unit(spacing_zyx);
  std::vector<double> dices, hds;
  for (int64_t c = 1; c < num_classes; ++c) {
    ClassScore cs;
    for (int64_t k = 0; k < num_classes; ++k) {
      cs.n_ref += m[c * num_classes + k];
      cs.n_pred += m[k * num_classes + c];
    }
    cs.n_intersection = m[c * num_classes + c];
    const int64_t denom = cs.n_ref + cs.n_pred;
    if (denom > 0) {  // empty-mask rule: absent from both -> skipped
      cs.dice_valid = true;
      cs.dice = 2.0 * static_cast<double>(cs.n_intersection) / static_cast<double>(denom);
      dices.push_back(cs.dice);
    } else {
      cs.dice = kNaN;
    }
    cs.hd95 = kNaN;
    if (compute_hd95 && cs.n_ref > 0 && cs.n_pred > 0) {
      cs.hd95 = Hd95(pred.eq(c), ref.eq(c), spacing_zyx);
      cs.hd95_valid = !std::isnan(cs.hd95);
      if (cs.hd95_valid) hds.push_back(cs.hd95);
    }
    out.classes.push_back(cs);
  }
  out.mean_dice = MeanOfValid(dices);
  out.mean_hd95 = MeanOfValid(hds);
  return out;
}

double MeanOverVolumes(const std::vector<VolumeScore>& cases, bool hd95) {
  std::vector<double> v;
  v.reserve(cases.size());
  for (const auto& c : cases) v.push_back(hd95 ? c.mean_hd95 : c.mean_dice);
  return MeanOfValid(v);
}

std::vector<double> PerClassMean(const std::vector<VolumeScore>& cases, int64_t num_classes,
                                 bool hd95) {
  std::vector<double> out;
  for (int64_t c = 1; c < num_classes; ++c) {
    std::vector<double> v;
    for (const auto& vs : cases) {
      if (static_cast<int64_t>(vs.classes.size()) < c) continue;
      const ClassScore& cs = vs.classes[c - 1];
      if (hd95 ? cs.hd95_valid : cs.dice_valid) v.push_back(hd95 ? cs.hd95 : cs.dice);
    }
    out.push_back(MeanOfValid(v));
  }
  return out;
}

void AccumulatedDice::Add(const at::Tensor& pred, const at::Tensor& ref, int64_t num_classes) {
  if (num_classes_ == 0) {
    num_classes_ = num_classes;
    intersection_.assign(num_classes, 0);
    sum_.assign(num_classes, 0);
  }
  TORCH_CHECK(num_classes == num_classes_, "AccumulatedDice: num_classes changed from ",
              num_classes_, " to ", num_classes);
  at::Tensor cm = ConfusionMatrix(pred, ref, num_classes).contiguous();
  const int64_t* m = cm.data_ptr<int64_t>();
  for (int64_t c = 0; c < num_classes; ++c) {
    intersection_[c] += m[c * num_classes + c];
    for (int64_t k = 0; k < num_classes; ++k) {
      sum_[c] += m[c * num_classes + k] + m[k * num_classes + c];
    }
  }
}

void AccumulatedDice::Add(const VolumeScore& score) {
  const auto num_classes = static_cast<int64_t>(score.classes.size()) + 1;
  if (num_classes_ == 0) {
    num_classes_ = num_classes;
    intersection_.assign(num_classes, 0);
    sum_.assign(num_classes, 0);
  }
  TORCH_CHECK(num_classes == num_classes_, "AccumulatedDice: num_classes changed from ",
              num_classes_, " to ", num_classes);
  for (int64_t c = 1; c < num_classes; ++c) {
    const ClassScore& cs = score.classes[c - 1];
    intersection_[c] += cs.n_intersection;
    sum_[c] += cs.n_ref + cs.n_pred;
  }
}

std::vector<double> AccumulatedDice::PerClass() const {
  std::vector<double> out;
  for (int64_t c = 1; c < num_classes_; ++c) {
    out.push_back(sum_[c] == 0
                      ? kNaN
                      : 2.0 * static_cast<double>(intersection_[c]) / static_cast<double>(sum_[c]));
  }
  return out;
}

double AccumulatedDice::Mean() const { return MeanOfValid(PerClass()); }

void AccumulatedDice::Reset() {
  num_classes_ = 0;
  intersection_.clear();
  sum_.clear();
}

}  // namespace gcl::core
