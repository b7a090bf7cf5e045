#include "server/scheduler.h"

#include <algorithm>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace gcl::server {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::IsEmpty;

std::vector<std::string> PlacedIds(const SchedulePlan& plan) {
  std::vector<std::string> ids;
  for (const Placement& p : plan.placements) ids.push_back(p.job_id + "@" + p.worker_id);
  return ids;
}

TEST(SchedulerTest, PriorityThenFifo) {
  // One 1-device worker: only the first job in scheduling order runs.
  std::vector<QueuedJob> jobs = {
      {"old-low", 0, 1, 1}, {"new-high", 5, 3, 1}, {"old-high", 5, 2, 1}, {"new-low", 0, 4, 1}};
  SchedulePlan plan = Schedule(jobs, {{"w1", 1, 1}});
  EXPECT_THAT(PlacedIds(plan), ElementsAre("old-high@w1"));
  ASSERT_EQ(plan.waiting.size(), 3u);
  EXPECT_EQ(plan.waiting[0].job_id, "new-high");
  EXPECT_EQ(plan.waiting[1].job_id, "old-low");
  EXPECT_EQ(plan.waiting[2].job_id, "new-low");
  EXPECT_EQ(plan.waiting[0].position, 1);
  EXPECT_EQ(plan.waiting[2].position, 3);
  EXPECT_EQ(plan.waiting[0].reason, "waiting for 1 free device (most free on one worker: 0)");
  EXPECT_FALSE(plan.waiting[0].unsatisfiable);
}

TEST(SchedulerTest, GangIsNeverSplitOverWorkers) {
  SchedulePlan plan = Schedule({{"gang", 0, 1, 2}}, {{"a", 1, 1}, {"b", 1, 1}});
  EXPECT_THAT(plan.placements, IsEmpty());
  ASSERT_EQ(plan.waiting.size(), 1u);
  EXPECT_TRUE(plan.waiting[0].unsatisfiable);
  EXPECT_EQ(plan.waiting[0].reason, "needs 2 devices on one worker; the largest registered worker has 1");
}

TEST(SchedulerTest, GangWaitsForFreeDevicesOnOneWorker) {
  // Worker c has 4 devices, 3 busy; a has 2 busy of 2: 1 free at most.
  SchedulePlan plan = Schedule({{"gang", 0, 1, 2}}, {{"a", 2, 0}, {"c", 4, 1}});
  EXPECT_THAT(plan.placements, IsEmpty());
  ASSERT_EQ(plan.waiting.size(), 1u);
  EXPECT_FALSE(plan.waiting[0].unsatisfiable);
  EXPECT_EQ(plan.waiting[0].reason, "waiting for 2 free devices (most free on one worker: 1)");
}

TEST(SchedulerTest, BestFitKeepsTheLargeHoleForTheGang) {
  // The 1-device job goes to the 1-free worker, leaving 2 free for the gang.
  SchedulePlan plan = Schedule({{"small", 1, 1, 1}, {"gang", 0, 2, 2}}, {{"big", 2, 2}, {"tiny", 1, 1}});
  EXPECT_THAT(PlacedIds(plan), ElementsAre("small@tiny", "gang@big"));
  EXPECT_THAT(plan.waiting, IsEmpty());
}

TEST(SchedulerTest, SmallerJobsBackfillBehindABlockedOne) {
  SchedulePlan plan = Schedule({{"big", 0, 1, 3}, {"small", 0, 2, 1}}, {{"w", 2, 2}});
  EXPECT_THAT(PlacedIds(plan), ElementsAre("small@w"));
  ASSERT_EQ(plan.waiting.size(), 1u);
  EXPECT_EQ(plan.waiting[0].job_id, "big");
  EXPECT_EQ(plan.waiting[0].position, 1);
  EXPECT_TRUE(plan.waiting[0].unsatisfiable);
}

