// Weak scaling of data-parallel pre-training on CPU: 1 rank vs 2 ranks of 1
// thread each (ranks are processes, talking over a real TCPStore +
// ProcessGroupGloo on loopback), each rank with the same per-rank
// batch, side by side in one run. Prints throughput, the efficiency
// (throughput ratio / 2), the share of rank 0's step time blocked in
// collectives, and the bytes each step communicates. "/local_bn" rows:
// train.sync_batch_norm false (per-rank BN statistics).
//
//   build/bench/data_parallel_bench [--steps N] [--size PX] [--batch SLICES_PER_RANK] [--base C]
#include <torch/torch.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "tests/testing/free_port.h"
#include "worker/gcl/dist/data_parallel_group.h"
#include "worker/gcl/model/projection_head.h"
#include "worker/gcl/model/unet.h"
#include "worker/gcl/train/pretrain.h"

namespace {

using namespace gcl::core;

struct Config {
  int64_t steps = 12;
  int64_t size = 64;
  int64_t batch = 16;  // slices per rank
  int64_t base = 16;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

PretrainOptions Options(const std::string& variant, const Config& c, int world) {
  PretrainOptions o;
  o.model.base = c.base;
  o.model.depth = 5;
  o.meta_labels = {MetaLabel::kPatient, MetaLabel::kPhase, MetaLabel::kPosition};
  o.combine = CombineMode::kGradMitigator;
  o.pixel_loss = o.grad_filter = variant.rfind("full", 0) == 0;
  o.sync_batch_norm = variant.find("local_bn") == std::string::npos;
  o.batch = c.batch * world;
  o.steps = c.steps;
  o.threads = 1;
  o.log_every = 0;
  o.checkpoint_every = 0;
  return o;
}

struct Timing {
  double step_s = 0;         // median step time of rank 0
  double blocked_share = 0;  // rank 0's time blocked in collectives / its step time
};

// One rank of a `world`-rank job in this process; steps after the first two
// are timed.
Timing RunRank(const Dataset& data, const std::string& variant, const Config& c, int rank,
               int world, int port) {
  std::unique_ptr<DataParallelGroup> group;
  if (world > 1) {
    DataParallelOptions d;
    d.rank = rank;
    d.world_size = world;
    d.rendezvous = "127.0.0.1:" + std::to_string(port);
    auto g = DataParallelGroup::Join(d);
    if (!g.ok()) {
      std::fprintf(stderr, "join: %s\n", g.status().ToString().c_str());
      std::exit(1);
    }
    group = *std::move(g);
  }
  auto trainer = Pretrainer::Create(data, Options(variant, c, world), group.get());
  if (!trainer.ok()) {
    std::fprintf(stderr, "%s\n", trainer.status().ToString().c_str());
    std::exit(1);
  }
  std::vector<double> secs;
  double timed = 0, blocked_at_start = 0;
  PretrainCallbacks cb;
  cb.on_step = [&](int64_t step, int64_t, double, double s, const MetricsRecord&) {
    if (step == 2 && group) blocked_at_start = group->blocked_seconds();
    if (step <= 2) return;
    secs.push_back(s);
    timed += s;
  };
  auto result = (*trainer)->Run(cb);
  if (!result.ok()) {
    std::fprintf(stderr, "%s\n", result.status().ToString().c_str());
    std::exit(1);
  }
  Timing t;
  t.step_s = Median(secs);
  if (group) t.blocked_share = (group->blocked_seconds() - blocked_at_start) / timed;
  return t;
}

// Ranks are separate processes (this binary with --rank), as gcl-train runs
// them: ranks as threads of one process would share OpenBLAS, whose calls
// from several threads serialise.
Timing Run(const char* self, const std::string& variant, const Config& c, int world) {
  const int port = gcl::testing::FreeLoopbackPort();
  std::vector<FILE*> procs;
  for (int r = 0; r < world; ++r) {
    const std::string cmd = absl::StrFormat(
        "%s --steps %d --size %d --batch %d --base %d --rank %d --world %d --port %d --variant %s",
        self, c.steps, c.size, c.batch, c.base, r, world, port, variant);
    procs.push_back(popen(cmd.c_str(), "r"));
  }
  Timing t;
  for (int r = 0; r < world; ++r) {
    char buf[256] = {0};
    const bool got = procs[r] != nullptr && std::fgets(buf, sizeof buf, procs[r]) != nullptr;
    if (procs[r] == nullptr || pclose(procs[r]) != 0 || !got) {
      std::fprintf(stderr, "rank %d of %d failed\n", r, world);
      std::exit(1);
    }
    if (r == 0) std::sscanf(buf, "%lf %lf", &t.step_s, &t.blocked_share);
  }
  return t;
}

int64_t Numel(torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

}  // namespace

int main(int argc, char** argv) {
  Config c;
  int rank = -1, world = 1, port = 0;
  std::string variant_flag;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int64_t v = std::atoll(argv[i + 1]);
    if (a == "--variant") variant_flag = argv[i + 1];
    else if (a == "--rank") rank = static_cast<int>(v);
    else if (a == "--world") world = static_cast<int>(v);
    else if (a == "--port") port = static_cast<int>(v);
    else if (a == "--steps") c.steps = v;
    else if (a == "--size") c.size = v;
    else if (a == "--batch") c.batch = v;
    else if (a == "--base") c.base = v;
    else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  DatasetOptions d;
  d.format = "synthetic";
  d.image_size = c.size;
  d.synthetic.size = c.size;
  d.synthetic.patients = 12;
  d.synthetic.slices = 10;
  auto data = LoadDataset(d);
  if (!data.ok()) {
    std::fprintf(stderr, "%s\n", data.status().ToString().c_str());
    return 1;
  }
  if (rank >= 0) {  // one rank, started by the orchestrating process below
    const Timing t = RunRank(*data, variant_flag, c, rank, world, port);
    std::printf("%.6f %.6f\n", t.step_s, t.blocked_share);
    return 0;
  }
  UNetOptions mo;
  mo.base = c.base;
  UNetEncoder enc(mo);
  ProjectionHead head(enc->out_channels(), 128);
  const int64_t enc_numel = Numel(*enc), head_numel = Numel(*head);
  std::printf("weak scaling, CPU, 1 thread per rank: %lld px, %lld slices (%lld views) per rank, "
              "base %lld, depth 5, %lld steps (2 warm-up)\n",
              (long long)c.size, (long long)c.batch, (long long)(2 * c.batch), (long long)c.base,
              (long long)c.steps);
  std::printf("encoder %lld parameters (%.2f MB fp32), one projection head %lld\n\n",
              (long long)enc_numel, enc_numel * 4e-6, (long long)head_numel);
  std::printf("%-17s %12s %12s %12s %12s %11s %14s\n", "variant", "1 rank s", "2 ranks s",
              "views/s x1", "views/s x2", "efficiency", "blocked share");
  for (const std::string variant : {"multi_gm", "full", "multi_gm/local_bn", "full/local_bn"}) {
    const Timing one = Run(argv[0], variant, c, 1);
    const Timing two = Run(argv[0], variant, c, 2);
    const double t1 = 2.0 * c.batch / one.step_s, t2 = 2.0 * 2 * c.batch / two.step_s;
    std::printf("%-17s %12.3f %12.3f %12.1f %12.1f %10.1f%% %13.1f%%\n", variant.c_str(),
                one.step_s, two.step_s, t1, t2, 100 * t2 / (2 * t1), 100 * two.blocked_share);
    // Per step: M = 3 encoder gradients + the summed head gradients
    // (all-reduce), plus the all-gathered embeddings and SyncBN statistics
    // (small: listed for completeness).
    const int64_t heads = variant.rfind("full", 0) == 0 ? 2 * head_numel : head_numel;
    const double grad_mb = (3.0 * enc_numel + heads) * 4e-6;
    std::printf("          all-reduced gradients per step: %.2f MB (3 x encoder + heads)\n",
                grad_mb);
  }
  return 0;
}
