#!/usr/bin/env bash
# Soak test of `lazyllm serve`: starts it on a free loopback port with the tiny trained model
# (../shared/models/stories260K.gguf), runs tests/server/soak.mjs against it (CLIENTS clients for
# SECONDS seconds: completions and chat, streamed and not, a quarter hanging up mid-stream; the
# server's RSS and open descriptors must stay flat and it must answer as before), then stops it
# with SIGTERM and checks that it exits 0. Prints soak.mjs's JSON summary.
# Usage: bash scripts/soak-server.sh [BIN=build/lazyllm] [SECONDS=180] [CLIENTS=32]
#   (after `npm ci` in tests/server; LAZYLLM_SHARED_DIR overrides ../shared)
#   Pass --no-rss-check in LAZYLLM_SOAK_FLAGS for a sanitizer build.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(realpath "${1:-$ROOT/build/lazyllm}")
SECONDS_=${2:-180}
CLIENTS=${3:-32}
MODEL=${LAZYLLM_SHARED_DIR:-$ROOT/../shared}/models/stories260K.gguf
[ -x "$BIN" ] || { echo "no lazyllm binary at $BIN" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "no model at $MODEL" >&2; exit 1; }
[ -d "$ROOT/tests/server/node_modules" ] || { echo "run npm ci in tests/server first" >&2; exit 1; }

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2> /dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; echo "--- server log (last 30 lines)" >&2; tail -30 "$WORK/server.log" >&2; exit 1; }

KEY=soak-key-$RANDOM
"$BIN" serve -m "$MODEL" --port 0 --parallel 2 --queue 8 --ctx 512 --threads 2 --api-key "$KEY" 2> "$WORK/server.log" &
SERVER_PID=$!
for _ in $(seq 600); do
  grep -q "listening on" "$WORK/server.log" && break
  kill -0 "$SERVER_PID" 2> /dev/null || fail "server exited at start"
  sleep 0.1
done
URL=$(grep -o 'http://[0-9.]*:[0-9]*' "$WORK/server.log" | head -1)
[ -n "$URL" ] || fail "server did not start"
echo "soak: $CLIENTS clients for $SECONDS_ s against $URL (pid $SERVER_PID, $(nproc) cores, model $(basename "$MODEL"), commit $(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo unknown))" >&2

# shellcheck disable=SC2086  # LAZYLLM_SOAK_FLAGS: words
node "$ROOT/tests/server/soak.mjs" "$URL" "$KEY" "$SERVER_PID" "$SECONDS_" "$CLIENTS" ${LAZYLLM_SOAK_FLAGS:-} || fail "soak"

kill -TERM "$SERVER_PID"
rc=0
wait "$SERVER_PID" || rc=$?
SERVER_PID=""
[ "$rc" = 0 ] || fail "server exited with $rc after SIGTERM"
grep -q "stopped" "$WORK/server.log" || fail "no clean stop in the log"
echo "soak passed; server stopped cleanly" >&2
