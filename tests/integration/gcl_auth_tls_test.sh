#!/usr/bin/env bash
# Tokens and TLS end to end with the real binaries: deploy/make-certs.sh makes
# a CA and certificates, gcl-coordinator serves TLS with a tokens file on
# 127.0.0.1, gclctl (flags, environment, config file) and gcl-worker talk to
# it; then the same with mTLS (--tls-client-ca).
# Usage: gcl_auth_tls_test.sh COORDINATOR GCLCTL MAKE_CERTS_SH [GCL_WORKER]
set -euo pipefail
COORD="$1"; CTL="$2"; MAKE_CERTS="$3"; WORKER="${4:-}"
WORK="$(mktemp -d)"
PID=""; WPID=""
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; [ -n "$WPID" ] && kill "$WPID" 2>/dev/null; rm -rf "$WORK"' EXIT
cd "$WORK"
fail() { echo "FAIL: $*" >&2; [ -f coord.log ] && cat coord.log >&2; exit 1; }
export HOME="$WORK"  # no user config leaks in
unset GCL_ADDR GCL_TOKEN GCL_TLS_CA GCL_TLS_CERT GCL_TLS_KEY

command -v openssl >/dev/null || { echo "SKIP: openssl is not installed"; exit 0; }
bash "$MAKE_CERTS" certs > certs.log || fail "make-certs.sh failed: $(cat certs.log)"
for f in ca.pem ca.key server.pem server.key client.pem client.key; do
  [ -s "certs/$f" ] || fail "make-certs.sh did not make $f"
done
[ "$(stat -c %a certs/server.key)" = 600 ] || fail "server.key is not mode 600"
bash "$MAKE_CERTS" certs > again.log || fail "second make-certs.sh run failed"
grep -q "keeping the CA" again.log || fail "a second run did not keep the CA"
openssl verify -CAfile certs/ca.pem certs/server.pem > /dev/null || fail "server.pem not signed by the kept CA"

cat > tokens.yaml <<'Y'
tokens:
  - {token: "s3cr3t", user: alice, role: user}
  - {token: "w0rk3r", user: node1, role: worker}
Y

# start [extra flags...]: a coordinator on 127.0.0.1 with TLS and tokens.
start() {
  "$COORD" --listen 127.0.0.1:0 --db reg.db --tls-cert certs/server.pem --tls-key certs/server.key \
    --tokens tokens.yaml "$@" > coord.log 2>&1 &
  PID=$!
  for _ in $(seq 100); do grep -q "^listening on " coord.log && break; sleep 0.1; done
  local addr; addr="$(sed -n 's/^listening on //p' coord.log)"
  [ -n "$addr" ] || fail "coordinator did not report its address"
  ADDR="localhost:${addr##*:}"  # with TLS, a name in the certificate
}
stop() { kill -TERM "$PID"; wait "$PID" || true; PID=""; }
# expect_fail WHAT PATTERN CMD...: CMD exits 1 and its stderr matches PATTERN.
expect_fail() {
  local what="$1" pattern="$2"; shift 2
  set +e; "$@" > out.txt 2> err.txt; local rc=$?; set -e
  [ "$rc" -eq 1 ] || { cat err.txt >&2; fail "$what: exit $rc, want 1"; }
  grep -q -- "$pattern" err.txt || { cat err.txt >&2; fail "$what: message lacks '$pattern'"; }
}

# A reachable address without TLS and tokens is refused.
set +e; "$COORD" --listen 0.0.0.0:0 --db open.db > open.log 2>&1; RC=$?; set -e
[ "$RC" -eq 1 ] || fail "0.0.0.0 without TLS/tokens: exit $RC, want 1"
grep -q -- "--insecure-allow-remote" open.log || { cat open.log; fail "refusal does not say how to fix it"; }

start
"$CTL" --addr "$ADDR" --tls-ca certs/ca.pem --token s3cr3t list > list.txt || fail "list with CA and token failed"
grep -q "^ID " list.txt || fail "list printed no table"
cat > job.yaml <<'Y'
name: tls-job
kind: pretrain
dataset: {format: synthetic, image_size: 32}
train: {steps: 10, batch: 16}
Y
ID="$(GCL_ADDR="$ADDR" GCL_TLS_CA=certs/ca.pem GCL_TOKEN=s3cr3t "$CTL" submit job.yaml 2> err.txt)" \
  || { cat err.txt; fail "submit through the environment failed"; }
