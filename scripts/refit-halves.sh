#!/usr/bin/env bash
# The default `kefu train` trains again on the dev rows after calibrating on them (refit), so
# its dev figures are not held out. This measures it held out: the dev file is split by the
# parity of each text's SHA-1, the router is calibrated on the even half (`--dev`) and scored on
# the odd half, with and without refit, for each seed: accuracy, ECE, coverage (share not
# abstained) and accuracy on the answered share.
#
#   scripts/refit-halves.sh [KEFU_BINARY] [DATASET] [SEEDS] [-- extra train flags]
#   e.g. scripts/refit-halves.sh target/release/kefu cloud-queues "42 7 1234" -- --articles kb
set -euo pipefail
cd "$(dirname "$0")/.."
kefu="${1:-${CARGO_TARGET_DIR:-target}/release/kefu}"
name="${2:-cloud-queues}"
seeds="${3:-42 7 1234}"
shift $(($# < 3 ? $# : 3))
[ "${1:-}" = "--" ] && shift
data="${KEFU_DATA:-../shared/data/classify}/$name"
if [ ! -f "$data/dev.jsonl" ]; then
  echo "refit-halves: $data/dev.jsonl not found" >&2
  exit 2
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - "$data/dev.jsonl" "$tmp" <<'PY'
import hashlib, json, sys
halves = {0: [], 1: []}
for line in open(sys.argv[1], encoding="utf-8"):
    if line.strip():
        text = json.loads(line)["text"]
        halves[int(hashlib.sha1(text.encode()).hexdigest(), 16) % 2].append(line)
open(f"{sys.argv[2]}/cal.jsonl", "w", encoding="utf-8").writelines(halves[0])
open(f"{sys.argv[2]}/test.jsonl", "w", encoding="utf-8").writelines(halves[1])
print(f"refit-halves {sys.argv[1]}: calibrate on {len(halves[0])} rows, score {len(halves[1])}")
PY
for seed in $seeds; do
  for mode in no-refit refit; do
    flag=()
    [ "$mode" = no-refit ] && flag=(--no-refit)
    "$kefu" train --data "$data/train.jsonl" --dev "$tmp/cal.jsonl" --out "$tmp/$mode" \
      --seed "$seed" "${flag[@]}" "$@" 2>"$tmp/train.log" || { cat "$tmp/train.log" >&2; exit 1; }
    "$kefu" eval classify --model "$tmp/$mode" --data "$tmp/test.jsonl" --json >"$tmp/r.json"
    python3 - "$tmp/r.json" "$name" "$seed" "$mode" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
line = (f"refit-halves {sys.argv[2]} seed {sys.argv[3]} {sys.argv[4]:8}: accuracy {r['accuracy']:.4f} ece {r['ece']:.4f}"
        f" coverage {r['coverage']:.4f} answered {r['answered_accuracy']:.4f}")
if r.get("in_scope_accuracy") is not None:
    line += f" in_scope {r['in_scope_accuracy']:.4f} oos_recall {r['oos_recall']:.4f}"
print(line)
PY
  done
done
