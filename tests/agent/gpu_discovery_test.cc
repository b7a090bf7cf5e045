// GPU discovery from recorded nvidia-smi output, and from a script named
// nvidia-smi put first on PATH.
#include "worker/agent/gpu_discovery.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace gcl::agent {
namespace {

using ::gcl::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int64_t kMiB = int64_t{1} << 20;

// Recorded on a 4 x H100 SXM host (uuids shortened by hand; the mig.mode.current
// column, Disabled on an H100 with MIG off, added by hand).
constexpr char kFourH100[] =
    "0, GPU-5e2d6c3b-9b0a-2f4e-8c61-1a2b3c4d5e6f, NVIDIA H100 80GB HBM3, 81559, Disabled\n"
    "1, GPU-0c1d2e3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5, NVIDIA H100 80GB HBM3, 81559, Disabled\n"
    "2, GPU-77aa88bb-99cc-0dd1-1ee2-2ff33a44b55c, NVIDIA H100 80GB HBM3, 81559, Disabled\n"
    "3, GPU-deadbeef-0000-1111-2222-333344445555, NVIDIA H100 80GB HBM3, 81559, Disabled\n";

std::vector<int> Indices(const std::vector<GpuInfo>& gpus) {
  std::vector<int> out;
  for (const GpuInfo& g : gpus) out.push_back(g.index);
  return out;
}

TEST(GpuDiscoveryTest, ParsesSeveralGpus) {
  GCL_ASSERT_OK_AND_ASSIGN(std::vector<GpuInfo> gpus, ParseNvidiaSmiOutput(kFourH100));
  ASSERT_EQ(gpus.size(), 4u);
  EXPECT_THAT(Indices(gpus), ElementsAre(0, 1, 2, 3));
  EXPECT_EQ(gpus[2].uuid, "GPU-77aa88bb-99cc-0dd1-1ee2-2ff33a44b55c");
  EXPECT_EQ(gpus[2].name, "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(gpus[2].memory_bytes, 81559 * kMiB);
  const std::vector<gcl::v1::Device> devices = ToDevices(gpus);
  ASSERT_EQ(devices.size(), 4u);
  EXPECT_EQ(devices[3].id(), "cuda:3");
  EXPECT_EQ(devices[3].type(), gcl::v1::DEVICE_TYPE_CUDA);
  EXPECT_EQ(devices[3].name(), "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(devices[3].memory_bytes(), 81559 * kMiB);
}

// Both discovery commands' output, verbatim, from driver 580.159.04 on the
// device machines (scripts/gpu/device_check.sh records them in env.txt).
TEST(GpuDiscoveryTest, RealDriverOutput) {
  struct Case {
    const char* query;
    const char* list;
    const char* name;
    int64_t mib;
  };
  for (const Case& c : {
           Case{"0, GPU-eac1e303-d52e-fb0e-f177-451c55a04708, NVIDIA H100 80GB HBM3, 81559, "
                "Disabled\n",
                "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-eac1e303-d52e-fb0e-f177-451c55a04708)\n",
                "NVIDIA H100 80GB HBM3", 81559},
           Case{"0, GPU-c930b84f-61ca-b714-4e94-f7299700164d, NVIDIA H200, 143771, Disabled\n",
                "GPU 0: NVIDIA H200 (UUID: GPU-c930b84f-61ca-b714-4e94-f7299700164d)\n",
                "NVIDIA H200", 143771},
       }) {
    GCL_ASSERT_OK_AND_ASSIGN(std::vector<GpuInfo> gpus, ParseNvidiaSmiOutput(c.query));
    GCL_ASSERT_OK_AND_ASSIGN(gpus, ApplyMigInstances(std::move(gpus), c.list));
    ASSERT_EQ(gpus.size(), 1u) << c.name;
    EXPECT_EQ(DeviceId(gpus[0]), "cuda:0");
    EXPECT_EQ(CudaPin(gpus[0]), "0");
    EXPECT_EQ(gpus[0].name, c.name);
    EXPECT_EQ(gpus[0].memory_bytes, c.mib * kMiB);
  }
}

TEST(GpuDiscoveryTest, OddNamesUnknownMemoryCrLfAndBlankLines) {
  // A MIG-enabled A100 (memory.total still the whole GPU's), a name with a
  // comma in it, a GPU whose memory is not reported, Windows line ends.
  constexpr char kOdd[] =
      "\n"
      "0, GPU-1111aaaa-0000-0000-0000-000000000000, NVIDIA A100-SXM4-40GB, 40960, Enabled\r\n"
      "1, GPU-2222bbbb-0000-0000-0000-000000000000, Graphics Device, Rev A1, 16384, [N/A]\r\n"
      "5, GPU-3333cccc-0000-0000-0000-000000000000, NVIDIA GH200 480GB, [N/A], Disabled\n"
      "  \n";
  GCL_ASSERT_OK_AND_ASSIGN(std::vector<GpuInfo> gpus, ParseNvidiaSmiOutput(kOdd));
  ASSERT_EQ(gpus.size(), 3u);
  EXPECT_EQ(gpus[0].name, "NVIDIA A100-SXM4-40GB");
  EXPECT_EQ(gpus[0].memory_bytes, 40960 * kMiB);
  EXPECT_TRUE(gpus[0].mig_enabled);
  EXPECT_FALSE(gpus[1].mig_enabled);
  EXPECT_FALSE(gpus[2].mig_enabled);
  EXPECT_EQ(gpus[1].name, "Graphics Device, Rev A1");
  EXPECT_EQ(gpus[1].memory_bytes, 16384 * kMiB);
  EXPECT_EQ(gpus[2].index, 5);
  EXPECT_EQ(gpus[2].memory_bytes, 0);
  GCL_ASSERT_OK_AND_ASSIGN(gpus, ParseNvidiaSmiOutput(""));
  EXPECT_THAT(gpus, IsEmpty());
}

TEST(GpuDiscoveryTest, BadLinesNameTheCommandTheLineAndWhy) {
  const std::string good = "0, GPU-1111aaaa, NVIDIA H100 80GB HBM3, 81559, Disabled\n";
  struct Case {
    std::string line, why;
  };
  const Case cases[] = {
      {"1, GPU-2222bbbb, NVIDIA H100 80GB HBM3, 81559", "expected 5 fields"},
      {"one, GPU-2222bbbb, NVIDIA H100 80GB HBM3, 81559, Disabled", "index is not an integer"},
      {"0, GPU-2222bbbb, NVIDIA H100 80GB HBM3, 81559, Disabled", "index 0 listed twice"},
      {"1, 2222bbbb, NVIDIA H100 80GB HBM3, 81559, Disabled", "uuid is not GPU-"},
      {"1, GPU-2222bbbb, , 81559, Disabled", "empty name"},
      {"1, GPU-2222bbbb, NVIDIA H100 80GB HBM3, 80 GiB, Disabled",
       "memory.total is not a number of MiB"},
      {"1, GPU-2222bbbb, NVIDIA H100 80GB HBM3, 81559, On", "mig.mode.current is not Enabled"},
      {"Failed to initialize NVML: Driver/library version mismatch", "expected 5 fields"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<GpuInfo>> gpus = ParseNvidiaSmiOutput(good + c.line + "\n");
    EXPECT_THAT(gpus.status(), StatusIs(absl::StatusCode::kInvalidArgument, c.why)) << c.line;
    EXPECT_THAT(gpus.status().message(), HasSubstr(kNvidiaSmiQuery));
    EXPECT_THAT(gpus.status().message(), HasSubstr("line 2 \"" + c.line + "\""));
  }
}

TEST(GpuDiscoveryTest, GpusFlag) {
  GCL_ASSERT_OK_AND_ASSIGN(GpuRequest r, ParseGpuRequest("auto"));
  EXPECT_EQ(r.mode, GpuRequest::Mode::kAuto);
  GCL_ASSERT_OK_AND_ASSIGN(r, ParseGpuRequest("none"));
  EXPECT_EQ(r.mode, GpuRequest::Mode::kNone);
  GCL_ASSERT_OK_AND_ASSIGN(r, ParseGpuRequest("2,0"));
  EXPECT_EQ(r.mode, GpuRequest::Mode::kList);
  EXPECT_THAT(r.indices, ElementsAre(2, 0));
  for (const char* bad : {"", "0,,1", "gpu0", "-1", "1,1", "all"}) {
    EXPECT_THAT(ParseGpuRequest(bad).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, "expected auto, none or")) << bad;
  }
}

TEST(GpuDiscoveryTest, CudaVisibleDevicesAndTheGpusListNarrowTheOffer) {
  GCL_ASSERT_OK_AND_ASSIGN(const std::vector<GpuInfo> all, ParseNvidiaSmiOutput(kFourH100));
  GpuRequest autodetect;
  GpuRequest list;
  list.mode = GpuRequest::Mode::kList;
  auto select = [&](const GpuRequest& r, const char* visible) { return SelectGpus(all, r, visible); };
  GCL_ASSERT_OK_AND_ASSIGN(std::vector<GpuInfo> gpus, select(autodetect, nullptr));
  EXPECT_THAT(Indices(gpus), ElementsAre(0, 1, 2, 3));
  GCL_ASSERT_OK_AND_ASSIGN(gpus, select(autodetect, "3,1"));
  EXPECT_THAT(Indices(gpus), ElementsAre(1, 3));
  GCL_ASSERT_OK_AND_ASSIGN(gpus, select(autodetect, ""));
  EXPECT_THAT(gpus, IsEmpty());
  // CUDA stops at an invalid (negative) index.
  GCL_ASSERT_OK_AND_ASSIGN(gpus, select(autodetect, "2,-1,0"));
  EXPECT_THAT(Indices(gpus), ElementsAre(2));
  // Uuids and unique uuid prefixes.
  GCL_ASSERT_OK_AND_ASSIGN(gpus, select(autodetect, "GPU-deadbeef,GPU-0c1d2e3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5"));
  EXPECT_THAT(Indices(gpus), ElementsAre(1, 3));
  EXPECT_THAT(
      select(autodetect, "GPU-4b2f").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, "\"GPU-4b2f\" names no GPU nvidia-smi lists"));
  EXPECT_THAT(select(autodetect, "MIG-4b2f").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "\"MIG-4b2f\" names no MIG instance nvidia-smi -L lists"));
  EXPECT_THAT(select(autodetect, "GPU-").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "matches several GPUs"));
  EXPECT_THAT(select(autodetect, "0,7").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "CUDA_VISIBLE_DEVICES=0,7: index 7"));

  list.indices = {2, 0};
  GCL_ASSERT_OK_AND_ASSIGN(gpus, select(list, nullptr));
  EXPECT_THAT(Indices(gpus), ElementsAre(2, 0));
  EXPECT_THAT(select(list, "0,1").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--gpus: GPU 2 is hidden by CUDA_VISIBLE_DEVICES=0,1"));
  list.indices = {9};
  EXPECT_THAT(select(list, nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "--gpus: GPU 9 is not listed"));
  GpuRequest none;
  none.mode = GpuRequest::Mode::kNone;
  GCL_ASSERT_OK_AND_ASSIGN(gpus, select(none, nullptr));
  EXPECT_THAT(gpus, IsEmpty());
}

