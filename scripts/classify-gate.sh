#!/usr/bin/env bash
# CI gate for the router (called by .ci/run when ../shared/data is present): retrains on
# cloud-queues and smp2017 with the release binary into a temp dir, evaluates on their dev
# splits, and fails below the floors (issue 3 set cloud-queues 0.80, smp2017 0.89; raised to
# 0.82 and 0.90 with the models reaching 0.838 and 0.920 at seed 42, ≈ 0.83 and 0.915 at other seeds;
# smp2017 to 0.92 with the part-of-speech tags: 0.9312 at seed 42, 0.9299-0.9351 at five others).
# With ../shared/data/search/aliyun-faq/docs there too, cloud-queues is trained a second time with
# the help-article member (`kefu train --kb`, floor 0.84).
# It trains with `--no-refit` so that dev stays held out: the default also trains on the dev rows
# after calibrating on them (scripts/refit-folds.sh measures that held out).
#
#   scripts/classify-gate.sh [KEFU_BINARY] [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
kefu="${1:-${CARGO_TARGET_DIR:-target}/release/kefu}"
data="${2:-../shared/data/classify}"
if [ ! -d "$data" ]; then
  echo "classify-gate: $data not found, skipped"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
status=0
gate() { # name data-set floor [train flags...]
  local name="$1" set="$2" floor="$3"
  shift 3
  "$kefu" train --data "$data/$set/train.jsonl" --dev "$data/$set/dev.jsonl" \
    --out "$tmp/$name" --seed 42 --no-refit "$@" 2>"$tmp/$name.log"
  "$kefu" eval classify --model "$tmp/$name" --data "$data/$set/dev.jsonl" --json >"$tmp/$name.json"
  python3 - "$tmp/$name.json" "$name" "$floor" <<'PY' || status=1
import json, sys
r = json.load(open(sys.argv[1])); name, floor = sys.argv[2], float(sys.argv[3])
ok = r["accuracy"] >= floor
print(f"classify-gate {name}: accuracy {r['accuracy']:.4f} macro_f1 {r['macro_f1']:.4f} "
      f"ece {r['ece']:.4f} coverage {r['coverage']:.4f} answered_accuracy {r['answered_accuracy']:.4f} "
      f"(floor {floor}) {'ok' if ok else 'FAILED'}")
sys.exit(0 if ok else 1)
PY
}
# cloud-queues as scripts/train-default.sh trains the shipped router (`kefu train` with the
# sample knowledge base's articles and the product aliases, without the SVM candidate).
gate cloud-queues cloud-queues 0.82 --articles kb --candidates fasttext,attention \
  --aliases models/aliases.txt
gate smp2017 smp2017 0.92
# cloud-queues with the help-article member (`--kb`): the aliyun-faq help corpus, each article
# filed under its queue by scripts/aliyun-kb.py (0.8557 at seed 42 in session 15).
docs="$data/../search/aliyun-faq/docs"
if [ -d "$docs" ]; then
  scripts/aliyun-kb.py "$docs" >"$tmp/aliyun-kb.jsonl" 2>"$tmp/aliyun-kb.log"
  gate cloud-queues-kb cloud-queues 0.84 --articles kb --candidates fasttext,attention \
    --kb "$tmp/aliyun-kb.jsonl" --aliases models/aliases.txt
else
  echo "classify-gate: $docs not found, the --kb gate skipped"
fi
exit $status
