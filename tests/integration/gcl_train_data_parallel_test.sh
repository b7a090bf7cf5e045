#!/usr/bin/env bash
# Data-parallel gcl-train processes, as the worker agent starts them (GCL_RANK,
# GCL_WORLD_SIZE, GCL_RENDEZVOUS): a 2-rank run finishes with the 1-process
# loss, only rank 0 writes; a rank killed or stopped mid-run makes the other
# exit non-zero within the collective timeout, naming the rank.
# Usage: gcl_train_data_parallel_test.sh /path/to/gcl-train
set -euo pipefail
TRAIN="$1"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
cd "$WORK"
fail() { echo "FAIL: $*" >&2; for f in *.log; do echo "--- $f"; tail -5 "$f"; done >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cat > pre.yaml <<'Y'
name: dp-pre
kind: pretrain
dataset: {format: synthetic, image_size: 32, synthetic: {patients: 6, slices: 8, seed: 3}, val_cases: 1, test_cases: 1}
method: {variant: multi_gm}
model: {base_width: 8, depth: 3, proj_dim: 16}
train: {steps: STEPS, batch: 16, lr: 0.05, threads: 1, log_every: 5, checkpoint_every: 5}
Y
sed -i 's/STEPS/20/' pre.yaml

"$TRAIN" pretrain --spec pre.yaml --output one --quiet > one.log 2>&1 || fail "1-process run failed"
port=$(free_port)
for r in 0 1; do
  GCL_RANK=$r GCL_WORLD_SIZE=2 GCL_RENDEZVOUS=127.0.0.1:$port \
    "$TRAIN" pretrain --spec pre.yaml --output rank$r --metrics m$r.jsonl --quiet > rank$r.log 2>&1 &
  PIDS+=($!)
done
wait "${PIDS[0]}" || fail "rank 0 exited non-zero"
wait "${PIDS[1]}" || fail "rank 1 exited non-zero"
PIDS=()
grep -q "rank 1 of 2 joined rendezvous 127.0.0.1:$port" rank1.log || fail "rank 1 did not join"
grep -q "done: 20 steps" rank0.log || fail "rank 0 did not finish 20 steps"
[ -f rank0/checkpoints/step-00000020.ckpt ] || fail "rank 0 wrote no final checkpoint"
[ -f rank0/encoder.safetensors ] || fail "rank 0 wrote no encoder"
[ ! -e rank1/checkpoints ] && [ ! -e rank1/metrics.jsonl ] || fail "rank 1 wrote into its output dir"
[ "$(wc -l < m0.jsonl)" -eq 4 ] || fail "rank 0's --metrics should hold 4 records"
[ ! -s m1.jsonl ] || fail "rank 1 wrote metrics"
# Same global batch, same losses: the logged total loss agrees with one process
# to float rounding (the unit test bounds the parameter gap at 1e-4).
loss() { sed -n 's/^done: .*loss \([0-9.]*\) -> \([0-9.]*\)$/\2/p' "$1"; }
python3 - "$(loss one.log)" "$(loss rank0.log)" <<'P' || fail "final loss differs: $(loss one.log) vs $(loss rank0.log)"
import sys
a, b = map(float, sys.argv[1:])
sys.exit(0 if abs(a - b) <= 1e-3 * max(1.0, abs(a)) else 1)
P

# A lost peer: rank 1 SIGKILLed, or SIGSTOPped (hung), after the first checkpoint.
sed -i 's/steps: 20/steps: 100000/' pre.yaml
echo "resources: {collective_timeout_s: 5}" >> pre.yaml
for how in KILL STOP; do
  port=$(free_port)
  rm -rf lost0 lost1
  for r in 0 1; do
    GCL_RANK=$r GCL_WORLD_SIZE=2 GCL_RENDEZVOUS=127.0.0.1:$port \
      "$TRAIN" pretrain --spec pre.yaml --output lost$r --quiet > lost$r-$how.log 2>&1 &
    PIDS+=($!)
  done
  for _ in $(seq 1 300); do [ -e lost0/checkpoints/step-00000005.ckpt ] && break; sleep 0.1; done
  [ -e lost0/checkpoints/step-00000005.ckpt ] || fail "no checkpoint before the $how"
  kill -$how "${PIDS[1]}"
  start=$(date +%s)
  set +e
  wait "${PIDS[0]}"
  rc=$?
  set -e
  took=$(( $(date +%s) - start ))
  kill -9 "${PIDS[1]}" 2>/dev/null || true
  PIDS=()
  [ "$rc" -ne 0 ] || fail "rank 0 exited 0 after rank 1's SIG$how"
  [ "$took" -le 15 ] || fail "rank 0 took ${took}s to notice SIG$how (timeout 5 s)"
  grep -q "rank 0 of 2: collective .* at step [0-9]* failed" lost0-$how.log || fail "no collective failure line ($how)"
  grep -q "rank 1 stopped sending heartbeats" lost0-$how.log || fail "rank 1 not named ($how)"
  echo "SIG$how of rank 1: rank 0 exited $rc after ${took}s: $(grep "failed" lost0-$how.log | head -1)"
done
echo "PASS"