// GPU 0 split into two MIG instances, GPU 1 whole, in the format of
// `nvidia-smi -L` (driver R470 and later; uuids made up).
constexpr char kTwoA100[] =
    "0, GPU-e91edf3b-b297-37c1-a2a7-7601c7b5c6d3, NVIDIA A100-SXM4-40GB, 40960, Enabled\n"
    "1, GPU-1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901, NVIDIA A100-SXM4-40GB, 40960, Disabled\n";
constexpr char kTwoA100List[] =
    "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-e91edf3b-b297-37c1-a2a7-7601c7b5c6d3)\n"
    "  MIG 3g.20gb     Device  0: (UUID: MIG-4d1f8b3c-6a2e-5b7d-9c0e-1f2a3b4c5d6e)\n"
    "  MIG 2g.10gb     Device  1: (UUID: MIG-8b5ed2b0-2fa6-5f1c-a7b4-6bbd9ce0ad4a)\n"
    "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901)\n";

std::vector<std::string> Ids(const std::vector<GpuInfo>& gpus) {
  std::vector<std::string> out;
  for (const GpuInfo& g : gpus) out.push_back(DeviceId(g));
  return out;
}

std::vector<GpuInfo> TwoA100WithMig() {
  absl::StatusOr<std::vector<GpuInfo>> gpus = ParseNvidiaSmiOutput(kTwoA100);
  EXPECT_TRUE(gpus.ok());
  gpus = ApplyMigInstances(*std::move(gpus), kTwoA100List);
  EXPECT_TRUE(gpus.ok()) << gpus.status();
  return gpus.ok() ? *gpus : std::vector<GpuInfo>();
}

