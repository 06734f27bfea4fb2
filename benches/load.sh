#!/usr/bin/env bash
# Load benchmark of `kefu serve` on loopback — a script, not a test (issue 4, "Load and speed").
#
#   cargo build --release && benches/load.sh
#
# 1. builds the index of the whole corpus once (default ../shared/data/kb/aliyun, 14k articles)
#    into target/bench-index with `kefu index` (kept for later runs; delete it to rebuild);
# 2. starts `kefu serve` on it and measures "ready": process start → first 200 from /healthz;
# 3. runs wrk against /v1/search (rotating real queries from search/aliyun-faq) and /v1/route
#    (rotating real tickets from classify/cloud-queues; skipped when no model is loaded);
# 4. reports requests/s, latency percentiles and the server's peak RSS, against the targets on
#    2 cores: search ≥ 1,000 req/s with p99 ≤ 20 ms, route ≥ 3,000 req/s, RSS ≤ 300 MB,
#    ready ≤ 1 s.
#
# Environment: KEFU_BIN (target/release/kefu), KB (the corpus), INDEX (target/bench-index),
# MODELS (models), DURATION (20s), CONNS (32), THREADS (2: wrk's), PORT (7799), DATA
# (../shared/data). Needs wrk (apt-get install wrk). Traffic goes to 127.0.0.1 only; every run is
# bounded by DURATION.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DATA="${DATA:-$ROOT/../shared/data}"
KEFU_BIN="${KEFU_BIN:-target/release/kefu}"
KB="${KB:-$DATA/kb/aliyun}"
INDEX="${INDEX:-target/bench-index}"
MODELS="${MODELS:-models}"
DURATION="${DURATION:-20s}"
CONNS="${CONNS:-32}"
THREADS="${THREADS:-2}"
PORT="${PORT:-7799}"
URL="http://127.0.0.1:$PORT"

command -v wrk >/dev/null || { echo "load.sh: wrk is required (apt-get install -y wrk)" >&2; exit 2; }
command -v curl >/dev/null || { echo "load.sh: curl is required" >&2; exit 2; }
[[ -x "$KEFU_BIN" ]] || { echo "load.sh: no kefu binary at $KEFU_BIN (cargo build --release)" >&2; exit 2; }
[[ -d "$KB" ]] || { echo "load.sh: no corpus at $KB (set KB or DATA)" >&2; exit 2; }

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- 1. the index, once
if [[ ! -f "$INDEX/meta.json" ]]; then
  echo "== indexing $KB into $INDEX (once)"
  # Articles are <product>/cn.zh-CN/** and <product>/intl.en-US/** (data README).
  mapfile -t dirs < <(find "$KB" -mindepth 2 -maxdepth 2 -type d \( -name cn.zh-CN -o -name intl.en-US \) | sort)
  /usr/bin/time -f "indexed in %e s, peak RSS %M KB" "$KEFU_BIN" index --index "$INDEX" "${dirs[@]}" 2>&1 \
    | grep -v '^skipped' | tail -n 3
fi

# --- query and ticket files for wrk (URL-encoded paths / JSON bodies, one per line)
python3 - "$DATA" "$WORK" <<'PY'
import json, sys, urllib.parse, pathlib
data, work = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
queries = []
with open(data / "search/aliyun-faq/queries.dev.jsonl", encoding="utf-8") as f:
    for line in f:
        q = json.loads(line)["query"]
        queries.append("/v1/search?limit=10&q=" + urllib.parse.quote(q))
(work / "search.txt").write_text("\n".join(queries[:1000]) + "\n", encoding="utf-8")
tickets = []
with open(data / "classify/cloud-queues/dev.jsonl", encoding="utf-8") as f:
    for line in f:
        t = json.loads(line)
        tickets.append(json.dumps({"subject": "", "body": t["text"]}, ensure_ascii=False))
(work / "route.txt").write_text("\n".join(tickets[:1000]) + "\n", encoding="utf-8")
PY

cat >"$WORK/rotate.lua" <<'LUA'
-- Each wrk thread walks the lines of a file: GET paths, or POST bodies to one path.
local lines, i = {}, 0
local file, method, path = os.getenv("WRK_LINES"), os.getenv("WRK_METHOD"), os.getenv("WRK_PATH")
for line in io.lines(file) do if #line > 0 then lines[#lines + 1] = line end end
function setup(thread) thread:set("offset", math.random(#lines)) end
function init() i = offset or 0 end
request = function()
  i = i % #lines + 1
  if method == "POST" then
    return wrk.format("POST", path, { ["Content-Type"] = "application/json" }, lines[i])
  end
  return wrk.format("GET", lines[i])
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT req/s=%.0f p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms errors=%d requests=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout + summary.errors.status,
    summary.requests))
end
LUA

# --- 2. start and time "ready"
echo "== starting $KEFU_BIN serve --index $INDEX"
start_ns=$(date +%s%N)
KEFU_LOG=warn "$KEFU_BIN" serve --index "$INDEX" --models "$MODELS" --addr "127.0.0.1:$PORT" \
  --analytics-db "$WORK/analytics.sqlite3" >"$WORK/serve.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 3000); do
  if curl -fs -o /dev/null "$URL/healthz"; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "server died:"; cat "$WORK/serve.log"; exit 1; }
  sleep 0.01
done
ready_ms=$(( ($(date +%s%N) - start_ns) / 1000000 ))
health="$(curl -fs "$URL/healthz")"
echo "ready after ${ready_ms} ms: $health"
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
echo "RSS when ready: $(( $(rss_kb) / 1024 )) MB"

# --- 3. load
run() { # name method path lines
  echo "== $1: wrk -t$THREADS -c$CONNS -d$DURATION"
  WRK_LINES="$4" WRK_METHOD="$2" WRK_PATH="$3" \
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$WORK/rotate.lua" "$URL" | grep -E 'RESULT|Non-2xx|Socket errors' || true
}
# Warm the OS page cache and the readers.
WRK_LINES="$WORK/search.txt" WRK_METHOD=GET wrk -t1 -c4 -d3s -s "$WORK/rotate.lua" "$URL" >/dev/null
run "GET /v1/search (aliyun-faq queries)" GET /v1/search "$WORK/search.txt"
if grep -q '"model_labels":0' <<<"$health"; then
  echo "== POST /v1/route: skipped (no model under $MODELS/router)"
else
  run "POST /v1/route (cloud-queues tickets)" POST /v1/route "$WORK/route.txt"
fi

# --- 4. memory
peak=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
echo "server RSS now $(( $(rss_kb) / 1024 )) MB, peak $(( peak / 1024 )) MB"
echo "targets (2 cores): search >= 1000 req/s with p99 <= 20 ms; route >= 3000 req/s; RSS <= 300 MB; ready <= 1000 ms"
