// Synthetic cardiac-like short-axis phantoms (architecture.md section 6) whose
// meta labels mean something, for tests and CPU-scale experiments without
// real data.
#pragma once

#include <vector>

#include "worker/gcl/data/dataset.h"
#include "worker/gcl/data/volume.h"

namespace gcl::core {

// Label values of the phantom (ACDC's convention).
inline constexpr int64_t kSyntheticBackground = 0;
inline constexpr int64_t kSyntheticRv = 1;
inline constexpr int64_t kSyntheticMyo = 2;
inline constexpr int64_t kSyntheticLv = 3;

// Generates options.patients patients. Each has a per-patient centre,
// ellipticity, orientation, sizes and tissue intensities; a ring-shaped
// myocardium (label 2) around an LV cavity (3) and a crescent RV (1) on one
// side; structure sizes shrink from base (slice 0) to apex (slice S-1); at ES
// the cavities are smaller and the wall thicker than at ED. The image has
// Gaussian noise and a smooth multiplicative bias field and is clipped to
// [0, 1].
//
// Returns 2 volumes per patient, ED (phase 0) first then ES (phase 1):
// id "syn%03d_frame01" / "syn%03d_frame02", case_id "syn%03d" (1-based patient
// number, like ACDC's patient001), image float32 [slices, size, size] in
// [0, 1], label int64 [slices, size, size], spacing_zyx {8, 1.5, 1.5}.
// Deterministic in options.seed: patient p draws only from
// StreamSeed(seed, RngStream::kSynthetic, p), so patient p does not depend on
// options.patients.
// REQUIRES: patients >= 1, slices >= 1, size >= 16 (throws c10::Error otherwise).
std::vector<Volume> GenerateSyntheticVolumes(const SyntheticOptions& options);

}  // namespace gcl::core