TEST(SchedulerTest, FillsAWorkerUpToItsDevices) {
  SchedulePlan plan = Schedule({{"j1", 0, 1, 1}, {"j2", 0, 2, 1}, {"j3", 0, 3, 1}}, {{"w", 2, 2}});
  EXPECT_THAT(PlacedIds(plan), ElementsAre("j1@w", "j2@w"));
  ASSERT_EQ(plan.waiting.size(), 1u);
  EXPECT_EQ(plan.waiting[0].job_id, "j3");
  EXPECT_EQ(plan.waiting[0].reason, "waiting for 1 free device (most free on one worker: 0)");
}

TEST(SchedulerTest, NoWorkersHoldsEveryJobWithAReason) {
  SchedulePlan plan = Schedule({{"a", 0, 1, 1}, {"b", 0, 2, 8}}, {});
  EXPECT_THAT(plan.placements, IsEmpty());
  ASSERT_EQ(plan.waiting.size(), 2u);
  for (const Waiting& w : plan.waiting) {
    EXPECT_EQ(w.reason, "waiting for a worker (none registered)");
    EXPECT_FALSE(w.unsatisfiable);
  }
  EXPECT_EQ(plan.waiting[1].position, 2);
}

TEST(SchedulerTest, ZeroDeviceJobRunsOnAFullWorker) {
  SchedulePlan plan = Schedule({{"cpu-only", 0, 1, 0}}, {{"w", 1, 0}});
  EXPECT_THAT(PlacedIds(plan), ElementsAre("cpu-only@w"));
}

TEST(SchedulerTest, DeterministicRegardlessOfInputOrder) {
  std::vector<QueuedJob> jobs = {{"x", 0, 7, 1}, {"y", 0, 7, 1}, {"z", 1, 9, 1}};
  std::vector<WorkerCapacity> workers = {{"w2", 1, 1}, {"w1", 1, 1}};
  SchedulePlan a = Schedule(jobs, workers);
  std::reverse(jobs.begin(), jobs.end());
  std::reverse(workers.begin(), workers.end());
  SchedulePlan b = Schedule(jobs, workers);
  EXPECT_EQ(PlacedIds(a), PlacedIds(b));
  EXPECT_THAT(PlacedIds(a), ElementsAre("z@w1", "x@w2"));
}

// ---- multi-node gangs: {nodes: K, devices_per_node: D}, devices = K x D

TEST(SchedulerTest, MultiNodeGangTakesKDistinctWorkersInBestFitOrder) {
  // 2 nodes x 2 devices: the two tightest fits with >= 2 free (c, then b);
  // a stays whole for the 4-device single-worker job behind it.
  SchedulePlan plan = Schedule({{"gang", 0, 1, 4, 2}, {"wide", 0, 2, 4}},
                               {{"a", 4, 4}, {"b", 3, 3}, {"c", 2, 2}, {"d", 1, 1}});
  ASSERT_EQ(plan.placements.size(), 2u);
  EXPECT_EQ(plan.placements[0].job_id, "gang");
  EXPECT_EQ(plan.placements[0].devices, 2);
  EXPECT_THAT(plan.placements[0].workers, ElementsAre("c", "b"));
  EXPECT_EQ(plan.placements[0].worker_id, "c");  // node 0, rank 0
  EXPECT_EQ(plan.placements[1].job_id, "wide");
  EXPECT_THAT(plan.placements[1].workers, ElementsAre("a"));
  EXPECT_THAT(plan.waiting, IsEmpty());
}

TEST(SchedulerTest, GangIsAllOrNoneAndHoldsNothingWhileItWaits) {
  // Only a has a free device: the gang waits and the 1-device job behind it
  // gets a (no partial hold for the gang).
  SchedulePlan plan = Schedule({{"gang", 0, 1, 2, 2}, {"small", 0, 2, 1}}, {{"a", 1, 1}, {"b", 1, 0}});
  EXPECT_THAT(PlacedIds(plan), ElementsAre("small@a"));
  ASSERT_EQ(plan.waiting.size(), 1u);
  EXPECT_EQ(plan.waiting[0].job_id, "gang");
  EXPECT_FALSE(plan.waiting[0].unsatisfiable);
  EXPECT_EQ(plan.waiting[0].reason, "needs 2 workers with 1 free device each; 1 has");
}