[[ "$ID" =~ ^j-[0-9a-f]{12}$ ]] || fail "submit printed '$ID', not a job id"
"$CTL" --addr "$ADDR" --tls-ca certs/ca.pem --token s3cr3t get "$ID" --output json | grep -q '"owner": "alice"' \
  || fail "the job's owner is not alice"

expect_fail "missing token" "missing token: pass --token or set GCL_TOKEN" \
  "$CTL" --addr "$ADDR" --tls-ca certs/ca.pem list
expect_fail "wrong token" "invalid token" "$CTL" --addr "$ADDR" --tls-ca certs/ca.pem --token s3cr3T list
expect_fail "worker token" "not allowed: node1 has role worker" \
  "$CTL" --addr "$ADDR" --tls-ca certs/ca.pem --token w0rk3r list
expect_fail "plaintext to TLS" "if it serves TLS, pass --tls-ca" "$CTL" --addr "$ADDR" --token s3cr3t list
bash "$MAKE_CERTS" other > /dev/null
expect_fail "foreign CA" "TLS handshake with $ADDR failed" \
  "$CTL" --addr "$ADDR" --tls-ca other/ca.pem --token s3cr3t list
set +e; "$CTL" --addr "$ADDR" --tls-ca nope.pem --token s3cr3t list 2> err.txt; RC=$?; set -e
[ "$RC" -eq 2 ] && grep -q -- "--tls-ca nope.pem: cannot read" err.txt || { cat err.txt; fail "unreadable CA: exit $RC"; }

# The config file, with paths relative to its folder.
mkdir -p .config/gcl
cp certs/ca.pem .config/gcl/ca.pem
printf 'addr: %s\ntoken: s3cr3t\ntls_ca: ca.pem\n' "$ADDR" > .config/gcl/config.yaml
"$CTL" list > list.txt 2> err.txt || { cat err.txt; fail "list from config.yaml failed"; }
grep -q "$ID" list.txt || fail "list from config.yaml lacks the job"
rm .config/gcl/config.yaml

if [ -n "$WORKER" ]; then
  # A user token cannot register a worker: the agent stops at once.
  set +e
  timeout 20 "$WORKER" --coordinator "$ADDR" --tls-ca certs/ca.pem --token s3cr3t --work-dir wd \
    --trainer /bin/true --worker-id w-user > worker.log 2>&1; RC=$?
  set -e
  [ "$RC" -eq 1 ] || { cat worker.log; fail "worker with a user token: exit $RC, want 1"; }
  grep -q "needs a worker or admin token" worker.log || { cat worker.log; fail "worker refusal unclear"; }
  GCL_TLS_CA=certs/ca.pem GCL_TOKEN=w0rk3r "$WORKER" --coordinator "$ADDR" --work-dir wd \
    --trainer /bin/true --worker-id w-tls > worker.log 2>&1 &
  WPID=$!
  for _ in $(seq 100); do grep -q "registered as w-tls" worker.log && break; sleep 0.1; done
  grep -q "registered as w-tls" worker.log || { cat worker.log; fail "worker did not register over TLS"; }
  # A read verb added later (ListWorkers) carries the token like every call.
  "$CTL" --addr "$ADDR" --tls-ca certs/ca.pem --token s3cr3t workers > workers.txt 2> err.txt \
    || { cat err.txt; fail "workers over TLS failed"; }
  grep -q "w-tls" workers.txt || { cat workers.txt; fail "workers does not list w-tls"; }
  expect_fail "workers without token" "missing token" "$CTL" --addr "$ADDR" --tls-ca certs/ca.pem workers
  kill -TERM "$WPID"; wait "$WPID" || true; WPID=""
fi

