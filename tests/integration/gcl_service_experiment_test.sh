#!/usr/bin/env bash
# An experiment job through the service with two real workers: it expands
# into child jobs (one pre-training, fine-tuning runs per variant x M_lab x
# repeat that wait for it), the children spread over both workers, the parent
# ends SUCCEEDED and `gclctl results` shows the assembled table. Then queue
# order by priority while the workers are busy, and cancelling a running
# experiment cancels its children.
# Usage: gcl_service_experiment_test.sh COORDINATOR WORKER TRAINER GCLCTL EXAMPLES_DIR
set -euo pipefail
COORD="$1"; AGENT="$2"; TRAIN="$3"; CTL="$4"; EXAMPLES="$5"
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/service_lib.sh"
# state_is ID STATE; running_pretrains N
state_is() { [ "$(sql "SELECT state FROM jobs WHERE id='$1'")" = "$2" ]; }
running_pretrains() { [ "$(sql "SELECT count(*) FROM jobs WHERE state='RUNNING' AND kind='pretrain'")" = "$1" ]; }

"$COORD" --listen 127.0.0.1:0 --db reg.db --lease-seconds 5 > coord.log 2>&1 &
PIDS+=($!)
wait_for 20 grep -q "^listening on " coord.log || fail "coordinator did not start"
export GCL_ADDR="$(sed -n 's/^listening on //p' coord.log)"
for w in w1 w2; do
  "$AGENT" --coordinator "$GCL_ADDR" --work-dir "work-$w" --trainer "$TRAIN" --worker-id "$w" > "$w.log" 2>&1 &
  PIDS+=($!)
done

# The example at its own size, with one labelled-volume count.
sed -e 's/^labeled_volumes: .*/labeled_volumes: [1]/' -e '/^output:/d' \
  "$EXAMPLES/experiment-synthetic.yaml" > exp.yaml
EXP="$("$CTL" submit exp.yaml)" || fail "submit of the experiment failed"
timeout 300 "$CTL" watch "$EXP" > watch.txt 2>&1 || { cat watch.txt; fail "experiment $EXP did not succeed"; }
"$CTL" get "$EXP" --output json > exp.json
CHILDREN="$(sql "SELECT count(*) FROM jobs WHERE parent_id='$EXP'")"
[ "$CHILDREN" = 5 ] || fail "experiment has $CHILDREN children, want 5 (1 pretrain + 2 variants x 1 M_lab x 2 repeats)"
grep -q '"childIds"\|"child_ids"' exp.json || { cat exp.json; fail "get does not list the children"; }
[ "$(sql "SELECT count(*) FROM jobs WHERE parent_id='$EXP' AND state='SUCCEEDED'")" = 5 ] || fail "not every child succeeded"
[ "$(sql "SELECT count(DISTINCT worker_id) FROM attempts a JOIN jobs j ON a.job_id=j.id WHERE j.parent_id='$EXP'")" = 2 ] ||
  fail "the children did not spread over both workers"
# The fine-tuning children of `full` started after its pre-training ended.
PRE_END="$(sql "SELECT max(a.ended_ms) FROM attempts a JOIN jobs j ON a.job_id=j.id WHERE j.parent_id='$EXP' AND j.kind='pretrain'")"
FT_START="$(sql "SELECT min(a.started_ms) FROM attempts a JOIN jobs j ON a.job_id=j.id WHERE j.parent_id='$EXP' AND j.name LIKE '%-full-finetune-%'")"
[ "$FT_START" -ge "$PRE_END" ] || fail "a full fine-tuning child started before its pre-training ended"
"$CTL" results "$EXP" > results.txt || fail "gclctl results failed"
grep -q "random_init" results.txt && grep -q "full" results.txt && grep -q "(n=2)" results.txt ||
  { cat results.txt; fail "results table lacks a variant or the repeat count"; }
"$CTL" results "$EXP" --output json > results.json
grep -q '"repeats": *2' results.json || { cat results.json; fail "json results lack repeats"; }
echo "experiment: 5 children on 2 workers, results:"; cat results.txt

# Busy workers: a long experiment pre-training and a long job hold both; a
# later high-priority job is queued ahead of an earlier low one.
sed -e 's/^name: .*/name: busy/' -e 's/pretrain: {steps: 12,/pretrain: {steps: 2000,/' exp.yaml > busy.yaml
BUSY="$("$CTL" submit busy.yaml)"
cat > low.yaml <<'Y'
name: low
kind: pretrain
dataset: {format: synthetic, image_size: 32, synthetic: {patients: 6, slices: 8}}
method: {variant: simclr}
model: {base_width: 4, depth: 3, proj_dim: 16}
train: {steps: 4, batch: 16, threads: 1}
Y
sed -e 's/name: low/name: long/' -e 's/steps: 4,/steps: 2000,/' low.yaml > long.yaml
LONG="$("$CTL" submit long.yaml)"
wait_for 60 running_pretrains 2 ||
  fail "the long jobs did not occupy both workers"
sed -e 's/name: low/name: high/' low.yaml > high.yaml
echo "priority: 10" >> high.yaml
LOW="$("$CTL" submit low.yaml)"; HIGH="$("$CTL" submit high.yaml)"
"$CTL" get "$HIGH" --output json | grep -q '"queuePosition": *"1"\|"queue_position": *"\?1"\?' ||
  { "$CTL" get "$HIGH" --output json; fail "the high-priority job is not first in the queue"; }

# Cancelling the running experiment cancels its children; the queue moves on.
"$CTL" cancel "$BUSY" > /dev/null || fail "cancel of the experiment failed"
wait_for 60 state_is "$BUSY" CANCELLED || fail "experiment $BUSY did not end CANCELLED"
[ "$(sql "SELECT count(*) FROM jobs WHERE parent_id='$BUSY' AND state NOT IN ('CANCELLED','SUCCEEDED')")" = 0 ] ||
  fail "children of a cancelled experiment are still active: $(sql "SELECT name, state FROM jobs WHERE parent_id='$BUSY'")"
[ "$(sql "SELECT state FROM jobs WHERE parent_id='$BUSY' AND kind='pretrain'")" = CANCELLED ] || fail "the running child was not cancelled"
"$CTL" cancel "$LONG" > /dev/null || fail "cancel of a running job failed"
timeout 120 "$CTL" watch "$HIGH" > /dev/null 2>&1 || fail "the high-priority job did not succeed"
timeout 120 "$CTL" watch "$LOW" > /dev/null 2>&1 || fail "the low-priority job did not succeed"
echo "service experiment: all checks passed"