TEST(GpuDiscoveryTest, MigInstancesReplaceTheirGpu) {
  const std::vector<GpuInfo> gpus = TwoA100WithMig();
  ASSERT_EQ(gpus.size(), 3u);
  EXPECT_THAT(Ids(gpus), ElementsAre("cuda:0/mig0", "cuda:0/mig1", "cuda:1"));
  EXPECT_EQ(CudaPin(gpus[0]), "MIG-4d1f8b3c-6a2e-5b7d-9c0e-1f2a3b4c5d6e");
  EXPECT_EQ(CudaPin(gpus[1]), "MIG-8b5ed2b0-2fa6-5f1c-a7b4-6bbd9ce0ad4a");
  EXPECT_EQ(CudaPin(gpus[2]), "1");
  EXPECT_EQ(gpus[0].name, "NVIDIA A100-SXM4-40GB MIG 3g.20gb");
  EXPECT_EQ(gpus[0].memory_bytes, int64_t{20} << 30);
  EXPECT_EQ(gpus[1].memory_bytes, int64_t{10} << 30);
  EXPECT_EQ(gpus[2].memory_bytes, 40960 * kMiB);
  EXPECT_EQ(gpus[1].uuid, "GPU-e91edf3b-b297-37c1-a2a7-7601c7b5c6d3");  // the parent's
  const std::vector<gcl::v1::Device> devices = ToDevices(gpus);
  ASSERT_EQ(devices.size(), 3u);
  EXPECT_EQ(devices[1].id(), "cuda:0/mig1");
  EXPECT_EQ(devices[1].type(), gcl::v1::DEVICE_TYPE_CUDA);

  // Older drivers name MIG devices "MIG-GPU-<uuid>/<gi>/<ci>"; no size in
  // the profile is memory 0 (unknown).
  GCL_ASSERT_OK_AND_ASSIGN(
      std::vector<GpuInfo> old_driver,
      ApplyMigInstances(*ParseNvidiaSmiOutput(kTwoA100),
                        "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-e91edf3b)\n"
                        "  MIG 1c.7g     Device 0: (UUID: MIG-GPU-e91edf3b/7/0)\n"));
  EXPECT_THAT(Ids(old_driver), ElementsAre("cuda:0/mig0", "cuda:1"));
  EXPECT_EQ(CudaPin(old_driver[0]), "MIG-GPU-e91edf3b/7/0");
  EXPECT_EQ(old_driver[0].memory_bytes, 0);
  // Output without MIG lines (or not -L's at all) changes nothing.
  GCL_ASSERT_OK_AND_ASSIGN(std::vector<GpuInfo> plain,
                           ApplyMigInstances(*ParseNvidiaSmiOutput(kTwoA100), kTwoA100));
  EXPECT_THAT(Ids(plain), ElementsAre("cuda:0", "cuda:1"));
}