TEST(SchedulerTest, GangNeverUsesOneWorkerTwice) {
  // One 2-device worker cannot host both nodes of a 2 x 1 gang.
  SchedulePlan plan = Schedule({{"gang", 0, 1, 2, 2}}, {{"big", 2, 2}});
  EXPECT_THAT(plan.placements, IsEmpty());
  ASSERT_EQ(plan.waiting.size(), 1u);
  EXPECT_TRUE(plan.waiting[0].unsatisfiable);
  EXPECT_EQ(plan.waiting[0].reason, "needs 2 workers with 1 device each; 1 registered worker has that many");
}

TEST(SchedulerTest, GangTooWideForTheWorkersIsUnsatisfiable) {
  SchedulePlan plan = Schedule({{"gang", 0, 1, 6, 3}}, {{"a", 2, 2}, {"b", 2, 2}, {"c", 1, 1}});
  ASSERT_EQ(plan.waiting.size(), 1u);
  EXPECT_TRUE(plan.waiting[0].unsatisfiable);
  EXPECT_EQ(plan.waiting[0].reason, "needs 3 workers with 2 devices each; 2 registered workers have that many");
  EXPECT_EQ(GangWaitReason(3, 2, {{"a", 2, 2}, {"b", 2, 2}, {"c", 1, 1}}), plan.waiting[0].reason);
}

TEST(SchedulerTest, GangFollowsPriorityAndFifo) {
  // Two gangs compete for the same two workers: the higher priority one runs.
  SchedulePlan plan = Schedule({{"low", 0, 1, 2, 2}, {"high", 5, 2, 2, 2}}, {{"a", 1, 1}, {"b", 1, 1}});
  ASSERT_EQ(plan.placements.size(), 1u);
  EXPECT_EQ(plan.placements[0].job_id, "high");
  EXPECT_THAT(plan.placements[0].workers, ElementsAre("a", "b"));
  ASSERT_EQ(plan.waiting.size(), 1u);
  EXPECT_EQ(plan.waiting[0].reason, "needs 2 workers with 1 free device each; 0 have");
}

TEST(SchedulerTest, DevicesWithoutNodesStayOnOneWorker) {
  SchedulePlan plan = Schedule({{"two", 0, 1, 2}}, {{"a", 1, 1}, {"b", 2, 2}});
  EXPECT_THAT(PlacedIds(plan), ElementsAre("two@b"));
  EXPECT_THAT(plan.placements[0].workers, ElementsAre("b"));
}

TEST(SchedulerTest, GangWaitsForAWorkerWhenNoneIsRegistered) {
  SchedulePlan plan = Schedule({{"gang", 0, 1, 2, 2}}, {});
  ASSERT_EQ(plan.waiting.size(), 1u);
  EXPECT_FALSE(plan.waiting[0].unsatisfiable);
  EXPECT_EQ(plan.waiting[0].reason, "waiting for a worker (none registered)");
}

// ---- device types (resources.device_type)

TEST(SchedulerTest, CudaJobWaitsWhenNoWorkerHasCudaDevices) {
  SchedulePlan plan = Schedule({{"gpu-job", 0, 1, 2, 1, DeviceKind::kCuda}}, {{"cpu", 4, 4, false}});
  EXPECT_THAT(plan.placements, IsEmpty());
  ASSERT_EQ(plan.waiting.size(), 1u);
  EXPECT_EQ(plan.waiting[0].reason, "needs 2 CUDA devices; no registered worker has CUDA devices");
  EXPECT_TRUE(plan.waiting[0].unsatisfiable);
}

