#!/usr/bin/env bash
# Installs missing packages, builds, then runs the main job end to end on the
# built-in synthetic phantoms: GCL pre-training, fine-tuning from it and from a
# random init, and prints both Dice tables. Outputs land in runs/demo/.
set -euo pipefail
source "$(dirname "$0")/common.sh"
gcl_install_packages
gcl_build gcl-train
TRAIN="$BUILD_DIR/worker/gcl-train"
cd "$GCL_ROOT"
rm -rf runs/demo
"$TRAIN" pretrain --spec examples/demo-pretrain.yaml
echo
echo "== fine-tuning from the GCL encoder =="
"$TRAIN" finetune --spec examples/demo-finetune.yaml
echo
echo "== fine-tuning from a random initialisation (baseline) =="
"$TRAIN" finetune --spec examples/demo-finetune-random.yaml
