#!/usr/bin/env bash
# Installs missing packages, builds, then runs the main job end to end through
# the service on loopback: starts gcl-coordinator (SQLite registry under
# runs/demo/) and one gcl-worker, submits examples/demo-experiment.yaml with
# gclctl (GCL pre-training on synthetic phantoms, then fine-tuning from it and
# from a random init), watches it, prints the Dice table and stops both.
# Both serve Prometheus /metrics: the coordinator on $GCL_COORD_METRICS
# (default 127.0.0.1:9464, as in deploy/prometheus/prometheus.yml), the worker
# on a free port listed in runs/demo/prometheus-workers.json (file SD); see
# docs/observability.md to watch the run in Prometheus and Grafana.
set -euo pipefail
source "$(dirname "$0")/common.sh"
gcl_install_packages
gcl_build gcl-train gcl-coordinator gcl-worker gclctl
cd "$GCL_ROOT"
DEMO=runs/demo
rm -rf "$DEMO"
mkdir -p "$DEMO"
CTL="$BUILD_DIR/client/gclctl"

"$BUILD_DIR/server/gcl-coordinator" --listen 127.0.0.1:0 --db "$DEMO/registry.db" \
  --artifacts "$DEMO/artifacts" --metrics-listen "${GCL_COORD_METRICS:-127.0.0.1:9464}" \
  --prometheus-sd-file "$GCL_ROOT/$DEMO/prometheus-workers.json" > "$DEMO/coordinator.log" 2>&1 &
COORD_PID=$!
WORKER_PID=
stop() {
  # Under set -e a non-zero wait here would become the demo's exit status.
  if [ -n "$WORKER_PID" ]; then kill -TERM "$WORKER_PID" 2>/dev/null && wait "$WORKER_PID" || true; fi
  kill -TERM "$COORD_PID" 2>/dev/null && wait "$COORD_PID" || true
  return 0
}
trap stop EXIT
for _ in $(seq 100); do grep -q "^listening on " "$DEMO/coordinator.log" && break; sleep 0.1; done
export GCL_ADDR="$(sed -n 's/^listening on //p' "$DEMO/coordinator.log")"
[ -n "$GCL_ADDR" ] || { cat "$DEMO/coordinator.log"; exit 1; }
"$BUILD_DIR/worker/gcl-worker" --coordinator "$GCL_ADDR" --work-dir "$DEMO/worker" \
  --trainer "$BUILD_DIR/worker/gcl-train" --worker-id demo-worker \
  --metrics-listen 127.0.0.1:0 > "$DEMO/worker.log" 2>&1 &
WORKER_PID=$!
echo "coordinator on $GCL_ADDR (registry $DEMO/registry.db), worker demo-worker"
echo "metrics: $(sed -n 's/^metrics on //p' "$DEMO/coordinator.log") (coordinator), $DEMO/prometheus-workers.json (workers)"

ID="$("$CTL" submit examples/demo-experiment.yaml)"
echo "submitted experiment $ID (gclctl watch $ID):"
"$CTL" watch "$ID"
echo
"$CTL" list --output table | head -n 12
echo
echo "== test Dice, mean ± std over repeats (synthetic phantoms, 64 px) =="
"$CTL" results "$ID" --per-class
echo
echo "Everything stays in $DEMO/ (registry, checkpoints, logs). To look around, start the"
echo "coordinator on it again and use gclctl list / logs JOB_ID / checkpoints JOB_ID:"
echo "  $BUILD_DIR/server/gcl-coordinator --listen 127.0.0.1:7070 --db $DEMO/registry.db --artifacts $DEMO/artifacts"