TEST(GpuDiscoveryTest, BadMigLinesNameTheCommandTheLineAndWhy) {
  const std::vector<GpuInfo> gpus = *ParseNvidiaSmiOutput(kTwoA100);
  EXPECT_THAT(ApplyMigInstances(gpus, "  MIG 1g.5gb Device 0: (UUID: MIG-1)\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "nvidia-smi -L: line 1 \"MIG 1g.5gb Device 0: (UUID: MIG-1)\": a MIG "
                       "instance before any GPU line"));
  EXPECT_THAT(
      ApplyMigInstances(gpus, "GPU 5: X (UUID: GPU-5)\n  MIG 1g.5gb Device 0: (UUID: MIG-1)\n")
          .status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               "line 2 \"MIG 1g.5gb Device 0: (UUID: MIG-1)\": GPU 5 is not in the output of "
               "nvidia-smi --query-gpu"));
  EXPECT_THAT(ApplyMigInstances(gpus, "GPU 0: X\n  MIG 1g.5gb Device 0: (UUID: GPU-1)\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "no \"UUID: MIG-...\""));
  EXPECT_THAT(ApplyMigInstances(gpus, "GPU 0: X\n  MIG 1g.5gb Device x: (UUID: MIG-1)\n").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "no \"Device <number>:\""));
}

