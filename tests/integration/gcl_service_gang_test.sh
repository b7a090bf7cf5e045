#!/usr/bin/env bash
# Gang scheduling with real processes on loopback (issue 6): two worker
# agents with one CPU device each, a pre-training job with
# `resources: {nodes: 2, devices_per_node: 1}` (world size 2, one rank per
# agent, c10d rendezvous on 127.0.0.1):
#  1. it runs to SUCCEEDED: one attempt, two members (rank 0 and rank 1 on
#     different workers), both SUCCEEDED, checkpoints only from rank 0;
#  2. the agent holding rank 0 is SIGKILLed (with its trainer) after the first
#     checkpoint upload: its lease expires, the surviving member is told to
#     stop (its rank is killed), the job is requeued (one failure charged),
#     and once the killed agent is back (same worker id) attempt 2 runs on
#     both workers with a new rendezvous port and resumes from the newest
#     checkpoint's step.
# The last two checks (the surviving rank 1 cannot finish alone; rank 1
# writes nothing into its output folder) hold only with the multi-rank
# gcl-train; the rest holds with any trainer, also one that ignores GCL_RANK.
# Usage: gcl_service_gang_test.sh COORDINATOR WORKER TRAINER GCLCTL
set -euo pipefail
COORD="$1"; AGENT="$2"; TRAIN="$3"; CTL="$4"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/service_lib.sh"
# A rank whose peer vanished gives up within this (the agents pass it on).
export GCL_COLLECTIVE_TIMEOUT_S=30

"$COORD" --listen 127.0.0.1:0 --db reg.db --artifacts art --lease-seconds 3 > coord.log 2>&1 &
PIDS+=($!)
wait_for 20 grep -q "^listening on " coord.log || fail "coordinator did not start"
export GCL_ADDR="$(sed -n 's/^listening on //p' coord.log)"

# Rendezvous ports: a random block per run (other tests may share the host),
# one range per agent.
BASE=$(( 20000 + (RANDOM % 400) * 50 ))
start_worker() {  # $1: worker id, $2: first port of its range
  "$AGENT" --coordinator "$GCL_ADDR" --work-dir "work-$1" --trainer "$TRAIN" --worker-id "$1" \
    --advertise-address 127.0.0.1 --rendezvous-ports "$2-$(( $2 + 24 ))" --threads 1 >> "$1.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$1=$!"
}
kill_tree() { pkill -KILL -P "$1" 2>/dev/null || true; kill -KILL "$1"; wait "$1" 2>/dev/null || true; }
checkpoints_of() { sql "SELECT count(*) FROM checkpoints WHERE job_id='$1' AND state='COMPLETED'"; }
has_checkpoints() { [ "$(checkpoints_of "$1")" -ge "$2" ]; }
state_of() { sql "SELECT state FROM jobs WHERE id='$1'"; }
is_state() { [ "$(state_of "$1")" = "$2" ]; }
member() {  # $1 job, $2 attempt, $3 node index, $4 column
  sql "SELECT $4 FROM attempt_members WHERE job_id='$1' AND attempt=$2 AND node_index=$3"
}
member_closed() { [ "$(member "$1" "$2" "$3" state)" != RUNNING ]; }

start_worker w1 "$BASE"
start_worker w2 "$(( BASE + 25 ))"
wait_for 20 grep -q "registered as w1" w1.log || fail "w1 did not register"
wait_for 20 grep -q "registered as w2" w2.log || fail "w2 did not register"

DATASET='{format: synthetic, image_size: 32, synthetic: {patients: 6, slices: 8, seed: 3}, val_cases: 1, test_cases: 1}'
cat > gang.yaml <<Y
name: gang
kind: pretrain
dataset: $DATASET
method: {variant: simclr}
model: {base_width: 8, depth: 3, proj_dim: 16}
train: {steps: 40, batch: 32, lr: 0.05, threads: 1, log_every: 10, checkpoint_every: 20}
resources: {nodes: 2, devices_per_node: 1}
Y
sed -e 's/name: gang/name: gang-long/' -e 's/steps: 40/steps: 200/' gang.yaml > long.yaml

# ---- 1. a 2-node gang runs to SUCCEEDED
ID="$("$CTL" submit gang.yaml)" || fail "submit failed"
timeout 300 "$CTL" watch "$ID" > watch1.txt 2>&1 || { cat watch1.txt; fail "gang $ID did not succeed"; }
[ "$(sql "SELECT count(*) FROM attempts WHERE job_id='$ID'")" = 1 ] || fail "gang $ID took more than one attempt"
[ "$(sql "SELECT count(*) FROM attempt_members WHERE job_id='$ID' AND attempt=1 AND state='SUCCEEDED'")" = 2 ] ||
  fail "not both members of $ID succeeded: $(sql "SELECT * FROM attempt_members WHERE job_id='$ID'")"
