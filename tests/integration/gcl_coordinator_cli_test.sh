#!/usr/bin/env bash
# The real gcl-coordinator and gclctl binaries on loopback with a SQLite file:
# submit, list with a reason, a bad spec's message, cancel, the read verbs'
# messages, graceful SIGTERM, and a restart that keeps the jobs.
# Usage: gcl_coordinator_cli_test.sh /path/to/gcl-coordinator /path/to/gclctl /path/to/examples
set -euo pipefail
COORD="$1"; CTL="$2"; EXAMPLES="$3"
WORK="$(mktemp -d)"
PID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT
cd "$WORK"
fail() { echo "FAIL: $*" >&2; [ -f coord.log ] && cat coord.log >&2; exit 1; }
export HOME="$WORK"  # no user config leaks in

start() {
  "$COORD" --listen 127.0.0.1:0 --db reg.db --artifacts art > coord.log 2>&1 &
  PID=$!
  for _ in $(seq 100); do grep -q "^listening on " coord.log && break; sleep 0.1; done
  ADDR="$(sed -n 's/^listening on //p' coord.log)"
  [ -n "$ADDR" ] || fail "coordinator did not report its address"
  export GCL_ADDR="$ADDR"
}
start

ID="$("$CTL" submit "$EXAMPLES/demo-pretrain.yaml" 2>submit.err)" || fail "submit failed: $(cat submit.err)"
[[ "$ID" =~ ^j-[0-9a-f]{12}$ ]] || fail "submit printed '$ID', not a job id"
"$CTL" list > list.txt || fail "list failed"
grep "$ID" list.txt | grep -q "QUEUED" || { cat list.txt; fail "list does not show $ID QUEUED"; }
grep "$ID" list.txt | grep -q "waiting for a worker" || { cat list.txt; fail "list shows no reason"; }
"$CTL" list --output json | grep -q "\"id\": \"$ID\"" || fail "list --output json lacks the job"

cat > bad.yaml <<'Y'
name: bad
kind: pretrain
dataset: {format: synthetic}
method:
  pool_kk: 3
Y
set +e
"$CTL" submit bad.yaml > bad.out 2> bad.err; RC=$?
set -e
[ "$RC" -eq 1 ] || fail "bad spec exit code $RC, want 1"
grep -q "bad.yaml:5:" bad.err || { cat bad.err; fail "bad spec message lacks file:line"; }
grep -q "method.pool_kk" bad.err || { cat bad.err; fail "bad spec message lacks the key"; }

"$CTL" cancel "$ID" | grep -q "CANCELLED" || fail "cancel did not report CANCELLED"
"$CTL" get "$ID" | grep -q "state: *CANCELLED" || fail "get does not show CANCELLED"

# The read verbs on a job that never ran, and their error messages.
"$CTL" workers | grep -q "no workers registered" || fail "workers on an empty fleet"
"$CTL" workers --output json | grep -q "{" || fail "workers --output json"
"$CTL" checkpoints "$ID" | grep -q "no checkpoints for $ID yet" || fail "checkpoints of a new job"
"$CTL" results "$ID" | grep -q "no results for $ID yet" || fail "results of a new job"
"$CTL" logs "$ID" > logs.out 2> logs.err || fail "logs of a new job failed"
grep -q "no log lines for $ID" logs.err || { cat logs.err; fail "logs: no 'no log lines' note"; }
set +e
"$CTL" logs j-000000000000 > /dev/null 2> nojob.err; RC_LOGS=$?
"$CTL" download c-0000000000ff -o x.ckpt > /dev/null 2> nockpt.err; RC_DL=$?
set -e
[ "$RC_LOGS" -eq 1 ] && [ "$RC_DL" -eq 1 ] || fail "unknown ids: exit codes $RC_LOGS $RC_DL, want 1 1"
grep -q 'no job j-000000000000 (check `gclctl list`)' nojob.err || { cat nojob.err; fail "unknown job message"; }
grep -q "no checkpoint c-0000000000ff" nockpt.err || { cat nockpt.err; fail "unknown checkpoint message"; }
[ ! -e x.ckpt ] && [ ! -e x.ckpt.partial ] || fail "a failed download left files behind"

ID2="$("$CTL" submit "$EXAMPLES/demo-pretrain.yaml" 2>/dev/null)"
kill -TERM "$PID"; wait "$PID" || fail "coordinator exited non-zero on SIGTERM"
PID=""
grep -q "SIGTERM received" coord.log || fail "no graceful shutdown message"
set +e
"$CTL" list > /dev/null 2> down.err; RC=$?
set -e
[ "$RC" -eq 1 ] || fail "list against a stopped coordinator: exit $RC, want 1"
grep -q "cannot reach the coordinator" down.err || { cat down.err; fail "unclear unreachable message"; }

start  # same database
"$CTL" get "$ID2" | grep -q "state: *QUEUED" || fail "job lost across a restart"
"$CTL" get "$ID" | grep -q "state: *CANCELLED" || fail "cancelled job lost across a restart"
echo PASS
