#!/usr/bin/env bash
# Failure recovery with real processes on loopback:
#  1. a worker killed with SIGKILL mid-job (agent and trainer): its lease
#     expires, the job is requeued (attempt 2) and finishes on another worker,
#     resuming from its newest uploaded checkpoint (the step count continues);
#  2. the coordinator killed with SIGKILL mid-job and restarted on the same
#     SQLite file: no job, checkpoint or result is lost, the worker reconnects
#     and the running attempt finishes as the same attempt;
#  3. a fine-tuning job with `init: {job: ID}` waits for nothing (the
#     pre-training succeeded), starts from its checkpoint and stores per-case
#     Dice rows.
# Usage: gcl_service_recovery_test.sh COORDINATOR WORKER TRAINER GCLCTL
set -euo pipefail
COORD="$1"; AGENT="$2"; TRAIN="$3"; CTL="$4"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/service_lib.sh"

start_coordinator() {  # $1: listen address, $2: log
  "$COORD" --listen "$1" --db reg.db --artifacts art --lease-seconds 3 > "$2" 2>&1 &
  COORD_PID=$!
  PIDS+=($COORD_PID)
  wait_for 20 grep -q "^listening on " "$2" || fail "coordinator did not start"
  export GCL_ADDR="$(sed -n 's/^listening on //p' "$2")"
}
start_worker() {  # $1: worker id
  "$AGENT" --coordinator "$GCL_ADDR" --work-dir "work-$1" --trainer "$TRAIN" --worker-id "$1" > "$1.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$1=$!"
}
kill_tree() { pkill -KILL -P "$1" 2>/dev/null || true; kill -KILL "$1"; wait "$1" 2>/dev/null || true; }
checkpoints_of() { sql "SELECT count(*) FROM checkpoints WHERE job_id='$1' AND state='COMPLETED'"; }
has_checkpoints() { [ "$(checkpoints_of "$1")" -ge "$2" ]; }
progress_of() { sql "SELECT progress_step FROM jobs WHERE id='$1'"; }
has_progress() { [ "$(progress_of "$1")" -ge "$2" ]; }

start_coordinator 127.0.0.1:0 coord1.log
start_worker w1

cat > long.yaml <<'Y'
name: long
kind: pretrain
dataset: {format: synthetic, image_size: 32, synthetic: {patients: 6, slices: 8, seed: 3}, val_cases: 1, test_cases: 1}
method: {variant: simclr}
model: {base_width: 8, depth: 3, proj_dim: 16}
train: {steps: 240, batch: 16, lr: 0.05, threads: 1, log_every: 10, checkpoint_every: 20}
Y

# ---- 1. worker SIGKILL -> requeue -> resume on another worker
ID="$("$CTL" submit long.yaml)" || fail "submit failed"
wait_for 120 has_checkpoints "$ID" 2 || fail "no checkpoints uploaded for $ID"
STEP_AT_KILL="$(sql "SELECT max(step) FROM checkpoints WHERE job_id='$ID'")"
kill_tree "$PID_w1"
start_worker w2
timeout 240 "$CTL" watch "$ID" > watch1.txt 2>&1 || { cat watch1.txt; fail "job $ID did not succeed after its worker died"; }
[ "$(sql "SELECT state FROM attempts WHERE job_id='$ID' AND attempt=1")" = LOST ] || fail "attempt 1 is not LOST"
[ "$(sql "SELECT worker_id FROM attempts WHERE job_id='$ID' AND attempt=2")" = w2 ] || fail "attempt 2 did not run on w2"
LOG2="art/jobs/$ID/attempt-2/logs/train.log"
grep -q "resuming from checkpoint c-" "$LOG2" || fail "attempt 2 did not fetch a checkpoint: $(cat "$LOG2")"
RESUMED="$(sed -n 's/.*resumed from step \([0-9]*\).*/\1/p' "$LOG2" | head -n 1)"
[ -n "$RESUMED" ] && [ "$RESUMED" -ge "$STEP_AT_KILL" ] && [ "$RESUMED" -gt 0 ] ||
  fail "attempt 2 resumed from step '${RESUMED}', want >= $STEP_AT_KILL (the newest checkpoint at the kill)"
