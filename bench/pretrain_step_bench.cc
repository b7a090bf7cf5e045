// Pre-training steps/s of the C++ trainer against the plain PyTorch reference
// (../shared/reference/gcl_step.py), side by side in one run, same
// configuration: by default 96 px, 16 slices (32 views), base width 16,
// depth 5, 2 threads, CPU fp32.
//
//   build/bench/pretrain_step_bench [--steps N] [--threads T] [--size PX] [--batch SLICES]
//       [--base W] [--device cpu|cuda|auto] [--precision fp32|bf16] [--variants a,b,...]
//       [--reference PATH] [--python CMD] [--no-reference] [--no-breakdown]
//       [--prefetch on|off|both]
//
// On CUDA the reference is given `--device cuda` (scripts/gpu/gcl_step_device.py
// accepts it; the plain gcl_step.py does not, so pass --reference to the wrapper).
// Prints one row per variant (median step seconds, steps/s, ratio) and the
// step-time breakdown of `full` (GradMitigator and GradFilter shares).
// --prefetch: the next batch made on a second thread (PretrainOptions::prefetch;
// default: the trainer's, on for CUDA only); `both` times the C++ step with
// and without it, side by side.
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "worker/gcl/data/dataset.h"
#include "worker/gcl/losses/pixel_loss.h"
#include "worker/gcl/train/pretrain.h"

