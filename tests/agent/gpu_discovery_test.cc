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

// Recorded on an 4 x H100 SXM host (uuids shortened by hand).
constexpr char kFourH100[] =
    "0, GPU-5e2d6c3b-9b0a-2f4e-8c61-1a2b3c4d5e6f, NVIDIA H100 80GB HBM3, 81559\n"
    "1, GPU-0c1d2e3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5, NVIDIA H100 80GB HBM3, 81559\n"
    "2, GPU-77aa88bb-99cc-0dd1-1ee2-2ff33a44b55c, NVIDIA H100 80GB HBM3, 81559\n"
    "3, GPU-deadbeef-0000-1111-2222-333344445555, NVIDIA H100 80GB HBM3, 81559\n";

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

TEST(GpuDiscoveryTest, OddNamesUnknownMemoryCrLfAndBlankLines) {
  // A MIG-enabled A100 (memory.total still the whole GPU's), a name with a
  // comma in it, a GPU whose memory is not reported, Windows line ends.
  constexpr char kOdd[] =
      "\n"
      "0, GPU-1111aaaa-0000-0000-0000-000000000000, NVIDIA A100-SXM4-40GB, 40960\r\n"
      "1, GPU-2222bbbb-0000-0000-0000-000000000000, Graphics Device, Rev A1, 16384\r\n"
      "5, GPU-3333cccc-0000-0000-0000-000000000000, NVIDIA GH200 480GB, [N/A]\n"
      "  \n";
  GCL_ASSERT_OK_AND_ASSIGN(std::vector<GpuInfo> gpus, ParseNvidiaSmiOutput(kOdd));
  ASSERT_EQ(gpus.size(), 3u);
  EXPECT_EQ(gpus[0].name, "NVIDIA A100-SXM4-40GB");
  EXPECT_EQ(gpus[0].memory_bytes, 40960 * kMiB);
  EXPECT_EQ(gpus[1].name, "Graphics Device, Rev A1");
  EXPECT_EQ(gpus[1].memory_bytes, 16384 * kMiB);
  EXPECT_EQ(gpus[2].index, 5);
  EXPECT_EQ(gpus[2].memory_bytes, 0);
  GCL_ASSERT_OK_AND_ASSIGN(gpus, ParseNvidiaSmiOutput(""));
  EXPECT_THAT(gpus, IsEmpty());
}

TEST(GpuDiscoveryTest, BadLinesNameTheCommandTheLineAndWhy) {
  const std::string good = "0, GPU-1111aaaa, NVIDIA H100 80GB HBM3, 81559\n";
  struct Case {
    std::string line, why;
  };
  const Case cases[] = {
      {"1, GPU-2222bbbb, NVIDIA H100 80GB HBM3", "expected 4 fields"},
      {"one, GPU-2222bbbb, NVIDIA H100 80GB HBM3, 81559", "index is not an integer"},
      {"0, GPU-2222bbbb, NVIDIA H100 80GB HBM3, 81559", "index 0 listed twice"},
      {"1, 2222bbbb, NVIDIA H100 80GB HBM3, 81559", "uuid is not GPU-"},
      {"1, GPU-2222bbbb, , 81559", "empty name"},
      {"1, GPU-2222bbbb, NVIDIA H100 80GB HBM3, 80 GiB", "memory.total is not a number of MiB"},
      {"Failed to initialize NVML: Driver/library version mismatch", "expected 4 fields"},
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
  EXPECT_THAT(select(autodetect, "MIG-4b2f").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "\"MIG-4b2f\" names no GPU"));
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
  FakeNvidiaSmi smi(std::string("#!/bin/sh\n") +
                    "[ \"$1\" = --query-gpu=index,uuid,name,memory.total ] || exit 9\n"
                    "echo 'driver warning on stderr' >&2\n"
                    "printf '%s' '" + kFourH100 + "'\n");
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
    FakeNvidiaSmi smi("#!/bin/sh\necho '0, GPU-1, H100, 80'\necho 'garbage'\n");
    EXPECT_THAT(DiscoverGpus({}, nullptr, [](const std::string&) {}).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, "line 2 \"garbage\""));
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
