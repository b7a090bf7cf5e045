#!/usr/bin/env bash
# End to end through the real gcl-train binary on synthetic data: a tiny GCL
# pre-training, fine-tuning from it and from a random init, resume of a
# finished run, and the errors a user sees for bad specs.
# Usage: gcl_train_cli_test.sh /path/to/gcl-train
set -euo pipefail
TRAIN="$1"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
fail() { echo "FAIL: $*" >&2; exit 1; }

cat > pre.yaml <<'Y'
name: cli-pre
kind: pretrain
dataset: {format: synthetic, image_size: 32, synthetic: {patients: 6, slices: 8, seed: 3}, val_cases: 1, test_cases: 1}
method: {variant: full, pool_k: 4, s2_every: 15}
model: {base_width: 8, depth: 3, proj_dim: 16}
train: {steps: 30, batch: 16, lr: 0.05, threads: 1, log_every: 5, checkpoint_every: 10}
output: {dir: out/pre}
Y
"$TRAIN" pretrain --spec pre.yaml --metrics m.jsonl --quiet > pre.log 2>&1 || { cat pre.log; fail "pretrain exited non-zero"; }
grep -q "done: 30 steps" pre.log || { cat pre.log; fail "pretrain did not report 30 steps"; }
[ -f out/pre/encoder.safetensors ] || fail "no encoder.safetensors"
[ -f out/pre/checkpoints/step-00000030.ckpt.sha256 ] || fail "no checkpoint sha256 sidecar"
[ "$(wc -l < m.jsonl)" -eq 6 ] || fail "--metrics should hold 6 records, has $(wc -l < m.jsonl)"
grep -q '"gcl_grad_cosine"' m.jsonl || fail "metrics lack gcl_grad_cosine"
grep -q '"gcl_gradfilter_rank_correlation"' m.jsonl || fail "metrics lack the S1-vs-S2 rank correlation"

# Running the finished job again resumes from its last checkpoint and does no step.
"$TRAIN" pretrain --spec pre.yaml --quiet > again.log 2>&1 || { cat again.log; fail "re-run failed"; }
grep -q "resumed from step 30" again.log || { cat again.log; fail "re-run did not resume"; }

for init in "{checkpoint: out/pre}" "random"; do
  cat > ft.yaml <<Y
name: cli-ft
kind: finetune
dataset: {format: synthetic, image_size: 32, synthetic: {patients: 6, slices: 8, seed: 3}, val_cases: 1, test_cases: 1}
init: $init
labeled_volumes: [1, 2]
repeats: 2
model: {base_width: 8, depth: 3}
train: {steps: 20, batch: 8, lr: 0.003, threads: 1, val_every: 10}
output: {dir: out/ft}
Y
  rm -rf out/ft
  "$TRAIN" finetune --spec ft.yaml --quiet > ft.log 2>&1 || { cat ft.log; fail "finetune ($init) exited non-zero"; }
  grep -Eq "^1 +0\.[0-9]{3} ± 0\.[0-9]{3}" ft.log || { cat ft.log; fail "no Dice row for M_lab=1"; }
  grep -Eq "^2 +0\.[0-9]{3} ± 0\.[0-9]{3}" ft.log || { cat ft.log; fail "no Dice row for M_lab=2"; }
  [ "$(wc -l < out/ft/results.csv)" -eq 5 ] || fail "results.csv should have a header + 4 runs"
  [ -f out/ft/m1-r0/summary.json ] || fail "no per-run summary.json"
  grep -q '"metric_per_case"' out/ft/m1-r0/summary.json || fail "summary.json lacks metric_per_case"
done

# Bad specs: the message names the key and the line; exit code 2.
printf 'name: bad\nkind: pretrain\ndataset: {format: synthetic}\nmethod:\n  pool_kk: 3\n' > bad.yaml
set +e
"$TRAIN" validate --spec bad.yaml > bad.log 2>&1
rc=$?
set -e
[ $rc -eq 2 ] || { cat bad.log; fail "unknown key: exit $rc, want 2"; }
grep -q "bad.yaml:5" bad.log || { cat bad.log; fail "unknown key error lacks line 5"; }
grep -q "pool_kk" bad.log || { cat bad.log; fail "unknown key error lacks the key"; }

printf 'name: bad\nkind: pretrain\ndataset: {format: acdc-h5, path: /nonexistent/ACDC}\n' > missing.yaml
set +e
"$TRAIN" validate --spec missing.yaml > missing.log 2>&1
rc=$?
set -e
[ $rc -ne 0 ] || fail "missing dataset accepted"
grep -q "/nonexistent/ACDC" missing.log || { cat missing.log; fail "missing dataset error lacks the path"; }

set +e
"$TRAIN" pretrain --spec nosuch.yaml > nospec.log 2>&1
rc=$?
set -e
[ $rc -ne 0 ] || fail "missing spec accepted"
grep -q "nosuch.yaml" nospec.log || { cat nospec.log; fail "missing spec error lacks the path"; }
echo "gcl-train CLI: all checks passed"