namespace {

using gcl::core::CombineMode;
using gcl::core::MetaLabel;
using gcl::core::PretrainOptions;

struct Config {
  int64_t steps = 8;
  int64_t threads = 2;
  int64_t size = 96;
  int64_t batch = 16;
  int64_t base = 16;
  std::string reference;
  std::string python = "/usr/bin/python3";
  bool run_reference = true;
  bool breakdown = true;
  gcl::core::DeviceOptions device;
  std::optional<bool> prefetch;  // unset: the trainer's default
  bool compare_prefetch = false;
  std::vector<std::string> variants = {"simclr", "multi_naive", "multi_gm", "full"};
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

PretrainOptions VariantOptions(const std::string& variant, const Config& c) {
  PretrainOptions o;
  o.model.base = c.base;
  o.model.depth = 5;
  o.batch = c.batch;
  o.threads = c.threads;
  o.log_every = 0;
  o.checkpoint_every = 0;
  o.steps = c.steps;
  o.device = c.device;
  o.prefetch = c.prefetch;
  const std::vector<MetaLabel> all = {MetaLabel::kPatient, MetaLabel::kPhase, MetaLabel::kPosition};
  if (variant == "simclr") {
    o.meta_labels = {};
  } else if (variant == "multi_naive") {
    o.meta_labels = all;
    o.combine = CombineMode::kMean;
  } else if (variant == "multi_gm") {
    o.meta_labels = all;
    o.combine = CombineMode::kGradMitigator;
  } else if (variant == "full") {
    o.meta_labels = all;
    o.combine = CombineMode::kGradMitigator;
    o.pixel_loss = true;
    o.grad_filter = true;
  }
  return o;
}

// Median seconds per step (first two steps are warm-up) and, when
// `phases` is non-null, the median of each phase over logged steps.
double TimeVariant(const gcl::core::Dataset& data, const std::string& variant, const Config& c,
                   std::map<std::string, double>* phases) {
  PretrainOptions o = VariantOptions(variant, c);
  if (phases) o.log_every = 1;
  auto trainer = gcl::core::Pretrainer::Create(data, o);
  if (!trainer.ok()) {
    std::fprintf(stderr, "%s: %s\n", variant.c_str(), trainer.status().ToString().c_str());
    std::exit(1);
  }
  std::vector<double> secs;
  std::map<std::string, std::vector<double>> per_phase;
  gcl::core::PretrainCallbacks cb;
  cb.on_step = [&](int64_t step, int64_t, double, double s, const gcl::core::MetricsRecord& r) {
    if (step <= 2) return;
    secs.push_back(s);
    for (const auto& sample : r.samples) {
      if (sample.name == "gcl_train_phase_seconds") per_phase[sample.labels.at("phase")].push_back(sample.value);
    }
  };
  auto result = (*trainer)->Run(cb);
  if (!result.ok()) {
    std::fprintf(stderr, "%s: %s\n", variant.c_str(), result.status().ToString().c_str());
    std::exit(1);
  }
  if (phases) {
    for (auto& [k, v] : per_phase) (*phases)[k] = Median(v);
  }
  return Median(secs);
}

// Median seconds per step of the PyTorch reference, or -1 when it cannot run.
double TimeReference(const std::string& variant, const Config& c) {
  std::string cmd = absl::StrFormat(
      "%s %s --variant %s --size %d --batch %d --base %d --steps %d --threads %d", c.python,
      c.reference, variant, c.size, c.batch, c.base, c.steps, c.threads);
  if (c.device.device != gcl::core::TrainDevice::kCpu) {
    cmd += " --device " + gcl::core::TrainDeviceName(c.device.device);
  }
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  std::string out;
  while (fgets(buf, sizeof buf, p)) out += buf;
  if (pclose(p) != 0) return -1;
  const auto pos = out.find("\"median_step_s\": ");
  if (pos == std::string::npos) return -1;
  return std::strtod(out.c_str() + pos + 17, nullptr);
}

// GradFilter's own cost: the pixel loss with selection (n < k) minus without.
double TimeGradFilterSelection(const Config& c, const gcl::core::DevicePlacement& placement) {
  torch::manual_seed(0);
  const int64_t n = 2 * c.batch, hw = (c.size / 16) * (c.size / 16);
  auto opts = torch::nn::functional::NormalizeFuncOptions().dim(1);
  auto v = torch::nn::functional::normalize(placement.ToDevice(torch::randn({n, 128, hw})), opts);
  auto u = torch::nn::functional::normalize(placement.ToDevice(torch::randn({n, 128, hw})), opts)
               .requires_grad_();
  auto labels = torch::arange(n).floor_divide(8);
  auto time = [&](int64_t selected) {
    gcl::core::PixelLossOptions po;
    po.num_selected = selected;
    std::vector<double> s;
    for (int i = 0; i < 7; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      auto loss = gcl::core::PixelContrastiveLoss(v, u, labels, po, 1 + i);
      loss.backward();
      placement.Synchronize();
      s.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return Median(s);
  };
  return std::max(0.0, time(2) - time(10));
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  c.reference = (std::filesystem::path(GCL_SOURCE_DIR) / "../shared/reference/gcl_step.py").string();
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--steps" && i + 1 < argc) c.steps = std::atoll(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) c.threads = std::atoll(argv[++i]);
    else if (a == "--reference" && i + 1 < argc) c.reference = argv[++i];
    else if (a == "--size" && i + 1 < argc) c.size = std::atoll(argv[++i]);
    else if (a == "--batch" && i + 1 < argc) c.batch = std::atoll(argv[++i]);
    else if (a == "--base" && i + 1 < argc) c.base = std::atoll(argv[++i]);
    else if (a == "--python" && i + 1 < argc) c.python = argv[++i];
    else if (a == "--variants" && i + 1 < argc) c.variants = absl::StrSplit(argv[++i], ',');
    else if (a == "--device" && i + 1 < argc) {
      auto d = gcl::core::ParseTrainDevice(argv[++i]);
      if (!d.ok()) return std::fprintf(stderr, "%s\n", d.status().ToString().c_str()), 2;
      c.device.device = *d;
    } else if (a == "--precision" && i + 1 < argc) {
      auto p = gcl::core::ParsePrecision(argv[++i]);
      if (!p.ok()) return std::fprintf(stderr, "%s\n", p.status().ToString().c_str()), 2;
      c.device.precision = *p;
    } else if (a == "--prefetch" && i + 1 < argc) {
      const std::string v = argv[++i];
      if (v != "on" && v != "off" && v != "both") {
        return std::fprintf(stderr, "--prefetch: on, off or both, not '%s'\n", v.c_str()), 2;
      }
      c.compare_prefetch = v == "both";
      if (!c.compare_prefetch) c.prefetch = v == "on";
    } else if (a == "--no-reference") c.run_reference = false;
    else if (a == "--no-breakdown") c.breakdown = false;
    else {
      std::fprintf(stderr,
                   "usage: %s [--steps N] [--threads T] [--size PX] [--batch SLICES] [--base W]\n"
                   "  [--device cpu|cuda|auto] [--precision fp32|bf16] [--variants a,b,...]\n"
                   "  [--reference PATH] [--python CMD] [--no-reference] [--no-breakdown]\n"
                   "  [--prefetch on|off|both]\n",
                   argv[0]);
      return 2;
    }
  }
  auto placement = gcl::core::DevicePlacement::Create(c.device);
  if (!placement.ok()) {
    std::fprintf(stderr, "%s\n", placement.status().ToString().c_str());
    return 1;
  }
  if (c.run_reference && !std::filesystem::exists(c.reference)) {
    std::fprintf(stderr, "reference %s not found; running without it\n", c.reference.c_str());
    c.run_reference = false;
  }
  at::set_num_threads(static_cast<int>(c.threads));
  gcl::core::DatasetOptions dopt;
  dopt.format = "synthetic";
  dopt.image_size = c.size;
  // The sampler draws one slice per (patient, phase, position): enough
  // patients and slices for any batch.
  dopt.synthetic.patients = std::max<int64_t>(8, c.batch / 2);
  dopt.synthetic.slices = 8;
  dopt.synthetic.size = c.size;
  auto data = gcl::core::LoadDataset(dopt);
  if (!data.ok()) {
    std::fprintf(stderr, "%s\n", data.status().ToString().c_str());
    return 1;
  }

  const std::string device_name = placement->device().str();
  std::printf("config: %lld px, %lld slices (%lld views), base %lld, depth 5, %lld threads, %lld steps (2 warm-up), "
              "device %s, %s, LibTorch %s\n",
              (long long)c.size, (long long)c.batch, (long long)(2 * c.batch), (long long)c.base,
              (long long)c.threads, (long long)c.steps, device_name.c_str(),
              gcl::core::PrecisionName(c.device.precision).c_str(), TORCH_VERSION);
  std::printf("%-12s %12s %10s %12s %10s %8s", "variant", "c++ s/step", "c++ st/s", "torch s/step",
              "torch st/s", "ratio");
  if (c.compare_prefetch) std::printf(" %17s %8s", "c++ no-prefetch", "gain");
  std::printf("\n");
  for (const std::string& variant : c.variants) {
    Config with = c;
    if (c.compare_prefetch) with.prefetch = true;
    const double ours = TimeVariant(*data, variant, with, nullptr);
    const double ref = c.run_reference ? TimeReference(variant, c) : -1;
    if (ref > 0) {
      std::printf("%-12s %12.4f %10.2f %12.4f %10.2f %7.2fx", variant.c_str(), ours, 1 / ours, ref,
                  1 / ref, ref / ours);
    } else {
      std::printf("%-12s %12.4f %10.2f %12s %10s %8s", variant.c_str(), ours, 1 / ours, "-", "-", "-");
    }
    if (c.compare_prefetch) {
      Config without = c;
      without.prefetch = false;
      const double plain = TimeVariant(*data, variant, without, nullptr);
      std::printf(" %17.4f %7.2fx", plain, plain / ours);
    }
    std::printf("\n");
    std::fflush(stdout);
  }

  if (!c.breakdown) return 0;
  std::map<std::string, double> gm_phases;
  const double gm = TimeVariant(*data, "multi_gm", c, &gm_phases);
  std::printf("\nbreakdown of a `multi_gm` step (median %.4f s, logged steps):\n", gm);
  for (const auto& [k, v] : gm_phases) std::printf("  %-10s %8.4f s  %5.1f%%\n", k.c_str(), v, 100 * v / gm);

  std::map<std::string, double> phases;
  const double full = TimeVariant(*data, "full", c, &phases);
  const double filter = TimeGradFilterSelection(c, *placement);
  std::printf("\nbreakdown of a `full` step (median %.4f s, logged steps):\n", full);
  for (const auto& [k, v] : phases) std::printf("  %-10s %8.4f s  %5.1f%%\n", k.c_str(), v, 100 * v / full);
  std::printf("  GradMitigator (combine): %.1f%% of the step (target <= 5%%)\n",
              100 * phases["combine"] / full);
  std::printf("  GradFilter selection:    %.4f s per label x 3 = %.1f%% of the step (target <= 10%%)\n",
              filter, 100 * 3 * filter / full);
  return 0;
}
