// Registry figures: CreateJob (the SubmitJob write path, synchronous=FULL)
// latency p50/p99 and throughput; GetJob / ListJobs / QueuePosition latency
// with 100k jobs in the file. Prints figures; never run by ctest.
//
//   registry_bench [--dir DIR] [--submits N] [--jobs TOTAL] [--checkpoint-ms MS]
//
// --checkpoint-ms MS: no WAL checkpoint inside commits; a thread calls
// Registry::CheckpointWal every MS ms instead (what gcl-coordinator does).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "storage/registry.h"

namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

void Report(const char* what, std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) { return ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))]; };
  std::printf("%-34s n=%-6zu p50=%8.3f ms  p99=%8.3f ms  max=%8.3f ms\n", what, ms.size(), pct(0.50),
              pct(0.99), ms.back());
}

gcl::storage::NewJob MakeJob(int i) {
  gcl::storage::NewJob j;
  j.name = "bench-" + std::to_string(i);
  j.kind = (i % 3 == 0) ? "finetune" : "pretrain";
  j.owner = (i % 2 == 0) ? "alice" : "bob";
  j.priority = i % 4;
  j.spec_blob.assign(600, static_cast<char>(i));  // about a serialized JobSpec
  j.spec_text = "name: bench\nkind: pretrain\ntrain: {steps: 2000, batch: 32}\n";
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir = (std::filesystem::temp_directory_path() / "gcl_registry_bench").string();
  int submits = 1000;
  int total = 100000;
  int checkpoint_ms = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--dir") dir = argv[i + 1];
    if (a == "--submits") submits = std::atoi(argv[i + 1]);
    if (a == "--jobs") total = std::atoi(argv[i + 1]);
    if (a == "--checkpoint-ms") checkpoint_ms = std::atoi(argv[i + 1]);
  }
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/registry.db";
  gcl::storage::RegistryOptions options;
  options.wal_autocheckpoint = checkpoint_ms <= 0;
  auto reg = gcl::storage::Registry::Open(path, options);
  if (!reg.ok()) {
    std::fprintf(stderr, "open: %s\n", reg.status().ToString().c_str());
    return 1;
  }
  gcl::storage::Registry& r = **reg;
  std::atomic<bool> stop{false};
  std::thread checkpointer([&] {
    while (checkpoint_ms > 0 && !stop.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(checkpoint_ms));
      (void)r.CheckpointWal();
    }
  });

  // 1. CreateJob one at a time: one BEGIN IMMEDIATE..COMMIT with fsync each.
  std::vector<double> lat;
  std::vector<std::string> ids;
  auto t0 = Clock::now();
  for (int i = 0; i < submits; ++i) {
    auto s = Clock::now();
    auto j = r.CreateJob(MakeJob(i));
    lat.push_back(Ms(Clock::now() - s));
    if (!j.ok()) {
      std::fprintf(stderr, "create: %s\n", j.status().ToString().c_str());
      return 1;
    }
    ids.push_back(j->id);
  }
  double secs = Ms(Clock::now() - t0) / 1000.0;
  Report(checkpoint_ms > 0 ? "CreateJob (FULL, bg checkpoint)" : "CreateJob (FULL, autocheckpoint)",
         lat);
  std::printf("%-34s %.0f jobs/s\n", "CreateJob throughput", submits / secs);

  // 2. Fill to `total` with batched transactions (CreateJobs, 1000 per commit).
  t0 = Clock::now();
  for (int done = submits; done < total;) {
    std::vector<gcl::storage::NewJob> batch;
    for (int k = 0; k < 1000 && done < total; ++k, ++done) batch.push_back(MakeJob(done));
    auto js = r.CreateJobs(batch);
    if (!js.ok()) {
      std::fprintf(stderr, "fill: %s\n", js.status().ToString().c_str());
      return 1;
    }
    for (const auto& j : *js) ids.push_back(j.id);
  }
  secs = Ms(Clock::now() - t0) / 1000.0;
  std::printf("%-34s %zu jobs in %.1f s (%.0f jobs/s)\n", "fill via CreateJobs(1000)", ids.size() - submits,
              secs, (ids.size() - submits) / std::max(secs, 1e-9));

  // 3. Reads at `total` jobs.
  std::mt19937_64 rng(1);
  lat.clear();
  for (int i = 0; i < 2000; ++i) {
    const std::string& id = ids[rng() % ids.size()];
    auto s = Clock::now();
    auto j = r.GetJob(id);
    lat.push_back(Ms(Clock::now() - s));
    if (!j.ok()) return 1;
  }
  Report("GetJob @ total", lat);

  lat.clear();
  gcl::storage::JobFilter f;
  f.page_size = 100;
  for (int i = 0; i < 200; ++i) {
    auto s = Clock::now();
    auto p = r.ListJobs(f);
    lat.push_back(Ms(Clock::now() - s));
    if (!p.ok()) return 1;
    f.page_token = p->next_page_token;  // walk forward through the pages
  }
  Report("ListJobs page 100 (keyset walk)", lat);

  lat.clear();
  gcl::storage::JobFilter g;
  g.page_size = 100;
  g.owner = "bob";
  g.kind = "finetune";
  g.states = {gcl::storage::JobState::kQueued};
  for (int i = 0; i < 200; ++i) {
    auto s = Clock::now();
    auto p = r.ListJobs(g);
    lat.push_back(Ms(Clock::now() - s));
    if (!p.ok()) return 1;
  }
  Report("ListJobs filtered (owner,kind,state)", lat);

  lat.clear();
  for (int i = 0; i < 200; ++i) {
    const std::string& id = ids[rng() % ids.size()];
    auto s = Clock::now();
    auto q = r.QueuePosition(id);
    lat.push_back(Ms(Clock::now() - s));
    if (!q.ok()) return 1;
  }
  Report("QueuePosition @ total queued", lat);
  stop = true;
  checkpointer.join();
  std::printf("db file: %s (%.1f MiB)\n", path.c_str(),
              std::filesystem::file_size(path) / (1024.0 * 1024.0));
  return 0;
}
