#!/usr/bin/env bash
# Makes the TLS files for gcl-coordinator, gclctl and gcl-worker with openssl:
#   ca.pem / ca.key          a private CA (10 years)
#   server.pem / server.key  the coordinator's certificate (825 days); SAN:
#                            localhost, 127.0.0.1, ::1 and every HOSTNAME given
#   client.pem / client.key  a client certificate for mTLS (--tls-client-ca)
# Usage: deploy/make-certs.sh [--force] OUT_DIR [HOSTNAME|IP ...]
# An existing CA in OUT_DIR is kept and signs the new server and client
# certificates (so clients that trust it keep working; rerun to add host
# names); --force makes a new CA. Keys are written mode 600.
set -euo pipefail

usage() { echo "usage: $0 [--force] OUT_DIR [HOSTNAME|IP ...]" >&2; exit 2; }
FORCE=0
if [ "${1:-}" = "--force" ]; then FORCE=1; shift; fi
case "${1:-}" in ""|-h|--help) usage ;; -*) echo "$0: unknown option $1" >&2; usage ;; esac
OUT="$1"; shift
command -v openssl >/dev/null || { echo "$0: openssl is not installed (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$OUT"
cd "$OUT"
umask 077

SAN="DNS:localhost,IP:127.0.0.1,IP:::1"
for h in "$@"; do
  case "$h" in
    *[!0-9.]*) if [[ "$h" == *:* ]]; then SAN+=",IP:$h"; else SAN+=",DNS:$h"; fi ;;
    *) SAN+=",IP:$h" ;;
  esac
done

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
serial() { echo "0x$(openssl rand -hex 16)"; }

if [ -f ca.pem ] && [ -f ca.key ] && [ "$FORCE" = 0 ]; then
  echo "keeping the CA in $OUT/ca.pem (pass --force to make a new one)"
elif [ -e ca.pem ] && [ "$FORCE" = 0 ]; then
  echo "$0: $OUT/ca.pem exists without ca.key: refusing to overwrite it (pass --force)" >&2
  exit 1
else
  key ca.key
  openssl req -x509 -new -key ca.key -sha256 -days 3650 -subj "/CN=GCL coordinator CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out ca.pem
  echo "made CA:     $OUT/ca.pem (key: ca.key, keep it off the lab machines)"
fi

# sign NAME CN EXTENSIONS: NAME.key + NAME.pem signed by the CA.
sign() {
  local name="$1" cn="$2" ext="$3"
  key "$name.key"
  openssl req -new -key "$name.key" -subj "/CN=$cn" -out "$name.csr"
  printf '%s\n' "$ext" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -set_serial "$(serial)" -sha256 \
    -days 825 -extfile "$name.ext" -out "$name.pem" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
  chmod 644 "$name.pem"
}
sign server gcl-coordinator "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$SAN"
NAMES="$(echo "$SAN" | sed 's/DNS://g; s/IP://g; s/,/, /g')"
echo "made server: $OUT/server.pem + server.key (names: $NAMES)"
sign client gcl-client "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth"
echo "made client: $OUT/client.pem + client.key (for mTLS)"
chmod 644 ca.pem

cat <<MSG
next:
  gcl-coordinator --listen 0.0.0.0:7070 --db reg.db --tls-cert $OUT/server.pem --tls-key $OUT/server.key \\
                  --tokens tokens.yaml [--tls-client-ca $OUT/ca.pem]
  gclctl --addr HOST:7070 --tls-ca $OUT/ca.pem [--tls-cert $OUT/client.pem --tls-key $OUT/client.key] list
MSG
