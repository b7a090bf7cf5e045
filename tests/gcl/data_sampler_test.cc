// Pre-training batch sampler (spec 2.3).
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "worker/gcl/data/meta_labels.h"
#include "worker/gcl/data/sampler.h"

namespace gcl::core {
namespace {

using ::gcl::testing::StatusIs;

// ACDC-like refs: `patients` patients x 2 phases, `slices` slices each;
// volume index = 2 * patient + phase.
std::vector<SliceRef> AcdcLike(int patients, int slices) {
  std::vector<SliceRef> refs;
  for (int p = 0; p < patients; ++p) {
    for (int ph = 0; ph < 2; ++ph) {
      for (int s = 0; s < slices; ++s) {
        refs.push_back({2 * p + ph, s, p, PositionQuantile(s, slices), ph});
      }
    }
  }
  return refs;
}

// Prostate-like: one volume per patient, no phase; slice counts vary.
std::vector<SliceRef> VolumesOnly(const std::vector<int>& slice_counts) {
  std::vector<SliceRef> refs;
  for (size_t v = 0; v < slice_counts.size(); ++v) {
    for (int s = 0; s < slice_counts[v]; ++s) {
      refs.push_back({static_cast<int32_t>(v), s, static_cast<int32_t>(v),
                      PositionQuantile(s, slice_counts[v]), -1});
    }
  }
  return refs;
}

// Every slice has another slice in the batch with the same label, per label.
void ExpectPositivesForEveryAnchor(const std::vector<SliceRef>& batch, bool check_phase) {
  for (size_t a = 0; a < batch.size(); ++a) {
    bool patient = false, position = false, phase = false;
    for (size_t b = 0; b < batch.size(); ++b) {
      if (a == b) continue;
      patient |= batch[a].patient == batch[b].patient;
      position |= batch[a].position == batch[b].position;
      phase |= batch[a].phase == batch[b].phase;
    }
    EXPECT_TRUE(patient) << "anchor " << a;
    EXPECT_TRUE(position) << "anchor " << a;
    if (check_phase) {
      EXPECT_TRUE(phase) << "anchor " << a;
    }
  }
}

TEST(SamplerTest, AcdcBatchLayoutAndPositives) {
  GCL_ASSERT_OK_AND_ASSIGN(auto sampler, PretrainSampler::Create(AcdcLike(10, 9), {}));
  EXPECT_TRUE(sampler.phase_mode());
  EXPECT_EQ(sampler.units_per_batch(), 4);
  EXPECT_EQ(sampler.steps_per_epoch(), 2);       // floor(10 / 4)
  EXPECT_EQ(sampler.slice_epoch_steps(), 6);     // ceil(180 / 32)
  for (int64_t step = 0; step < 6; ++step) {
    const auto batch = sampler.BatchAt(step);
    ASSERT_EQ(batch.size(), 32u);
    // Patient-major, then phase, then position 0..3.
    std::set<int32_t> patients;
    for (int u = 0; u < 4; ++u) {
      const int32_t patient = batch[8 * u].patient;
      patients.insert(patient);
      for (int ph = 0; ph < 2; ++ph) {
        for (int q = 0; q < 4; ++q) {
          const SliceRef& r = batch[8 * u + 4 * ph + q];
          EXPECT_EQ(r.patient, patient);
          EXPECT_EQ(r.phase, ph);
          EXPECT_EQ(r.position, q);
          EXPECT_EQ(r.volume, 2 * patient + ph);
          EXPECT_EQ(PositionQuantile(r.slice, 9), q);
        }
      }
    }
    EXPECT_EQ(patients.size(), 4u) << "distinct patients per batch";
    ExpectPositivesForEveryAnchor(batch, /*check_phase=*/true);
  }
}

TEST(SamplerTest, PositiveCountsMatchSpec) {
  GCL_ASSERT_OK_AND_ASSIGN(auto sampler, PretrainSampler::Create(AcdcLike(6, 10), {}));
  const auto batch = sampler.BatchAt(3);
  // Spec 2.3: 15 (patient), 15 (position), 31 (phase) positives per view
  // among the N = 64 views; per slice that is 7, 7, 15 other slices.
  for (size_t a = 0; a < batch.size(); ++a) {
    int patient = 0, position = 0, phase = 0;
    for (size_t b = 0; b < batch.size(); ++b) {
      if (a == b) continue;
      patient += batch[a].patient == batch[b].patient;
      position += batch[a].position == batch[b].position;
      phase += batch[a].phase == batch[b].phase;
    }
    EXPECT_EQ(2 * patient + 1, 15);
    EXPECT_EQ(2 * position + 1, 15);
    EXPECT_EQ(2 * phase + 1, 31);
  }
}

TEST(SamplerTest, DeterministicAndOrderIndependent) {
  const auto refs = AcdcLike(12, 8);
  GCL_ASSERT_OK_AND_ASSIGN(auto a, PretrainSampler::Create(refs, {32, 99, true}));
  GCL_ASSERT_OK_AND_ASSIGN(auto b, PretrainSampler::Create(refs, {32, 99, true}));
  std::vector<std::vector<SliceRef>> forward;
  for (int64_t k = 0; k < 10; ++k) forward.push_back(a.BatchAt(k));
  for (int64_t k = 9; k >= 0; --k) EXPECT_EQ(b.BatchAt(k), forward[k]) << k;
  EXPECT_EQ(a.BatchAt(4), forward[4]);  // repeated calls agree
  // Different steps differ; a different seed differs.
  for (int64_t k = 1; k < 10; ++k) EXPECT_NE(forward[k], forward[k - 1]) << k;
  GCL_ASSERT_OK_AND_ASSIGN(auto c, PretrainSampler::Create(refs, {32, 100, true}));
  int same = 0;
  for (int64_t k = 0; k < 10; ++k) same += c.BatchAt(k) == forward[k];
  EXPECT_LT(same, 2);
}

TEST(SamplerTest, PatientsWithoutReplacementWithinEpoch) {
  GCL_ASSERT_OK_AND_ASSIGN(auto sampler, PretrainSampler::Create(AcdcLike(13, 8), {32, 5}));
  const int64_t spe = sampler.steps_per_epoch();
  ASSERT_EQ(spe, 3);  // floor(13 / 4); one patient sits out each epoch
  std::vector<std::set<int32_t>> seen_by_epoch;
  for (int64_t epoch = 0; epoch < 4; ++epoch) {
    std::set<int32_t> seen;
    for (int64_t k = epoch * spe; k < (epoch + 1) * spe; ++k) {
      const auto units = sampler.UnitsAt(k);
      for (const SliceRef& r : sampler.BatchAt(k)) {
        EXPECT_NE(std::find(units.begin(), units.end(), r.patient), units.end());
      }
      for (int32_t u : units) EXPECT_TRUE(seen.insert(u).second) << "patient " << u
                                                                 << " twice in epoch " << epoch;
    }
    EXPECT_EQ(seen.size(), 12u);
    seen_by_epoch.push_back(seen);
  }
  // Epochs use different permutations.
  std::set<std::vector<int32_t>> first_batches;
  for (int64_t epoch = 0; epoch < 4; ++epoch) first_batches.insert(sampler.UnitsAt(epoch * spe));
  EXPECT_GT(first_batches.size(), 1u);
}

TEST(SamplerTest, SlicesCoverEveryCellUniformly) {
  // 2 patients only: every batch has both; each (patient, phase, position)
  // cell of 3 slices (S = 12) should see all 3 slices about equally often.
  GCL_ASSERT_OK_AND_ASSIGN(auto sampler, PretrainSampler::Create(AcdcLike(2, 12), {16, 3}));
  std::map<std::tuple<int, int>, int> count;  // (volume, slice)
  const int steps = 600;
  for (int k = 0; k < steps; ++k) {
    for (const SliceRef& r : sampler.BatchAt(k)) ++count[{r.volume, r.slice}];
  }
  ASSERT_EQ(count.size(), 48u);
  for (const auto& [key, n] : count) {
    EXPECT_NEAR(n, steps / 3.0, 60) << std::get<0>(key) << "/" << std::get<1>(key);
  }
}

TEST(SamplerTest, VolumeModeAndShortVolumesBorrow) {
  // Volume 2 has 3 slices: position 3 is empty and borrows from position 2.
  GCL_ASSERT_OK_AND_ASSIGN(auto sampler,
                           PretrainSampler::Create(VolumesOnly({8, 10, 3, 12}), {16, 1, true}));
  EXPECT_FALSE(sampler.phase_mode());  // no phases -> volume mode despite use_phase
  EXPECT_EQ(sampler.units_per_batch(), 4);
  EXPECT_EQ(sampler.steps_per_epoch(), 1);
  for (int64_t k = 0; k < 20; ++k) {
    const auto batch = sampler.BatchAt(k);
    ASSERT_EQ(batch.size(), 16u);
    std::set<int32_t> volumes;
    for (int u = 0; u < 4; ++u) {
      volumes.insert(batch[4 * u].volume);
      for (int q = 0; q < 4; ++q) {
        const SliceRef& r = batch[4 * u + q];
        EXPECT_EQ(r.volume, batch[4 * u].volume);
        if (r.volume == 2 && q == 3) {
          EXPECT_EQ(r.slice, 2);
          EXPECT_EQ(r.position, 2);
        } else {
          EXPECT_EQ(r.position, q);
        }
      }
    }
    EXPECT_EQ(volumes.size(), 4u);
    ExpectPositivesForEveryAnchor(batch, /*check_phase=*/false);
  }
}

TEST(SamplerTest, UsePhaseFalseGroupsByVolume) {
  GCL_ASSERT_OK_AND_ASSIGN(auto sampler, PretrainSampler::Create(AcdcLike(5, 8), {32, 1, false}));
  EXPECT_FALSE(sampler.phase_mode());
  EXPECT_EQ(sampler.units_per_batch(), 8);
  EXPECT_EQ(sampler.num_units(), 10);
  const auto batch = sampler.BatchAt(0);
  for (int u = 0; u < 8; ++u) {
    for (int q = 0; q < 4; ++q) EXPECT_EQ(batch[4 * u + q].volume, batch[4 * u].volume);
  }
}

TEST(SamplerTest, BadConfigurations) {
  using absl::StatusCode;
  EXPECT_THAT(PretrainSampler::Create(AcdcLike(8, 8), {20, 1, true}),
              StatusIs(StatusCode::kInvalidArgument, "multiple of 8"));
  EXPECT_THAT(PretrainSampler::Create(VolumesOnly({8, 8, 8}), {10, 1, true}),
              StatusIs(StatusCode::kInvalidArgument, "multiple of 4"));
  EXPECT_THAT(PretrainSampler::Create(AcdcLike(3, 8), {32, 1, true}),
              StatusIs(StatusCode::kInvalidArgument, "only 3"));
  EXPECT_THAT(PretrainSampler::Create(AcdcLike(3, 8), {8, 1, true}),
              StatusIs(StatusCode::kInvalidArgument, "at least 2"));
  EXPECT_THAT(PretrainSampler::Create({}, {32, 1, true}),
              StatusIs(StatusCode::kInvalidArgument, "no slices"));
  EXPECT_THAT(PretrainSampler::Create(AcdcLike(8, 8), {0, 1, true}),
              StatusIs(StatusCode::kInvalidArgument, "positive"));
}

}  // namespace
}  // namespace gcl::core
