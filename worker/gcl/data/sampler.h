// Pre-training batch sampler (spec 2.3): batches built by patient, phase and
// position partition so that every anchor has positives for every meta label.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/gcl/data/meta_labels.h"

namespace gcl::core {

struct SamplerOptions {
  int64_t batch_slices = 32;  // B; the step has 2B views
  uint64_t seed = 1;          // run seed
  bool use_phase = true;      // group by (patient, phase) when the data allows
};

// Two modes, chosen by Create:
//  * phase mode (use_phase and every patient has ED and ES slices): a unit is a
//    patient; per unit, 2 phases x 4 positions = 8 slices (ACDC: 4 patients,
//    B = 32).
//  * volume mode (otherwise): a unit is a volume; 4 positions per unit
//    (Prostate, MMWHS: 8 volumes, B = 32).
// A batch holds units_per_batch() >= 2 distinct units, so every slice has a
// positive other than itself for patient (same unit), position (other unit)
// and phase (same unit, other position).
//
// Epochs: units are drawn without replacement from a permutation per epoch
// (seeded by StreamSeed(seed, kSampler, epoch)); an epoch is
// steps_per_epoch() = floor(#units / units_per_batch) steps, the leftover
// units of the permutation are skipped in that epoch. Note this is shorter
// than the spec's nominal ceil(#slices / B) (slice_epoch_steps()), in which
// patients necessarily repeat.
class PretrainSampler {
 public:
  // REQUIRES: batch_slices > 0 and batch_slices % 8 == 0 in phase mode,
  // batch_slices % 4 == 0 in volume mode; at least 2 and at most #units units
  // per batch. Returns kInvalidArgument naming the problem otherwise (also for
  // empty `slices`).
  static absl::StatusOr<PretrainSampler> Create(std::vector<SliceRef> slices,
                                                SamplerOptions options);

  // The batch for training step `step` (REQUIRES step >= 0): a pure function of (seed, step),
  // independent of call order. batch_slices SliceRefs, unit-major, then phase
  // (phase mode: 0 then 1), then position 0..3. Within each (unit, phase,
  // position) cell the slice is uniform, seeded by (seed, step); an empty cell
  // (volume with < 4 slices) borrows from the nearest non-empty position of
  // the same unit and phase, so its SliceRef's position field is that
  // slice's true position.
  std::vector<SliceRef> BatchAt(int64_t step) const;

  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  // The spec's nominal epoch, ceil(#slices / batch_slices).
  int64_t slice_epoch_steps() const;
  int64_t units_per_batch() const { return units_per_batch_; }
  int64_t num_units() const { return num_units_; }
  bool phase_mode() const { return groups_per_unit_ == 2; }
  // Units of step `step` in batch order (patient indices in phase mode, volume
  // indices in volume mode).
  std::vector<int32_t> UnitsAt(int64_t step) const;

 private:
  PretrainSampler() = default;
  // Dense unit indices (into unit_ids_) of step `step`.
  std::vector<int32_t> UnitIndicesAt(int64_t step) const;

  std::vector<SliceRef> slices_;
  SamplerOptions options_;
  int64_t num_units_ = 0;
  int64_t groups_per_unit_ = 1;  // 2 in phase mode
  int64_t units_per_batch_ = 0;
  int64_t steps_per_epoch_ = 0;
  std::vector<int32_t> unit_ids_;  // unit index -> patient or volume id
  // cells_[(unit * groups + group) * 4 + position] -> indices into slices_
  // (already redirected to the nearest position when empty).
  std::vector<std::vector<int32_t>> cells_;
};

}  // namespace gcl::core