R0="$(member "$ID" 1 0 worker_id)"; R1="$(member "$ID" 1 1 worker_id)"
[ -n "$R0" ] && [ -n "$R1" ] && [ "$R0" != "$R1" ] || fail "ranks 0 and 1 not on two workers: '$R0' '$R1'"
RDV1="$(sql "SELECT rendezvous FROM attempts WHERE job_id='$ID' AND attempt=1")"
case "$RDV1" in 127.0.0.1:*) ;; *) fail "rendezvous '$RDV1' is not on the rank-0 agent's advertised address" ;; esac
"$CTL" get "$ID" > get1.txt || fail "gclctl get failed"
grep -q "^workers:   $R0 (rank 0), $R1 (rank 1)$" get1.txt || { cat get1.txt; fail "gclctl get does not show the gang"; }
"$CTL" list > list1.txt || fail "gclctl list failed"
LOG1="art/jobs/$ID/attempt-1/logs/train.log"
grep -q "\[rank 1\] " "$LOG1" || fail "no rank 1 lines in the attempt log"
# Checkpoints come from rank 0's folder only (the one the agent uploads from).
has_checkpoints "$ID" 1 || fail "no checkpoint uploaded for $ID"
[ "$(sql "SELECT max(step) FROM checkpoints WHERE job_id='$ID'")" = 40 ] || fail "no final checkpoint for $ID"
echo "gang: $ID SUCCEEDED on $R0 (rank 0) and $R1 (rank 1), rendezvous $RDV1"

# ---- 2. the rank-0 agent is SIGKILLed mid-job: teardown, requeue, resume
ID2="$("$CTL" submit long.yaml)" || fail "second submit failed"
wait_for 240 has_checkpoints "$ID2" 1 || fail "no checkpoint uploaded for $ID2"
STEP_AT_KILL="$(sql "SELECT max(step) FROM checkpoints WHERE job_id='$ID2'")"
VICTIM="$(member "$ID2" 1 0 worker_id)"; SURVIVOR="$(member "$ID2" 1 1 worker_id)"
[ "$VICTIM" != "$SURVIVOR" ] || fail "the gang is not on two workers"
eval "kill_tree \$PID_$VICTIM"
wait_for 30 is_state "$ID2" QUEUED || fail "gang $ID2 was not requeued after $VICTIM died ($(state_of "$ID2"))"
# Whichever comes first ends attempt 1: the victim's lease expiring (LOST,
# naming it) or the surviving rank failing its next collective (FAILED,
# naming that rank).
A1="$(sql "SELECT state || ': ' || reason FROM attempts WHERE job_id='$ID2' AND attempt=1")"
case "$A1" in
  "LOST: "*"worker $VICTIM"*|"FAILED: on worker $SURVIVOR: "*"rank 1 of 2"*) ;;
  *) fail "attempt 1 ended as '$A1'" ;;
esac
[ "$(sql "SELECT failures FROM jobs WHERE id='$ID2'")" = 1 ] || fail "the loss did not charge one attempt"
# The survivor's rank is torn down: its agent kills it and reports.
wait_for 60 member_closed "$ID2" 1 1 || fail "the surviving member on $SURVIVOR was not torn down"
SURVIVOR_END="$(member "$ID2" 1 1 reason)"
"$CTL" get "$ID2" > get2.txt || fail "gclctl get failed"
grep -q "needs 2 workers" get2.txt || { cat get2.txt; fail "the waiting gang's reason does not say what it needs"; }
echo "gang: $VICTIM killed at step >= $STEP_AT_KILL; attempt 1 ended ($A1); $SURVIVOR torn down; $ID2 requeued"

start_worker "$VICTIM" "$([ "$VICTIM" = w1 ] && echo "$BASE" || echo $(( BASE + 25 )))"
timeout 400 "$CTL" watch "$ID2" > watch2.txt 2>&1 || { cat watch2.txt; fail "gang $ID2 did not succeed after $VICTIM came back"; }
[ "$(sql "SELECT count(*) FROM attempt_members WHERE job_id='$ID2' AND attempt=2 AND state='SUCCEEDED'")" = 2 ] ||
  fail "attempt 2 of $ID2 did not succeed on both members"
RDV2A="$(sql "SELECT rendezvous FROM attempts WHERE job_id='$ID2' AND attempt=1")"
RDV2B="$(sql "SELECT rendezvous FROM attempts WHERE job_id='$ID2' AND attempt=2")"
[ "$RDV2A" != "$RDV2B" ] || fail "attempt 2 reused the rendezvous $RDV2A"
LOG2="art/jobs/$ID2/attempt-2/logs/train.log"
grep -q "resuming from checkpoint c-" "$LOG2" || fail "attempt 2 did not fetch a checkpoint"
RESUMED="$(sed -n 's/.*resumed from step \([0-9]*\).*/\1/p' "$LOG2" | head -n 1)"
[ -n "$RESUMED" ] && [ "$RESUMED" -ge "$STEP_AT_KILL" ] && [ "$RESUMED" -gt 0 ] ||
  fail "attempt 2 resumed from step '${RESUMED}', want >= $STEP_AT_KILL (the newest checkpoint at the kill)"
[ "$(sql "SELECT max(step) FROM checkpoints WHERE job_id='$ID2' AND attempt=2")" = 200 ] ||
  fail "no final checkpoint from attempt 2"
echo "gang: $ID2 finished in attempt 2, resumed at step $RESUMED (rendezvous $RDV2A -> $RDV2B)"

# ---- trainer contract (holds with the multi-rank gcl-train only)
# Rank 1 cannot finish without rank 0: its collective fails, or its agent
# kills it first (the coordinator's cancel, or its own refused report).
case "$SURVIVOR_END" in
  *"exited with code 0"*) fail "the surviving rank 1 finished alone: '$SURVIVOR_END' (a trainer that ignores the gang?)" ;;
esac
# Only rank 0 writes into its output folder.
R1DIR="work-$R1/jobs/$ID/attempt-1/out-rank-1"
[ -d "$R1DIR" ] || fail "rank 1 had no output folder of its own"
[ -z "$(ls -A "$R1DIR")" ] || fail "rank 1 wrote into its output folder: $(ls -A "$R1DIR" | tr '\n' ' ')"
echo "service gang: all checks passed"
