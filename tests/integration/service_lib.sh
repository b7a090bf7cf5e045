# Sourced by the service integration tests (recovery, experiment, gang): a
# scratch folder as $WORK and $HOME, every process added to PIDS (and its
# children) killed on exit, the folder removed unless GCL_KEEP_WORK is set;
# and fail / sql / wait_for.
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do pkill -KILL -P "$p" 2>/dev/null || true; kill -KILL "$p" 2>/dev/null || true; done
  if [ -n "${GCL_KEEP_WORK:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
cd "$WORK"
export HOME="$WORK"
fail() { echo "FAIL: $*" >&2; tail -n 30 coord*.log w*.log >&2 || true; exit 1; }
sql() { sqlite3 -cmd ".timeout 5000" reg.db "$1"; }
# wait_for SECONDS COMMAND...: polls every 0.2 s.
wait_for() {
  local n=$(( $1 * 5 )); shift
  for _ in $(seq "$n"); do "$@" && return 0; sleep 0.2; done
  return 1
}