TEST(GpuDiscoveryTest, CudaVisibleDevicesAndTheGpusListSelectMigInstances) {
  GpuRequest all;
  GCL_ASSERT_OK_AND_ASSIGN(std::vector<GpuInfo> one, SelectGpus(TwoA100WithMig(), all, "MIG-8b5e"));
  EXPECT_THAT(Ids(one), ElementsAre("cuda:0/mig1"));
  // An index or the GPU's uuid selects all its instances.
  GCL_ASSERT_OK_AND_ASSIGN(std::vector<GpuInfo> by_index, SelectGpus(TwoA100WithMig(), all, "0"));
  EXPECT_THAT(Ids(by_index), ElementsAre("cuda:0/mig0", "cuda:0/mig1"));
  GCL_ASSERT_OK_AND_ASSIGN(std::vector<GpuInfo> by_uuid,
                           SelectGpus(TwoA100WithMig(), all, "GPU-e91e,1"));
  EXPECT_THAT(Ids(by_uuid), ElementsAre("cuda:0/mig0", "cuda:0/mig1", "cuda:1"));
  GpuRequest list;
  list.mode = GpuRequest::Mode::kList;
  list.indices = {1, 0};
  GCL_ASSERT_OK_AND_ASSIGN(std::vector<GpuInfo> listed,
                           SelectGpus(TwoA100WithMig(), list, nullptr));
  EXPECT_THAT(Ids(listed), ElementsAre("cuda:1", "cuda:0/mig0", "cuda:0/mig1"));
  list.indices = {0};
  GCL_ASSERT_OK_AND_ASSIGN(listed, SelectGpus(TwoA100WithMig(), list, "MIG-4d1f"));
  EXPECT_THAT(Ids(listed), ElementsAre("cuda:0/mig0"));
  EXPECT_THAT(
      SelectGpus(TwoA100WithMig(), list, "1").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, "GPU 0 is hidden by CUDA_VISIBLE_DEVICES=1"));
  EXPECT_THAT(SelectGpus(TwoA100WithMig(), all, "MIG-ffff").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "\"MIG-ffff\" names no MIG instance nvidia-smi -L lists"));
  EXPECT_THAT(SelectGpus(TwoA100WithMig(), all, "MIG-").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "matches several MIG instances"));
}

// Puts a script named nvidia-smi first on PATH (or PATH = an empty folder
// when script is empty) for the object's lifetime.
class FakeNvidiaSmi {
 public:
  explicit FakeNvidiaSmi(const std::string& script) {
    if (const char* p = std::getenv("PATH")) old_path_ = p;
    if (!script.empty()) {
      const std::string path = (dir_.path() / "nvidia-smi").string();
      std::ofstream(path) << script;
      ::chmod(path.c_str(), 0755);
      ::setenv("PATH", (dir_.path().string() + ":" + old_path_).c_str(), 1);
    } else {
      ::setenv("PATH", dir_.path().c_str(), 1);
    }
  }
  ~FakeNvidiaSmi() { ::setenv("PATH", old_path_.c_str(), 1); }

