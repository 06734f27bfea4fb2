#!/usr/bin/env bash
# Browser end-to-end test against a real `kefu serve`.
#
#   KEFU_BIN=target/release/kefu CHROMIUM=/usr/bin/chromium tests/browser/run.sh
#
# Builds nothing. Starts the given kefu binary on a free loopback port with a fresh, empty index
# directory (the server builds its index from the bundled kb/ on first start), waits for /healthz,
# installs the test's npm dependencies if needed (npm ci), runs e2e.mjs, stops the server and exits
# with e2e's status. Needs node >= 20, npm and a Chromium (apt-get install chromium).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

KEFU_BIN="${KEFU_BIN:-target/release/kefu}"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-60}"

if [[ ! -x "$KEFU_BIN" ]]; then
  echo "run.sh: kefu binary not found or not executable: $KEFU_BIN (set KEFU_BIN, or cargo build --release first)" >&2
  exit 2
fi
if [[ ! -x "$CHROMIUM" ]]; then
  echo "run.sh: no Chromium at $CHROMIUM (set CHROMIUM, or apt-get install chromium)" >&2
  exit 2
fi
command -v node >/dev/null || { echo "run.sh: node is required" >&2; exit 2; }

WORK="$(mktemp -d)"
LOG="$WORK/kefu.log"
SERVER_PID=""

cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port, chosen by the kernel.
PORT="$(node -e "const s=require('net').createServer();s.listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})")"
export KEFU_URL="http://127.0.0.1:$PORT"

echo "run.sh: starting $KEFU_BIN serve on $KEFU_URL (log: $LOG)"
"$KEFU_BIN" serve --index "$WORK/index" --addr "127.0.0.1:$PORT" >"$LOG" 2>&1 &
SERVER_PID=$!

# Wait for /healthz (the first start indexes kb/).
healthy=""
deadline=$((SECONDS + HEALTH_TIMEOUT))
while (( SECONDS < deadline )); do
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "run.sh: kefu serve exited before becoming healthy; its log:" >&2
    tail -n 50 "$LOG" >&2 || true
    exit 1
  fi
  if node -e "fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))" "$KEFU_URL/healthz" 2>/dev/null; then
    healthy=1
    break
  fi
  sleep 0.5
done
if [[ -z "$healthy" ]]; then
  echo "run.sh: $KEFU_URL/healthz not OK after ${HEALTH_TIMEOUT}s; server log:" >&2
  tail -n 50 "$LOG" >&2 || true
  exit 1
fi
echo "run.sh: server healthy"

if [[ ! -d "$HERE/node_modules/playwright-core" ]]; then
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
fi

status=0
node "$HERE/e2e.mjs" || status=$?
if (( status != 0 )); then
  echo "run.sh: e2e failed (exit $status); last lines of the server log:" >&2
  tail -n 30 "$LOG" >&2 || true
fi
exit "$status"
