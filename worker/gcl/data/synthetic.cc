#include "worker/gcl/data/synthetic.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <string>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>

#include "worker/gcl/data/rng.h"

namespace gcl::core {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Portable uniform in [lo, hi): std::uniform_real_distribution is
// implementation-defined, mt19937_64's raw output is not.
double Uniform(std::mt19937_64& gen, double lo, double hi) {
  return lo + (hi - lo) * static_cast<double>(gen() >> 11) * 0x1.0p-53;
}

// Per-patient anatomy and appearance, all lengths in pixels at ED base.
struct Patient {
  double cx, cy;         // LV centre
  double angle;          // orientation of the ellipse axes and of the RV side
  double aspect;         // ellipse axis ratio
  double lv_radius;      // ED base cavity radius
  double wall;           // ED base myocardial thickness
  double rv_radius;      // ED base RV radius
  double es_cavity;      // ES / ED cavity radius ratio
  double es_wall;        // ES / ED wall thickness ratio
  double es_rv;          // ES / ED RV radius ratio
  double apex_shrink;    // size at apex = (1 - apex_shrink) * size at base
  double body_radius;    // radius of the surrounding body ellipse
  double i_blood, i_myo, i_body, i_air;  // tissue intensities
  double noise_sigma;
  double bias_ax, bias_ay, bias_axy;     // bias field coefficients
};

Patient DrawPatient(std::mt19937_64& gen, double size) {
  Patient p;
  p.cx = size * (0.5 + Uniform(gen, -0.05, 0.05));
  p.cy = size * (0.5 + Uniform(gen, -0.05, 0.05));
  p.angle = Uniform(gen, -0.4, 0.4);
  p.aspect = Uniform(gen, 0.85, 1.15);
  p.lv_radius = size * Uniform(gen, 0.10, 0.14);
  p.wall = size * Uniform(gen, 0.045, 0.06);
  p.rv_radius = size * Uniform(gen, 0.15, 0.19);
  p.es_cavity = Uniform(gen, 0.6, 0.72);
  p.es_wall = Uniform(gen, 1.3, 1.5);
  p.es_rv = Uniform(gen, 0.7, 0.8);
  p.apex_shrink = Uniform(gen, 0.45, 0.6);
  p.body_radius = size * Uniform(gen, 0.40, 0.46);
  p.i_blood = Uniform(gen, 0.7, 0.9);
  p.i_myo = Uniform(gen, 0.25, 0.4);
  p.i_body = Uniform(gen, 0.12, 0.22);
  p.i_air = Uniform(gen, 0.0, 0.04);
  p.noise_sigma = Uniform(gen, 0.02, 0.045);
  p.bias_ax = Uniform(gen, -0.15, 0.15);
  p.bias_ay = Uniform(gen, -0.15, 0.15);
  p.bias_axy = Uniform(gen, -0.1, 0.1);
  return p;
}

// One volume (phase 0 = ED, 1 = ES) of patient `p`; `noise_gen` supplies the
// image noise.
void RenderVolume(const Patient& p, int phase, int64_t slices, int64_t size,
                  at::Generator& noise_gen, at::Tensor* image, at::Tensor* label) {
  const auto opts = at::TensorOptions().dtype(at::kFloat);
  // Pixel-centre coordinates relative to the LV centre, rotated into the
  // patient's frame; aspect stretches one axis.
  at::Tensor ys = at::arange(size, opts).add_(0.5).view({size, 1}).expand({size, size});
  at::Tensor xs = at::arange(size, opts).add_(0.5).view({1, size}).expand({size, size});
  const double c = std::cos(p.angle), s = std::sin(p.angle);
  at::Tensor dx = xs - p.cx, dy = ys - p.cy;
  at::Tensor u = (dx * c + dy * s) / std::sqrt(p.aspect);
  at::Tensor v = (dy * c - dx * s) * std::sqrt(p.aspect);
  at::Tensor r_lv = at::sqrt(u * u + v * v);
  // Body ellipse around the image centre.
  at::Tensor bx = (xs - 0.5 * size) / p.body_radius;
  at::Tensor by = (ys - 0.5 * size) / (0.85 * p.body_radius);
  at::Tensor body = (bx * bx + by * by) <= 1.0;
  // Bias field: smooth, positive, mean ~1 (normalised coordinates in [-1, 1]).
  at::Tensor nx = xs / (0.5 * size) - 1.0, ny = ys / (0.5 * size) - 1.0;
  at::Tensor bias = 1.0 + p.bias_ax * nx + p.bias_ay * ny + p.bias_axy * nx * ny;

  *image = at::empty({slices, size, size}, opts);
  *label = at::zeros({slices, size, size}, at::kLong);
  for (int64_t z = 0; z < slices; ++z) {
    // Linear shrink from base (z = 0) to apex (z = S-1).
    const double frac = slices > 1 ? static_cast<double>(z) / (slices - 1) : 0.0;
    const double shrink = 1.0 - p.apex_shrink * frac;
    const double cavity = p.lv_radius * shrink * (phase == 1 ? p.es_cavity : 1.0);
    const double wall = std::max(1.5, p.wall * (0.8 + 0.2 * shrink) *
                                          (phase == 1 ? p.es_wall : 1.0));
    const double outer = cavity + wall;
    const double rv = p.rv_radius * shrink * (phase == 1 ? p.es_rv : 1.0);
    // RV: a disc centred on the patient's left of the LV, minus the LV and a
    // one-pixel septal gap, which leaves a crescent hugging the septum.
    const double rv_dist = outer + 0.35 * rv;
    at::Tensor ru = u + rv_dist, rvv = v;
    at::Tensor in_rv = ((ru * ru + rvv * rvv) <= rv * rv) & (r_lv > outer + 1.0);
    at::Tensor in_lv = r_lv <= cavity;
    at::Tensor in_myo = (r_lv > cavity) & (r_lv <= outer);

    at::Tensor lab = (*label)[z];
    lab.masked_fill_(in_rv, kSyntheticRv);
    lab.masked_fill_(in_myo, kSyntheticMyo);
    lab.masked_fill_(in_lv, kSyntheticLv);

    at::Tensor img = at::full({size, size}, p.i_air, opts);
    img.masked_fill_(body, p.i_body);
    img.masked_fill_(in_rv | in_lv, p.i_blood);
    img.masked_fill_(in_myo, p.i_myo);
    img.mul_(bias);
    img.add_(at::randn({size, size}, noise_gen, opts) * p.noise_sigma);
    (*image)[z].copy_(img.clamp_(0.0, 1.0));
  }
}

}  // namespace

