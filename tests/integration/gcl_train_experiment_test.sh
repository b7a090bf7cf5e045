#!/usr/bin/env bash
# End to end through the real gcl-train binary: `gcl-train experiment` on
# examples/experiment-synthetic.yaml (random_init + full, M_lab 1 and 2, 2
# repeats, a few steps each), `gcl-train results` (table shape, n per cell,
# table.csv, PNGs), and resume: a re-run redoes nothing; a deleted cell is the
# only one rerun; a cell whose row is lost but whose finetune.json exists is
# recovered without training.
# Usage: gcl_train_experiment_test.sh /path/to/gcl-train
set -euo pipefail
TRAIN="$1"
SPEC="$(cd "$(dirname "$0")/../../examples" && pwd)/experiment-synthetic.yaml"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
fail() { echo "FAIL: $*" >&2; exit 1; }
run() {  # run LOG args...
  local log="$1"; shift
  "$TRAIN" "$@" --quiet > "$log" 2>&1 || { cat "$log"; fail "gcl-train $* exited non-zero"; }
}
is_png() { [ "$(head -c 8 "$1" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ]; }

run exp1.log experiment --spec "$SPEC" --output out --threads 1
grep -q "experiment: 8 cells ran, 0 skipped" exp1.log || { cat exp1.log; fail "first run should run 8 cells"; }
[ -f out/full/pretrain/done ] || fail "no done marker for full's pre-training"
[ -f out/full/pretrain/metrics.jsonl ] || fail "no pre-training metrics"
[ ! -e out/random_init/pretrain ] || fail "random_init must not pre-train"
[ -f out/full/finetune/m2-r1/finetune.json ] || fail "no per-cell finetune.json"
[ "$(wc -l < out/cells.csv)" -eq 9 ] || fail "cells.csv should have a header + 8 rows"
head -1 out/cells.csv | grep -q "^variant,m_lab,repeat,mean_dice,.*,dice_RV,dice_Myo,dice_LV$" \
  || { head -1 out/cells.csv; fail "unexpected cells.csv header"; }

# Paired design: the same labelled cases for a given (M_lab, repeat) in every variant.
for cell in "1,0" "1,1" "2,0" "2,1"; do
  a=$(grep "^random_init,$cell," out/cells.csv | cut -d, -f11)
  b=$(grep "^full,$cell," out/cells.csv | cut -d, -f11)
  [ -n "$a" ] && [ "$a" = "$b" ] || fail "cell $cell: labelled ids differ ($a vs $b)"
done

run res.log results --dir out --per-class
# Table: one row per variant, one "(n=2)" cell per M_lab.
for v in random_init full; do
  row=$(grep -E "^$v +0\." res.log | head -1) || { cat res.log; fail "no table row for $v"; }
  [ "$(grep -o '(n=2)' <<< "$row" | wc -l)" -eq 2 ] || { cat res.log; fail "$v: expected 2 cells with n=2"; }
done
grep -q "Paired difference vs random_init" res.log || fail "no paired-difference table"
grep -q "Test Dice, class Myo" res.log || fail "no per-class table"
[ "$(grep -c ',dice,' out/table.csv)" -eq 4 ] || fail "table.csv: 4 dice cells expected"
[ "$(grep ',dice,' out/table.csv | cut -d, -f6 | sort -u)" = "2" ] || fail "table.csv: n must be 2 in every cell"
[ "$(grep -c ',dice_LV,' out/table.csv)" -eq 4 ] || fail "table.csv: per-class rows missing"
[ "$(grep -c ',diff_vs_random_init,' out/table.csv)" -eq 2 ] || fail "table.csv: paired rows missing"
for png in dice conflicts conflict_share pace; do
  [ -s "out/plots/$png.png" ] || { cat res.log; fail "no $png.png"; }
  is_png "out/plots/$png.png" || fail "$png.png is not a PNG"
done

# Re-run: everything is skipped, nothing rewritten.
before=$(md5sum < out/cells.csv)
run exp2.log experiment --spec "$SPEC" --output out --threads 1
grep -q "experiment: 0 cells ran, 8 skipped" exp2.log || { cat exp2.log; fail "re-run redid cells"; }
[ "$(md5sum < out/cells.csv)" = "$before" ] || fail "re-run changed cells.csv"

# Delete one cell (row + folder): only it is rerun, with the same result
# (same seeds and labelled cases), and the pre-training is not redone.
old=$(grep "^full,2,1," out/cells.csv)
grep -v "^full,2,1," out/cells.csv > c.tmp && mv c.tmp out/cells.csv
rm -rf out/full/finetune/m2-r1
run exp3.log experiment --spec "$SPEC" --output out --threads 1
grep -q "experiment: 1 cells ran, 7 skipped" exp3.log || { cat exp3.log; fail "expected exactly 1 cell rerun"; }
grep -q "full M_lab=2 repeat 1: ran" exp3.log || { cat exp3.log; fail "the wrong cell was rerun"; }
grep -q "full: pre-training skipped" exp3.log || { cat exp3.log; fail "pre-training was redone"; }
new=$(grep "^full,2,1," out/cells.csv)
[ "$(cut -d, -f1-9 <<< "$old")" = "$(cut -d, -f1-9 <<< "$new")" ] \
  || fail "rerun cell differs: '$old' vs '$new'"

# Row lost but finetune.json kept (killed between the two writes): recovered.
grep -v "^random_init,1,0," out/cells.csv > c.tmp && mv c.tmp out/cells.csv
run exp4.log experiment --spec "$SPEC" --output out --threads 1
grep -q "random_init M_lab=1 repeat 0: skipped (row recovered" exp4.log || { cat exp4.log; fail "row not recovered"; }
grep -q "experiment: 0 cells ran, 8 skipped" exp4.log || { cat exp4.log; fail "recovery should not train"; }
[ "$(wc -l < out/cells.csv)" -eq 9 ] || fail "cells.csv should have 8 rows again"

# An unfinished pre-training resumes from its checkpoint.
rm out/full/pretrain/done
grep -v "^full," out/cells.csv > c.tmp && mv c.tmp out/cells.csv
rm -rf out/full/finetune
run exp5.log experiment --spec "$SPEC" --output out --threads 1
grep -q "full: pre-trained 12 steps (resumed at 12)" exp5.log || { cat exp5.log; fail "pre-training did not resume"; }
grep -q "experiment: 4 cells ran, 4 skipped" exp5.log || { cat exp5.log; fail "expected the 4 full cells"; }

# Errors: results without gnuplot-free flags on a missing folder; wrong kind.
set +e
"$TRAIN" results --dir nowhere > bad.log 2>&1; rc=$?
set -e
[ "$rc" -ne 0 ] && grep -q "cells.csv" bad.log || { cat bad.log; fail "results on a missing dir should fail naming cells.csv"; }
echo "PASS"
