#!/usr/bin/env bash
# MIG instances end to end with the real coordinator and agent (issue 6): the
# agent's nvidia-smi is a script printing a host whose GPU 0 is split into two
# MIG instances and whose GPUs 1 and 2 are whole; its trainer is a script
# printing the CUDA_VISIBLE_DEVICES it was started with. Checks the contract
# between the two sides (the agent's "cuda:<i>/mig<k>" ids, the scheduler's
# rule): a 2-rank job runs on the two whole GPUs, a 1-rank job on an
# instance, and a second 2-rank job waits, saying why.
# Usage: gcl_service_mig_test.sh COORDINATOR WORKER GCLCTL
set -euo pipefail
COORD="$1"; AGENT="$2"; CTL="$3"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/service_lib.sh"

mkdir bin
cat > bin/nvidia-smi <<'S'
#!/bin/sh
if [ "$1" = -L ]; then cat <<'L'
GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-e91edf3b-b297-37c1-a2a7-7601c7b5c6d3)
  MIG 3g.20gb     Device  0: (UUID: MIG-4d1f8b3c-6a2e-5b7d-9c0e-1f2a3b4c5d6e)
  MIG 3g.20gb     Device  1: (UUID: MIG-8b5ed2b0-2fa6-5f1c-a7b4-6bbd9ce0ad4a)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901)
GPU 2: NVIDIA A100-SXM4-40GB (UUID: GPU-77aa88bb-99cc-0dd1-1ee2-2ff33a44b55c)
L
else cat <<'C'
0, GPU-e91edf3b-b297-37c1-a2a7-7601c7b5c6d3, NVIDIA A100-SXM4-40GB, 40960, Enabled
1, GPU-1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901, NVIDIA A100-SXM4-40GB, 40960, Disabled
2, GPU-77aa88bb-99cc-0dd1-1ee2-2ff33a44b55c, NVIDIA A100-SXM4-40GB, 40960, Disabled
C
fi
S
# Holds its device until the file "release" exists, so jobs overlap.
cat > bin/fake-train <<'S'
#!/bin/sh
echo "rank ${GCL_RANK:-0} of ${GCL_WORLD_SIZE:-1} on ${CUDA_VISIBLE_DEVICES}"
while [ ! -e "$GCL_TEST_RELEASE" ]; do sleep 0.1; done
exit 0
S
chmod +x bin/nvidia-smi bin/fake-train
export GCL_TEST_RELEASE="$WORK/release"
unset CUDA_VISIBLE_DEVICES

"$COORD" --listen 127.0.0.1:0 --db reg.db --artifacts art > coord.log 2>&1 &
PIDS+=($!)
wait_for 20 grep -q "^listening on " coord.log || fail "coordinator did not start"
export GCL_ADDR="$(sed -n 's/^listening on //p' coord.log)"
PATH="$WORK/bin:$PATH" "$AGENT" --coordinator "$GCL_ADDR" --work-dir work --trainer "$WORK/bin/fake-train" \
  --worker-id mig-w --advertise-address 127.0.0.1 > w.log 2>&1 &
PIDS+=($!)
wait_for 20 grep -q "registered as mig-w" w.log || fail "the agent did not register"
"$CTL" workers --output json > workers.txt || fail "gclctl workers failed"
grep -q "cuda:0/mig0" workers.txt || { cat workers.txt; fail "the MIG instances are not listed"; }

spec() {  # $1 name, $2 devices
  printf 'name: %s\nkind: pretrain\ndataset: {format: synthetic, image_size: 32}\ntrain: {steps: 5, batch: 16}\nresources: {devices: %s, device_type: cuda}\n' "$1" "$2"
}
spec pair 2 > pair.yaml
spec one 1 > one.yaml
spec pair2 2 > pair2.yaml
log_of() { echo "art/jobs/$1/attempt-1/logs/train.log"; }
is_running() { [ "$(sql "SELECT state FROM jobs WHERE id='$1'")" = RUNNING ]; }

PAIR="$("$CTL" submit pair.yaml)" || fail "submit pair failed"
wait_for 30 is_running "$PAIR" || fail "the 2-rank job did not start"
ONE="$("$CTL" submit one.yaml)" || fail "submit one failed"
wait_for 30 is_running "$ONE" || fail "the 1-rank job did not start"
[ "$(sql "SELECT device_ids FROM attempt_members WHERE job_id='$PAIR'")" = "dev:2,dev:3" ] ||
  fail "the 2-rank job holds $(sql "SELECT device_ids FROM attempt_members WHERE job_id='$PAIR'"), not the whole GPUs"
[ "$(sql "SELECT device_ids FROM attempt_members WHERE job_id='$ONE'")" = "dev:0" ] ||
  fail "the 1-rank job holds $(sql "SELECT device_ids FROM attempt_members WHERE job_id='$ONE'"), not the first instance"
wait_for 20 grep -qs "rank 1 of 2" "$(log_of "$PAIR")" || fail "the 2-rank job's ranks did not log"
grep -q "rank 0 of 2 on 1$" "$(log_of "$PAIR")" || { cat "$(log_of "$PAIR")"; fail "rank 0 is not on GPU 1"; }
grep -q "rank 1 of 2 on 2$" "$(log_of "$PAIR")" || { cat "$(log_of "$PAIR")"; fail "rank 1 is not on GPU 2"; }
wait_for 20 grep -qs "rank 0 of 1" "$(log_of "$ONE")" || fail "the 1-rank job did not log"
grep -q "on MIG-4d1f8b3c-6a2e-5b7d-9c0e-1f2a3b4c5d6e$" "$(log_of "$ONE")" ||
  { cat "$(log_of "$ONE")"; fail "the 1-rank job is not pinned to the MIG instance"; }

# One instance is free, but a 2-rank job needs whole GPUs: it waits, saying so.
PAIR2="$("$CTL" submit pair2.yaml)" || fail "submit pair2 failed"
"$CTL" get "$PAIR2" > get.txt || fail "gclctl get failed"
grep -q "MIG instances do not count: multi-rank jobs need whole GPUs" get.txt ||
  { cat get.txt; fail "the waiting 2-rank job does not say why"; }

touch release
timeout 60 "$CTL" watch "$PAIR" > /dev/null 2>&1 || fail "the 2-rank job did not succeed"
timeout 60 "$CTL" watch "$ONE" > /dev/null 2>&1 || fail "the 1-rank job did not succeed"
timeout 60 "$CTL" watch "$PAIR2" > /dev/null 2>&1 || fail "the second 2-rank job did not succeed"
[ "$(sql "SELECT device_ids FROM attempt_members WHERE job_id='$PAIR2'")" = "dev:2,dev:3" ] ||
  fail "the second 2-rank job did not get the whole GPUs"
echo PASS