std::vector<Volume> GenerateSyntheticVolumes(const SyntheticOptions& options) {
  TORCH_CHECK(options.patients >= 1, "synthetic: patients must be >= 1");
  TORCH_CHECK(options.slices >= 1, "synthetic: slices must be >= 1");
  TORCH_CHECK(options.size >= 16, "synthetic: size must be >= 16");
  std::vector<Volume> out;
  out.reserve(2 * options.patients);
  for (int64_t pi = 0; pi < options.patients; ++pi) {
    const uint64_t seed =
        StreamSeed(options.seed, RngStream::kSynthetic, static_cast<uint64_t>(pi));
    std::mt19937_64 gen(seed);
    const Patient p = DrawPatient(gen, static_cast<double>(options.size));
    // Noise uses a second, derived stream so the anatomy does not depend on
    // how many normal draws the image needed.
    at::Generator noise_gen = at::detail::createCPUGenerator(MixSeed(seed + 1));
    char case_id[32];
    std::snprintf(case_id, sizeof(case_id), "syn%03lld", static_cast<long long>(pi + 1));
    for (int phase = 0; phase < 2; ++phase) {
      Volume vol;
      vol.case_id = case_id;
      vol.id = std::string(case_id) + (phase == 0 ? "_frame01" : "_frame02");
      vol.phase = phase;
      RenderVolume(p, phase, options.slices, options.size, noise_gen, &vol.image, &vol.label);
      vol.spacing_zyx = {8.0, 1.5, 1.5};
      vol.source = "synthetic:seed=" + std::to_string(options.seed);
      out.push_back(std::move(vol));
    }
  }
  return out;
}

}  // namespace gcl::core