TEST(SchedulerTest, JobsGoOnlyToWorkersOfTheirDeviceType) {
  // The CPU worker is the tighter fit for every job; typed ones skip it.
  std::vector<WorkerCapacity> workers = {{"cpu", 1, 1, false}, {"gpu", 4, 4, true}};
  SchedulePlan plan = Schedule({{"cuda", 0, 1, 1, 1, DeviceKind::kCuda},
                                {"cpu-job", 0, 2, 1, 1, DeviceKind::kCpu},
                                {"any", 0, 3, 1, 1, DeviceKind::kAny}},
                               workers);
  EXPECT_THAT(PlacedIds(plan), ElementsAre("cuda@gpu", "cpu-job@cpu", "any@gpu"));
  // A second CPU job waits although the GPU worker has 2 free devices.
  plan = Schedule({{"cpu-a", 0, 1, 1, 1, DeviceKind::kCpu}, {"cpu-b", 0, 2, 1, 1, DeviceKind::kCpu}},
                  workers);
  EXPECT_THAT(PlacedIds(plan), ElementsAre("cpu-a@cpu"));
  ASSERT_EQ(plan.waiting.size(), 1u);
  EXPECT_EQ(plan.waiting[0].reason, "waiting for 1 free CPU device (most free on one CPU worker: 0)");
  EXPECT_FALSE(plan.waiting[0].unsatisfiable);
}

TEST(SchedulerTest, CudaReasonsCountOnlyCudaWorkers) {
  std::vector<WorkerCapacity> workers = {{"cpu", 8, 8, false}, {"gpu", 2, 2, true}};
  SchedulePlan plan = Schedule({{"big", 0, 1, 4, 1, DeviceKind::kCuda}}, workers);
  ASSERT_EQ(plan.waiting.size(), 1u);
  EXPECT_EQ(plan.waiting[0].reason,
            "needs 4 CUDA devices on one worker; the largest registered CUDA worker has 2");
  EXPECT_TRUE(plan.waiting[0].unsatisfiable);
  plan = Schedule({{"gang", 0, 1, 4, 2, DeviceKind::kCuda}}, workers);
  ASSERT_EQ(plan.waiting.size(), 1u);
  EXPECT_EQ(plan.waiting[0].reason,
            "needs 2 workers with 2 CUDA devices each; 1 registered CUDA worker has that many");
  EXPECT_EQ(WaitReason(1, 1, DeviceKind::kCpu, {{"gpu", 2, 2, true}}),
            "needs 1 CPU device; no registered worker has CPU devices");
  EXPECT_EQ(WaitReason(2, 1, DeviceKind::kAny, workers), "waiting for 2 free devices (most free on one worker: 8)");
}

TEST(SchedulerTest, AGangNeverMixesCudaAndCpuWorkers) {
  // One GPU and one CPU worker cannot hold a 2-node gang of either type.
  std::vector<WorkerCapacity> mixed = {{"cpu", 1, 1, false}, {"gpu", 1, 1, true}};
  SchedulePlan plan = Schedule({{"gang", 0, 1, 2, 2, DeviceKind::kAny}}, mixed);
  EXPECT_THAT(plan.placements, IsEmpty());
  // Two of each: kAny takes the CUDA pair, kCpu the CPU pair.
  std::vector<WorkerCapacity> four = {
      {"c1", 1, 1, false}, {"c2", 1, 1, false}, {"g1", 1, 1, true}, {"g2", 1, 1, true}};
  plan = Schedule({{"any", 0, 1, 2, 2, DeviceKind::kAny}, {"cpu", 0, 2, 2, 2, DeviceKind::kCpu}}, four);
  ASSERT_EQ(plan.placements.size(), 2u);
  EXPECT_THAT(plan.placements[0].workers, ElementsAre("g1", "g2"));
  EXPECT_THAT(plan.placements[1].workers, ElementsAre("c1", "c2"));
}

}  // namespace
TEST(SchedulerTest, MultiRankJobsCountOnlyWholeDevices) {
  // "sliced" is the tighter fit by free devices, but 2 of its 3 are MIG
  // instances: the 2-rank job goes to "whole".
  const bool cuda = true;
  SchedulePlan plan = Schedule({{"pair", 0, 1, 2, 1, DeviceKind::kCuda}},
                               {{"sliced", 3, 3, cuda, 2, 2}, {"whole", 4, 4, cuda}});
  EXPECT_THAT(PlacedIds(plan), ElementsAre("pair@whole"));
  // A gang of 2 x 1 ranks too: one whole device on each of two workers.
  plan = Schedule({{"gang", 0, 1, 2, 2}}, {{"a", 2, 2, cuda, 2, 2}, {"b", 3, 3, cuda, 2, 2},
                                           {"c", 3, 3, cuda, 1, 1}});
  EXPECT_THAT(plan.placements, ElementsAre(Field(&Placement::workers, ElementsAre("b", "c"))));
}

