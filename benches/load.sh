#!/usr/bin/env bash
# Load benchmark of `kefu serve` on loopback — a script, not a test (issue 4, "Load and speed").
#
#   cargo build --release && benches/load.sh
#
# 1. builds the index of the whole corpus once (default ../shared/data/kb/aliyun, 14k articles)
#    into target/bench-index with `kefu index` (kept for later runs; delete it to rebuild);
# 2. starts `kefu serve` on it and measures "ready": process start → first 200 from /healthz;
# 3. runs wrk against /v1/search (rotating real queries from search/aliyun-faq) and /v1/route
#    (rotating real tickets from classify/cloud-queues; skipped when no model is loaded), once
#    per concurrency in CONNS;
# 4. reports requests/s, latency percentiles, the CPU the server and wrk used (and the server's
#    CPU milliseconds per request), the analytics events dropped and the server's peak RSS,
#    against the targets on 2 cores: search ≥ 1,000 req/s with p99 ≤ 20 ms, route ≥ 3,000 req/s,
#    RSS ≤ 300 MB, ready ≤ 1 s.
#
# Concurrency. wrk keeps CONNS connections each with one request in flight (a closed loop), so by
# Little's law the MEAN latency is CONNS / throughput whatever the server does: at 32 connections
# and 1,000 req/s it is 32 ms, and "p99 ≤ 20 ms" cannot hold by construction. The latency target
# is therefore checked at 8 connections (mean 8 ms at 1,000 req/s): search is CPU-bound at ≈ 2 ms
# a request, so 8 in flight keep both cores busy with ≈ 3 requests queued per core — a loaded
# server, not an overloaded one. The second concurrency, 32, shows throughput and tail under
# overload (many widgets typing at once); its latencies are dominated by queueing.
#
# CPU. The machine is shared: wrk (one thread is plenty on loopback), and anything else running,
# take the same cores. Each run prints the server's and wrk's CPU use (from /proc) and the
# server's CPU ms per request, which moves far less with outside load than req/s or latency do;
# compare builds by interleaving runs.
#
# Environment: KEFU_BIN (target/release/kefu), KB (the corpus), INDEX (target/bench-index),
# MODELS (models), DURATION (15s per run), CONNS ("8 32"), THREADS (1: wrk's), PORT (7799), DATA
# (../shared/data). Extra server settings pass through KEFU_* variables (e.g.
# KEFU_BLOCKING_THREADS). Needs wrk (apt-get install wrk). Traffic goes to 127.0.0.1 only; every
# run is bounded by DURATION.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DATA="${DATA:-$ROOT/../shared/data}"
KEFU_BIN="${KEFU_BIN:-target/release/kefu}"
KB="${KB:-$DATA/kb/aliyun}"
INDEX="${INDEX:-target/bench-index}"
MODELS="${MODELS:-models}"
DURATION="${DURATION:-15s}"
CONNS="${CONNS:-8 32}"
THREADS="${THREADS:-1}"
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
ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime of a process
run() { # name method path lines conns
  echo "== $1: wrk -t$THREADS -c$5 -d$DURATION (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  local s0 t0 s1 t1 out
  s0=$(cpu_ticks "$SERVER_PID"); t0=$(date +%s%N)
  out=$(WRK_LINES="$4" WRK_METHOD="$2" WRK_PATH="$3" \
    /usr/bin/time -f "WRK_CPU %U %S" \
    wrk -t"$THREADS" -c"$5" -d"$DURATION" --latency -s "$WORK/rotate.lua" "$URL" 2>&1) || true
  s1=$(cpu_ticks "$SERVER_PID"); t1=$(date +%s%N)
  grep -E 'RESULT|Non-2xx|Socket errors' <<<"$out" || true
  awk -v s="$((s1 - s0))" -v hz="$ticks" -v ns="$((t1 - t0))" '
    /^RESULT/ { for (i = 2; i <= NF; i++) if ($i ~ /^requests=/) { split($i, kv, "="); n = kv[2] } }
    /^WRK_CPU/ { wrk = $2 + $3 }
    END {
      wall = ns / 1e9; server = s / hz
      printf "CPU server=%.0f%% wrk=%.0f%% (of one core; 2 cores = 200%%), server %.2f ms per request\n",
        100 * server / wall, 100 * wrk / wall, (n > 0 ? 1000 * server / n : 0)
    }' <<<"$out"
}
# Warm the OS page cache and the readers.
WRK_LINES="$WORK/search.txt" WRK_METHOD=GET wrk -t1 -c4 -d3s -s "$WORK/rotate.lua" "$URL" >/dev/null
for conns in $CONNS; do
  run "GET /v1/search (aliyun-faq queries)" GET /v1/search "$WORK/search.txt" "$conns"
done
if grep -q '"model_labels":0' <<<"$health"; then
  echo "== POST /v1/route: skipped (no model under $MODELS/router)"
else
  for conns in $CONNS; do
    run "POST /v1/route (cloud-queues tickets)" POST /v1/route "$WORK/route.txt" "$conns"
  done
fi
dropped=$(curl -fs "$URL/metrics" | awk '/^kefu_analytics_dropped_events / {print $2}')
echo "analytics events dropped (writer fell behind): ${dropped:-unknown}"

# --- 4. memory
peak=$(awk '/^VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
echo "server RSS now $(( $(rss_kb) / 1024 )) MB, peak $(( peak / 1024 )) MB"
echo "targets (2 cores): search >= 1000 req/s with p99 <= 20 ms; route >= 3000 req/s; RSS <= 300 MB; ready <= 1000 ms"