# SIGHUP reads the tokens file again: alice's token revoked, carol's added.
# A file with a mistake keeps the tokens in force.
printf 'tokens:\n  - {token: "c4r0l", user: carol, role: user}\n  - {token: "", user: x, role: user}\n' > tokens.yaml
kill -HUP "$PID"
for _ in $(seq 50); do grep -q "SIGHUP: tokens not reloaded" coord.log && break; sleep 0.1; done
grep -q "SIGHUP: tokens not reloaded, the previous ones stay: tokens.yaml:3:" coord.log \
  || fail "a bad tokens file on SIGHUP was not reported with its line"
"$CTL" --addr "$ADDR" --tls-ca certs/ca.pem --token s3cr3t list > /dev/null || fail "a bad reload dropped alice"
printf 'tokens:\n  - {token: "c4r0l", user: carol, role: user}\n' > tokens.yaml
kill -HUP "$PID"
for _ in $(seq 50); do grep -q "SIGHUP: 1 tokens reloaded from tokens.yaml" coord.log && break; sleep 0.1; done
grep -q "SIGHUP: 1 tokens reloaded from tokens.yaml" coord.log || fail "SIGHUP did not reload the tokens"
expect_fail "revoked token" "invalid token" "$CTL" --addr "$ADDR" --tls-ca certs/ca.pem --token s3cr3t list
"$CTL" --addr "$ADDR" --tls-ca certs/ca.pem --token c4r0l list > /dev/null || fail "the added token is refused"
kill -0 "$PID" || fail "the coordinator did not survive SIGHUP"
# New server certificates (same CA) are used after SIGHUP, without a restart.
OLD_SERIAL="$(openssl x509 -in certs/server.pem -noout -serial)"
bash "$MAKE_CERTS" certs > /dev/null || fail "re-issuing the certificates failed"
[ "$(openssl x509 -in certs/server.pem -noout -serial)" != "$OLD_SERIAL" ] || fail "make-certs.sh kept the server certificate"
kill -HUP "$PID"
for _ in $(seq 50); do grep -q "TLS files changed: new connections use them" coord.log && break; sleep 0.1; done
grep -q "TLS files changed: new connections use them" coord.log || fail "SIGHUP did not reload the TLS files"
SERVED=""
for _ in $(seq 30); do  # gRPC reads the served copy every second
  SERVED="$(openssl s_client -connect "127.0.0.1:${ADDR##*:}" -CAfile certs/ca.pem < /dev/null 2> /dev/null \
    | openssl x509 -noout -serial 2> /dev/null || true)"
  [ -n "$SERVED" ] && [ "$SERVED" != "$OLD_SERIAL" ] && break; sleep 0.2
done
[ "$SERVED" = "$(openssl x509 -in certs/server.pem -noout -serial)" ] || fail "the server still presents $SERVED"
"$CTL" --addr "$ADDR" --tls-ca certs/ca.pem --token c4r0l list > /dev/null || fail "list after the TLS reload failed"
printf 'tokens:\n  - {token: "s3cr3t", user: alice, role: user}\n  - {token: "w0rk3r", user: node1, role: worker}\n' > tokens.yaml
stop

# mTLS: the coordinator wants a client certificate signed by the CA.
start --tls-client-ca certs/ca.pem
expect_fail "mTLS without a client certificate" "--tls-cert/--tls-key" \
  "$CTL" --addr "$ADDR" --tls-ca certs/ca.pem --token s3cr3t list
expect_fail "mTLS with a foreign client certificate" "--tls-cert/--tls-key" \
  "$CTL" --addr "$ADDR" --tls-ca certs/ca.pem --tls-cert other/client.pem --tls-key other/client.key --token s3cr3t list
"$CTL" --addr "$ADDR" --tls-ca certs/ca.pem --tls-cert certs/client.pem --tls-key certs/client.key --token s3cr3t \
  list > list.txt 2> err.txt || { cat err.txt; fail "mTLS with the client certificate failed"; }
grep -q "$ID" list.txt || fail "mTLS list lacks the job"
expect_fail "mTLS with a certificate but no token" "missing token" \
  "$CTL" --addr "$ADDR" --tls-ca certs/ca.pem --tls-cert certs/client.pem --tls-key certs/client.key list

