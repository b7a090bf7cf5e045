#include "worker/gcl/data/sampler.h"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/gcl/data/rng.h"

namespace gcl::core {
namespace {

constexpr int64_t kPositions = 4;
// Separates the per-step slice draws from the per-epoch permutations, which
// share the kSampler stream.
constexpr uint64_t kSliceDrawSalt = 0x5a17ce11d7a3b00bULL;

// Uniform integer in [0, n) from mt19937_64's portable output
// (std::uniform_int_distribution is implementation-defined); the modulo bias
// is below n / 2^64.
uint64_t Below(std::mt19937_64& gen, uint64_t n) { return gen() % n; }

}  // namespace

absl::StatusOr<PretrainSampler> PretrainSampler::Create(std::vector<SliceRef> slices,
                                                        SamplerOptions options) {
  if (slices.empty()) return absl::InvalidArgumentError("sampler: no slices");
  if (options.batch_slices <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampler: batch_slices must be positive, got ", options.batch_slices));
  }
  for (const SliceRef& s : slices) {
    if (s.position < 0 || s.position >= kPositions) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampler: slice position ", s.position, " outside [0, 3]"));
    }
  }

  // Phase mode only when every patient has both ED and ES slices.
  std::map<int32_t, std::set<int32_t>> phases_of;
  for (const SliceRef& s : slices) phases_of[s.patient].insert(s.phase);
  bool phase_mode = options.use_phase;
  for (const auto& [patient, phases] : phases_of) {
    if (!phases.count(0) || !phases.count(1)) phase_mode = false;
  }

  PretrainSampler sampler;
  sampler.options_ = options;
  sampler.groups_per_unit_ = phase_mode ? 2 : 1;
  const int64_t per_unit = sampler.groups_per_unit_ * kPositions;
  if (options.batch_slices % per_unit != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampler: batch_slices ", options.batch_slices, " is not a multiple of ", per_unit,
        phase_mode ? " (patients x 2 phases x 4 positions)" : " (volumes x 4 positions)"));
  }
  sampler.units_per_batch_ = options.batch_slices / per_unit;

  // Dense unit index in order of first appearance (patients or volumes).
  std::map<int32_t, int32_t> unit_of;
  for (const SliceRef& s : slices) {
    const int32_t id = phase_mode ? s.patient : s.volume;
    if (unit_of.emplace(id, static_cast<int32_t>(sampler.unit_ids_.size())).second) {
      sampler.unit_ids_.push_back(id);
    }
  }
  sampler.num_units_ = static_cast<int64_t>(sampler.unit_ids_.size());
  const char* unit_name = phase_mode ? "patients" : "volumes";
  if (sampler.units_per_batch_ < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampler: batch_slices ", options.batch_slices, " gives ", sampler.units_per_batch_,
        " ", unit_name, " per batch; need at least 2 so that positions have positives"));
  }
  if (sampler.units_per_batch_ > sampler.num_units_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampler: batch_slices ", options.batch_slices, " needs ", sampler.units_per_batch_,
        " ", unit_name, " per batch but the data has only ", sampler.num_units_));
  }
  sampler.steps_per_epoch_ = sampler.num_units_ / sampler.units_per_batch_;

  const int64_t groups = sampler.groups_per_unit_;
  sampler.cells_.assign(sampler.num_units_ * groups * kPositions, {});
  for (size_t i = 0; i < slices.size(); ++i) {
    const SliceRef& s = slices[i];
    const int64_t unit = unit_of.at(phase_mode ? s.patient : s.volume);
    const int64_t group = phase_mode ? s.phase : 0;
    sampler.cells_[(unit * groups + group) * kPositions + s.position].push_back(
        static_cast<int32_t>(i));
  }
  // Empty cells borrow the nearest non-empty position (lower one on ties).
  // Every (unit, group) has at least one slice by construction.
  std::vector<std::vector<int32_t>> filled = sampler.cells_;
  for (int64_t ug = 0; ug < sampler.num_units_ * groups; ++ug) {
    for (int64_t q = 0; q < kPositions; ++q) {
      if (!filled[ug * kPositions + q].empty()) continue;
      for (int64_t d = 1; d < kPositions; ++d) {
        if (q - d >= 0 && !sampler.cells_[ug * kPositions + q - d].empty()) {
          filled[ug * kPositions + q] = sampler.cells_[ug * kPositions + q - d];
          break;
        }
        if (q + d < kPositions && !sampler.cells_[ug * kPositions + q + d].empty()) {
          filled[ug * kPositions + q] = sampler.cells_[ug * kPositions + q + d];
          break;
        }
      }
    }
  }
  sampler.cells_ = std::move(filled);
  sampler.slices_ = std::move(slices);
  return sampler;
}

int64_t PretrainSampler::slice_epoch_steps() const {
  const int64_t n = static_cast<int64_t>(slices_.size());
  return (n + options_.batch_slices - 1) / options_.batch_slices;
}

std::vector<int32_t> PretrainSampler::UnitIndicesAt(int64_t step) const {
  const int64_t epoch = step / steps_per_epoch_;
  const int64_t within = step % steps_per_epoch_;
  // Fisher-Yates over unit indices, seeded by the epoch only.
  std::vector<int32_t> perm(num_units_);
  for (int64_t i = 0; i < num_units_; ++i) perm[i] = static_cast<int32_t>(i);
  std::mt19937_64 gen(
      StreamSeed(options_.seed, RngStream::kSampler, static_cast<uint64_t>(epoch)));
  for (int64_t i = num_units_ - 1; i > 0; --i) {
    std::swap(perm[i], perm[Below(gen, static_cast<uint64_t>(i + 1))]);
  }
  return std::vector<int32_t>(perm.begin() + within * units_per_batch_,
                              perm.begin() + (within + 1) * units_per_batch_);
}

std::vector<int32_t> PretrainSampler::UnitsAt(int64_t step) const {
  std::vector<int32_t> units = UnitIndicesAt(step);
  for (int32_t& u : units) u = unit_ids_[u];
  return units;
}

std::vector<SliceRef> PretrainSampler::BatchAt(int64_t step) const {
  const std::vector<int32_t> units = UnitIndicesAt(step);
  std::mt19937_64 gen(StreamSeed(options_.seed ^ kSliceDrawSalt, RngStream::kSampler,
                                 static_cast<uint64_t>(step)));
  std::vector<SliceRef> batch;
  batch.reserve(options_.batch_slices);
  for (int32_t unit : units) {
    for (int64_t group = 0; group < groups_per_unit_; ++group) {
      for (int64_t q = 0; q < kPositions; ++q) {
        const auto& cell = cells_[(unit * groups_per_unit_ + group) * kPositions + q];
        batch.push_back(slices_[cell[Below(gen, cell.size())]]);
      }
    }
  }
  return batch;
}

}  // namespace gcl::core