TEST(SchedulerTest, SingleRankJobsTakeMigInstancesFirst) {
  // 2 whole GPUs and 1 MIG instance: the 1-rank job takes the instance, so
  // the 2-rank job behind it still fits.
  SchedulePlan plan = Schedule({{"one", 0, 1, 1}, {"pair", 0, 2, 2}}, {{"mixed", 3, 3, true, 1, 1}});
  EXPECT_THAT(PlacedIds(plan), ElementsAre("one@mixed", "pair@mixed"));
  ASSERT_EQ(plan.leftover.size(), 1u);
  EXPECT_EQ(plan.leftover[0].free_devices, 0);
  EXPECT_EQ(plan.leftover[0].free_mig_devices, 0);
  // A second 1-rank job takes a whole GPU once the instance is busy, and
  // then the 2-rank job waits, for whole GPUs.
  plan = Schedule({{"one", 0, 1, 1}, {"two", 0, 2, 1}, {"pair", 0, 3, 2}}, {{"mixed", 3, 3, true, 1, 1}});
  EXPECT_THAT(PlacedIds(plan), ElementsAre("one@mixed", "two@mixed"));
  ASSERT_EQ(plan.waiting.size(), 1u);
  EXPECT_FALSE(plan.waiting[0].unsatisfiable);
  EXPECT_EQ(plan.waiting[0].reason,
            "waiting for 2 free devices (most free on one worker: 1); MIG instances do not count: "
            "multi-rank jobs need whole GPUs");
  EXPECT_EQ(plan.leftover[0].free_devices, 1);
  EXPECT_EQ(plan.leftover[0].free_mig_devices, 0);
}

TEST(SchedulerTest, MultiRankJobIsUnsatisfiableOnMigInstancesOnly) {
  const std::vector<WorkerCapacity> sliced = {{"a", 7, 7, true, 7, 7}, {"b", 7, 7, true, 7, 7}};
  SchedulePlan plan = Schedule({{"pair", 0, 1, 2, 1, DeviceKind::kCuda}, {"gang", 0, 2, 2, 2},
                                {"one", 0, 3, 1}},
                               sliced);
  EXPECT_THAT(PlacedIds(plan), ElementsAre("one@a"));
  ASSERT_EQ(plan.waiting.size(), 2u);
  EXPECT_TRUE(plan.waiting[0].unsatisfiable);
  EXPECT_EQ(plan.waiting[0].reason,
            "needs 2 CUDA devices on one worker; the largest registered CUDA worker has 0; MIG "
            "instances do not count: multi-rank jobs need whole GPUs");
  EXPECT_TRUE(plan.waiting[1].unsatisfiable);
  EXPECT_EQ(plan.waiting[1].reason,
            "needs 2 workers with 1 device each; 0 registered workers have that many; MIG "
            "instances do not count: multi-rank jobs need whole GPUs");
  EXPECT_EQ(plan.leftover[0].free_mig_devices, 6);
  EXPECT_EQ(plan.leftover[1].free_mig_devices, 7);
}

}  // namespace gcl::server