if [ -n "$WORKER" ]; then
  # gcl-worker follows re-issued certificates, here of a new CA, without a
  # restart: SIGHUP (or every 60 s) reads its files again.
  # wait_for FILE PATTERN [COUNT]: up to 30 s for COUNT lines matching.
  wait_for() {
    for _ in $(seq 300); do [ "$(grep -c -- "$2" "$1")" -ge "${3:-1}" ] && return; sleep 0.1; done
    cat "$1" >&2; fail "no ${3:-1} line(s) '$2' in $1"
  }
  mkdir wcerts && cp certs/ca.pem certs/client.pem certs/client.key wcerts/
  "$WORKER" --coordinator "$ADDR" --tls-ca wcerts/ca.pem --tls-cert wcerts/client.pem \
    --tls-key wcerts/client.key --token w0rk3r --work-dir wd2 --trainer /bin/true \
    --worker-id w-mtls > worker.log 2>&1 &
  WPID=$!
  wait_for worker.log "registered as w-mtls"
  [ "$(stat -c %a wd2/tls)" = 700 ] || fail "the worker's served copy of its TLS files is not private"
  # Half-copied (a certificate without its key): refused, the old set stays.
  cp other/client.pem wcerts/client.pem
  kill -HUP "$WPID"
  wait_for worker.log "TLS files not used, the previous ones stay: --tls-key wcerts/client.key: not the private key"
  cp other/client.key other/ca.pem wcerts/
  kill -HUP "$WPID"
  wait_for worker.log "gcl-worker: TLS files changed: new connections use them"
  # The coordinator comes back on the same port with the new CA's
  # certificates and an empty registry. Only a worker presenting and trusting
  # the new files gets through to hear that it must register again.
  PORT="${ADDR##*:}"
  stop
  start --listen "127.0.0.1:$PORT" --db reg2.db --tls-cert other/server.pem \
    --tls-key other/server.key --tls-client-ca other/ca.pem
  wait_for worker.log "registered as w-mtls" 2
  kill -TERM "$WPID"
  set +e; wait "$WPID"; RC=$?; set -e; WPID=""
  [ "$RC" -eq 0 ] || { cat worker.log; fail "worker exit $RC after SIGTERM, want 0"; }
  [ ! -e wd2/tls ] || fail "the worker left its served copy of the TLS files behind"
  stop

  # A worker token rotated without restarting the agent: --token-file, read
  # again on SIGHUP. A 3 s lease (heartbeats every second) shows a worker
  # that sends a revoked token as LOST within seconds.
  start --lease-seconds 3
  printf 'w0rk3r\n' > worker.token
  "$WORKER" --coordinator "$ADDR" --tls-ca certs/ca.pem --token-file worker.token --work-dir wd3 \
    --trainer /bin/true --worker-id w-file > worker3.log 2>&1 &
  WPID=$!
  wait_for worker3.log "registered as w-file"
  worker_state() {
    "$CTL" --addr "$ADDR" --tls-ca certs/ca.pem --token s3cr3t workers | awk '$1 == "w-file" { for (i = 2; i <= NF; i++) if ($i ~ /^(READY|LOST|DRAINING)$/) print $i }'
  }
  # The admin revokes the worker's token and issues a new one.
  printf 'tokens:\n  - {token: "s3cr3t", user: alice, role: user}\n  - {token: "n3w-w0rk3r", user: node1, role: worker}\n' > tokens.yaml
  kill -HUP "$PID"
  wait_for worker3.log "Heartbeat: .*token" 2
  printf '\n' > worker.token
  kill -HUP "$WPID"
  wait_for worker3.log "token not reloaded, the previous one stays: --token-file worker.token: empty"
  for _ in $(seq 100); do [ "$(worker_state)" = LOST ] && break; sleep 0.1; done
  [ "$(worker_state)" = LOST ] || fail "a worker with a revoked token is $(worker_state), want LOST"
  printf 'n3w-w0rk3r\n' > worker.token.new && mv worker.token.new worker.token
  kill -HUP "$WPID"
  wait_for worker3.log "token reloaded from worker.token"
  wait_for worker3.log "registered as w-file" 2
  sleep 4  # longer than the lease: only a working token keeps it
  [ "$(worker_state)" = READY ] || { cat worker3.log; fail "after the new token the worker is $(worker_state), want READY"; }
  kill -TERM "$WPID"; wait "$WPID" || true; WPID=""
fi
stop
echo PASS