[ "$(sql "SELECT max(step) FROM checkpoints WHERE job_id='$ID' AND attempt=2")" = 240 ] || fail "no final checkpoint from attempt 2"
[ -s "art/jobs/$ID/attempt-1/logs/train.log" ] || fail "attempt 1's log was not kept"
echo "worker SIGKILL: requeued, resumed at step $RESUMED (newest checkpoint at kill: $STEP_AT_KILL)"

# ---- 2. coordinator SIGKILL -> restart on the same file -> nothing lost
ADDR="$GCL_ADDR"
ID2="$("$CTL" submit long.yaml)" || fail "second submit failed"
wait_for 120 has_progress "$ID2" 30 || fail "job $ID2 made no progress"
BEFORE="$(sql "SELECT count(*) FROM jobs") $(sql "SELECT count(*) FROM checkpoints WHERE state='COMPLETED'")"
kill -KILL "$COORD_PID"; wait "$COORD_PID" 2>/dev/null || true
sleep 2
start_coordinator "$ADDR" coord2.log
AFTER="$(sql "SELECT count(*) FROM jobs") $(sql "SELECT count(*) FROM checkpoints WHERE state='COMPLETED'")"
[ "${BEFORE% *}" = "${AFTER% *}" ] || fail "jobs before/after restart: $BEFORE vs $AFTER"
[ "${AFTER#* }" -ge "${BEFORE#* }" ] || fail "checkpoints lost in the restart: $BEFORE vs $AFTER"
timeout 240 "$CTL" watch "$ID2" > watch2.txt 2>&1 || { cat watch2.txt; fail "job $ID2 did not succeed after the coordinator restart"; }
[ "$(sql "SELECT count(*) FROM attempts WHERE job_id='$ID2'")" = 1 ] || fail "the restart cost job $ID2 an attempt"
[ "$(sql "SELECT state FROM jobs WHERE id='$ID'")" = SUCCEEDED ] || fail "the first job changed state"
[ "$(sql "SELECT state FROM workers WHERE id='w2'")" = ALIVE ] || fail "w2 is not ALIVE after the restart"
echo "coordinator SIGKILL: restarted, job $ID2 finished in its first attempt"

# ---- 3. fine-tuning from the pre-training job
cat > ft.yaml <<Y
name: ft
kind: finetune
dataset: {format: synthetic, image_size: 32, synthetic: {patients: 6, slices: 8, seed: 3}, val_cases: 1, test_cases: 1}
model: {base_width: 8, depth: 3}
init: {job: $ID}
labeled_volumes: [1]
train: {steps: 10, batch: 4, threads: 1, val_every: 5}
Y
FT="$("$CTL" submit ft.yaml)" || fail "finetune submit failed"
timeout 240 "$CTL" watch "$FT" > watch3.txt 2>&1 || { cat watch3.txt; fail "finetune $FT did not succeed"; }
grep -q "initialising from checkpoint c-" "art/jobs/$FT/attempt-1/logs/train.log" || fail "finetune did not start from the pre-training checkpoint"
ROWS="$(sql "SELECT count(*) FROM results WHERE job_id='$FT' AND variant='simclr' AND class_name='mean'")"
[ "$ROWS" -ge 1 ] || fail "no per-case results stored for $FT"
echo "finetune from init.job: $ROWS per-case rows"

# An unknown init.job is refused at submit, nothing stored.
N="$(sql "SELECT count(*) FROM jobs")"
sed "s/init: {job: .*}/init: {job: j-000000000000}/" ft.yaml > bad.yaml
if "$CTL" submit bad.yaml > bad.txt 2>&1; then fail "submit with an unknown init.job succeeded"; fi
grep -q "init.job" bad.txt || { cat bad.txt; fail "the error does not name init.job"; }
[ "$(sql "SELECT count(*) FROM jobs")" = "$N" ] || fail "a refused submit stored a job"
echo "service recovery: all checks passed"
