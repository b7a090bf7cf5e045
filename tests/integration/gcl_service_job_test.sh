#!/usr/bin/env bash
# A real job through the whole chain on loopback: gclctl submit -> gcl-coordinator
# (SQLite) -> gcl-worker agent -> gcl-train child process -> SUCCEEDED; and a
# trainer that fails is retried up to max_attempts, then FAILED with its reason,
# while the agent stays up.
# Usage: gcl_service_job_test.sh COORDINATOR WORKER TRAINER GCLCTL
set -euo pipefail
COORD="$1"; AGENT="$2"; TRAIN="$3"; CTL="$4"
WORK="$(mktemp -d)"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"' EXIT
cd "$WORK"
fail() { echo "FAIL: $*" >&2; tail -n 20 coord.log agent.log >&2 || true; exit 1; }
export HOME="$WORK"

"$COORD" --listen 127.0.0.1:0 --db reg.db --artifacts art > coord.log 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do grep -q "^listening on " coord.log && break; sleep 0.1; done
export GCL_ADDR="$(sed -n 's/^listening on //p' coord.log)"
[ -n "$GCL_ADDR" ] || fail "coordinator did not report its address"
"$AGENT" --coordinator "$GCL_ADDR" --work-dir agent-work --trainer "$TRAIN" --worker-id w1 > agent.log 2>&1 &
AGENT_PID=$!
PIDS+=($AGENT_PID)

cat > tiny.yaml <<'Y'
name: tiny
kind: pretrain
dataset: {format: synthetic, image_size: 32, synthetic: {patients: 6, slices: 8, seed: 3}, val_cases: 1, test_cases: 1}
method: {variant: full, pool_k: 4}
model: {base_width: 8, depth: 3, proj_dim: 16}
train: {steps: 20, batch: 16, lr: 0.05, threads: 1, log_every: 5, checkpoint_every: 10}
Y
ID="$("$CTL" submit tiny.yaml)" || fail "submit failed"
timeout 120 "$CTL" watch "$ID" > watch.txt 2>&1 || { cat watch.txt; fail "watch: job $ID did not succeed"; }
grep -q "RUNNING -> SUCCEEDED" watch.txt || { cat watch.txt; fail "no RUNNING -> SUCCEEDED in watch"; }
ls agent-work/jobs/"$ID"/attempt-1/out/checkpoints/step-00000020.ckpt > /dev/null || fail "trainer wrote no checkpoint"

# A dataset path that does not exist on the worker: the spec is valid, gcl-train fails.
sed -e 's/name: tiny/name: broken/' \
    -e 's|^dataset: .*|dataset: {format: acdc-h5, path: /nonexistent/ACDC, image_size: 32}|' tiny.yaml > broken.yaml
echo "max_attempts: 2" >> broken.yaml
ID2="$("$CTL" submit broken.yaml)" || fail "submit of broken.yaml failed"
set +e
timeout 120 "$CTL" watch "$ID2" > watch2.txt 2>&1
RC=$?
set -e
[ $RC -eq 1 ] || { cat watch2.txt; fail "watch of a failing job exited $RC, want 1"; }
grep -q "RUNNING -> FAILED" watch2.txt || { cat watch2.txt; fail "failing job did not end FAILED"; }
grep -q "max_attempts (2) reached" watch2.txt || { cat watch2.txt; fail "no retry up to max_attempts"; }
grep -q "/nonexistent/ACDC" watch2.txt || { cat watch2.txt; fail "the reason does not name the missing path"; }
kill -0 "$AGENT_PID" || fail "the agent died with the job"
# SIGTERM is a clean shutdown (its trainers are stopped first), not a kill.
kill -TERM "$AGENT_PID"
set +e
wait "$AGENT_PID"
RC=$?
set -e
[ $RC -eq 0 ] || fail "the agent exited $RC on SIGTERM, want 0"
grep -q "shutting down" agent.log || fail "the agent did not log its shutdown"
echo "service job: all checks passed"
