#!/usr/bin/env bash
# atec-faq dev MRR@10 on each half of the queries (first / second half of the file; the file
# keeps each connected group of positive pairs together, so no group is cut), to tune on one
# half and check on the other. Usage: scripts/atec-halves.sh [path/to/kefu]
set -euo pipefail
cd "$(dirname "$0")/.."
KEFU=${1:-${CARGO_TARGET_DIR:-target}/release/kefu}
DATA=${KEFU_DATA:-../shared/data/search}/atec-faq
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=$(wc -l < "$DATA/queries.dev.jsonl")
half=$((n / 2))
head -n "$half" "$DATA/queries.dev.jsonl" > "$tmp/a.jsonl"
tail -n +"$((half + 1))" "$DATA/queries.dev.jsonl" > "$tmp/b.jsonl"
for part in a b; do
  report=$("$KEFU" eval search --docs "$DATA/docs.jsonl" --queries "$tmp/$part.jsonl" --exclude-query-id --json)
  python3 - "$part" "$report" <<'PY'
import json, sys
part, r = sys.argv[1], json.loads(sys.argv[2])
lat = r["latency_ms"]
print(f"atec-faq half {part}: {r['queries']} queries, MRR@10 {r['mrr@10']:.4f}, "
      f"R@100 {r['recall@100']:.4f}, search p50 {lat['p50']:.3f} p99 {lat['p99']:.3f} ms, "
      f"index {r['index_seconds']:.1f} s")
PY
done