 private:
  testing::TempDir dir_;
  std::string old_path_;
};

TEST(GpuDiscoveryTest, RunsNvidiaSmiFromPath) {
  FakeNvidiaSmi smi(
      std::string("#!/bin/sh\n") +
      "[ \"$1\" = -L ] && { echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5e2d)'; exit 0; }\n"
      "[ \"$1\" = --query-gpu=index,uuid,name,memory.total,mig.mode.current ] || exit 9\n"
      "echo 'driver warning on stderr' >&2\n"
      "printf '%s' '" +
      kFourH100 + "'\n");
  bool found = false;
  GCL_ASSERT_OK_AND_ASSIGN(std::vector<GpuInfo> gpus, QueryNvidiaSmi(&found));
  EXPECT_TRUE(found);
  EXPECT_THAT(Indices(gpus), ElementsAre(0, 1, 2, 3));
  std::vector<std::string> logged;
  GpuRequest list;
  list.mode = GpuRequest::Mode::kList;
  list.indices = {3, 1};
  GCL_ASSERT_OK_AND_ASSIGN(gpus, DiscoverGpus(list, "1,3", [&](const std::string& l) {
                             logged.push_back(l);
                           }));
  EXPECT_THAT(Indices(gpus), ElementsAre(3, 1));
  EXPECT_THAT(logged, ElementsAre("GPUs: cuda:3 (NVIDIA H100 80GB HBM3, 81559 MiB), "
                                  "cuda:1 (NVIDIA H100 80GB HBM3, 81559 MiB)"));
}

TEST(GpuDiscoveryTest, DiscoversMigInstancesThroughNvidiaSmiL) {
  FakeNvidiaSmi smi(std::string("#!/bin/sh\n") + "if [ \"$1\" = -L ]; then printf '%s' '" +
                    kTwoA100List + "'; else printf '%s' '" + kTwoA100 + "'; fi\n");
  std::vector<std::string> logged;
  GCL_ASSERT_OK_AND_ASSIGN(
      std::vector<GpuInfo> gpus,
      DiscoverGpus({}, nullptr, [&](const std::string& l) { logged.push_back(l); }));
  EXPECT_THAT(Ids(gpus), ElementsAre("cuda:0/mig0", "cuda:0/mig1", "cuda:1"));
  EXPECT_THAT(logged,
              ElementsAre("GPUs: cuda:0/mig0 (NVIDIA A100-SXM4-40GB MIG 3g.20gb, 20480 MiB), "
                          "cuda:0/mig1 (NVIDIA A100-SXM4-40GB MIG 2g.10gb, 10240 MiB), "
                          "cuda:1 (NVIDIA A100-SXM4-40GB, 40960 MiB)"));
}

TEST(GpuDiscoveryTest, AGpuInMigModeWithoutInstancesIsNotOffered) {
  // kTwoA100 has GPU 0 in MIG mode; here -L lists none of its instances.
  FakeNvidiaSmi smi(std::string("#!/bin/sh\n") +
                    "if [ \"$1\" = -L ]; then echo 'GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-e91e)'; "
                    "echo 'GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-1b2c)'; else printf '%s' '" +
                    kTwoA100 + "'; fi\n");
  std::vector<std::string> logged;
  GCL_ASSERT_OK_AND_ASSIGN(
      std::vector<GpuInfo> gpus,
      DiscoverGpus({}, nullptr, [&](const std::string& l) { logged.push_back(l); }));
  EXPECT_THAT(Ids(gpus), ElementsAre("cuda:1"));
  ASSERT_EQ(logged.size(), 2u);
  EXPECT_EQ(logged[0],
            "GPU 0 (NVIDIA A100-SXM4-40GB) is in MIG mode but has no MIG instances, so CUDA cannot "
            "use it: create instances (nvidia-smi mig -i 0 -cgi <profiles> -C) or turn MIG off "
            "(nvidia-smi -i 0 -mig 0); not offered");
  EXPECT_EQ(logged[1], "GPUs: cuda:1 (NVIDIA A100-SXM4-40GB, 40960 MiB)");
  // Asked for by index: an error, not a silent gap.
  GpuRequest list;
  list.mode = GpuRequest::Mode::kList;
  list.indices = {0, 1};
  EXPECT_THAT(DiscoverGpus(list, nullptr, [](const std::string&) {}).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "GPU 0 (NVIDIA A100-SXM4-40GB) is in MIG mode"));
  list.indices = {1};
  GCL_ASSERT_OK_AND_ASSIGN(gpus, DiscoverGpus(list, nullptr, [](const std::string&) {}));
  EXPECT_THAT(Ids(gpus), ElementsAre("cuda:1"));
}

TEST(GpuDiscoveryTest, AFailingOrMalformedNvidiaSmiIsAnError) {
  {
    FakeNvidiaSmi smi(
        "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
        "driver.\" >&2\nexit 9\n");
    absl::StatusOr<std::vector<GpuInfo>> gpus = QueryNvidiaSmi(nullptr);
    EXPECT_THAT(gpus.status(), StatusIs(absl::StatusCode::kFailedPrecondition, "exited with code 9"));
    EXPECT_THAT(gpus.status().message(), HasSubstr(kNvidiaSmiQuery));
    EXPECT_THAT(gpus.status().message(), HasSubstr("couldn't communicate with the NVIDIA driver"));
  }
  {
    FakeNvidiaSmi smi("#!/bin/sh\necho '0, GPU-1, H100, 80, [N/A]'\necho 'garbage'\n");
    EXPECT_THAT(DiscoverGpus({}, nullptr, [](const std::string&) {}).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, "line 2 \"garbage\""));
  }
  {
    // The query works, -L does not.
    FakeNvidiaSmi smi(
        "#!/bin/sh\n[ \"$1\" = -L ] && { echo 'Unknown Error' >&2; exit 4; }\n"
        "echo '0, GPU-1, H100, 80, [N/A]'\n");
    EXPECT_THAT(QueryNvidiaSmi(nullptr).status(),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         "(nvidia-smi -L) exited with code 4: Unknown Error"));
  }
  {
    FakeNvidiaSmi smi("#!/bin/sh\nsleep 30\n");
    const auto start = std::chrono::steady_clock::now();
    EXPECT_THAT(QueryNvidiaSmi(nullptr, /*timeout_s=*/1).status(),
                StatusIs(absl::StatusCode::kDeadlineExceeded, "did not answer within 1 s"));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  }
  {
    // A driver without GPUs: no GPUs, not an error.
    FakeNvidiaSmi smi("#!/bin/sh\necho 'No devices were found'\nexit 6\n");
    GCL_ASSERT_OK_AND_ASSIGN(std::vector<GpuInfo> gpus, QueryNvidiaSmi(nullptr));
    EXPECT_THAT(gpus, IsEmpty());
  }
}

TEST(GpuDiscoveryTest, NoNvidiaSmiIsNoGpusUnlessSomeWereListed) {
  FakeNvidiaSmi none("");
  bool found = true;
  GCL_ASSERT_OK_AND_ASSIGN(std::vector<GpuInfo> gpus, QueryNvidiaSmi(&found));
  EXPECT_FALSE(found);
  EXPECT_THAT(gpus, IsEmpty());
  std::vector<std::string> logged;
  GCL_ASSERT_OK_AND_ASSIGN(
      gpus, DiscoverGpus({}, nullptr, [&](const std::string& l) { logged.push_back(l); }));
  EXPECT_THAT(gpus, IsEmpty());
  EXPECT_THAT(logged, ElementsAre("no nvidia-smi on PATH: no GPUs"));
  GpuRequest list;
  list.mode = GpuRequest::Mode::kList;
  list.indices = {0};
  EXPECT_THAT(DiscoverGpus(list, nullptr, [](const std::string&) {}).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "nvidia-smi is not on PATH"));
}

}  // namespace
}  // namespace gcl::agent
