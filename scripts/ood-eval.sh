#!/usr/bin/env bash
# Does the cloud-support router know when a question is not for any of its queues? Mixes the
# cloud-queues dev split (in scope, gold queue kept) with questions from other data sets that no
# cloud-support queue should take, labelled `oos`: banking questions (the banking77 hold-back,
# sha1 of the text ≡ 0 mod 10), clinc150's out-of-scope dev questions, the smp2017 dev split
# (Chinese assistant requests: weather, music, recipes...), HR/purchase IT tickets (the first
# 150 of each by sha1 order), and 60 cloud-support questions we wrote about products no queue
# covers (databases, Kubernetes, big data, AI, messaging, media; tests/data/no-queue-products.jsonl).
# Then the price in scope: coverage and accuracy on 45 questions we wrote for the nine queues in
# our own words (tests/data/in-scope-questions.jsonl), unlike the documentation headings of dev.
# Last, other clouds' customers (tests/data/other-clouds.jsonl, 49 questions written with
# models/aliases.txt; other-clouds-blind.jsonl, 60 written by a teammate who had not seen it):
# questions naming AWS, Azure, Google Cloud, Tencent Cloud and Huawei Cloud products, for our
# queues or for products none covers. `kefu eval classify` reports in-scope accuracy (abstaining
# counts as wrong) and out-of-scope recall (abstaining counts as right), and this script adds the
# recall per source.
#
#   scripts/ood-eval.sh [MODEL_DIR] [KEFU_BINARY] [DATA_DIR]
#     (defaults: models/router, $CARGO_TARGET_DIR/release/kefu, ../shared/data/classify)
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-models/router}"
kefu="${2:-${CARGO_TARGET_DIR:-target}/release/kefu}"
data="${3:-../shared/data/classify}"
if [ ! -d "$data" ]; then
  echo "ood-eval: $data not found" >&2
  exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - "$data" "$tmp" <<'PY'
import hashlib, json, os, sys
data, tmp = sys.argv[1], sys.argv[2]
def rows(name):
    with open(os.path.join(data, name), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
def sha1(text):
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest(), 16)
foreign = {
    "banking77": [r for r in rows("banking77/train.jsonl") if sha1(r["text"]) % 10 == 0],
    "clinc150-oos": [r for r in rows("clinc150/dev.jsonl") if r["label"] == "oos"],
    "smp2017": rows("smp2017/dev.jsonl"),
    "it-hr-purchase": [],
    "no-queue-products": [json.loads(line) for line in open("tests/data/no-queue-products.jsonl", encoding="utf-8")],
}
tickets = rows("it-tickets/train.jsonl")
for label in ("HR Support", "Purchase"):
    picked = sorted((r for r in tickets if r["label"] == label), key=lambda r: sha1(r["text"]))
    foreign["it-hr-purchase"] += picked[:150]
with open(os.path.join(tmp, "mixed.jsonl"), "w", encoding="utf-8") as mixed, \
        open(os.path.join(tmp, "sources.jsonl"), "w", encoding="utf-8") as sources:
    for r in rows("cloud-queues/dev.jsonl"):
        mixed.write(json.dumps({"text": r["text"], "label": r["label"], "lang": r["lang"]}, ensure_ascii=False) + "\n")
    for source, rs in foreign.items():
        for i, r in enumerate(rs):
            mixed.write(json.dumps({"text": r["text"], "label": "oos", "lang": r.get("lang", "en")}, ensure_ascii=False) + "\n")
            sources.write(json.dumps({"id": f"{source}/{i}", "subject": "", "body": r["text"]}, ensure_ascii=False) + "\n")
PY
"$kefu" eval classify --model "$model" --data "$tmp/mixed.jsonl" --json >"$tmp/eval.json"
"$kefu" classify --model "$model" --json <"$tmp/sources.jsonl" >"$tmp/foreign.jsonl"
python3 - "$tmp/eval.json" "$tmp/foreign.jsonl" <<'PY'
import collections, json, sys
r = json.load(open(sys.argv[1]))
print(f"ood-eval: {r['examples']} questions; in-scope accuracy {r['in_scope_accuracy']:.4f}, "
      f"out-of-scope recall {r['oos_recall']:.4f}, coverage {r['coverage']:.4f}")
total, caught, taken = collections.Counter(), collections.Counter(), collections.defaultdict(collections.Counter)
for line in open(sys.argv[2], encoding="utf-8"):
    d = json.loads(line)
    source = d["id"].split("/")[0]
    total[source] += 1
    if d["needs_human"]:
        caught[source] += 1
    else:
        taken[source][d["category"]] += 1
for source in total:
    wrong = ", ".join(f"{c} {n}" for c, n in taken[source].most_common(3))
    print(f"  {source:17} {total[source]:5} questions, needs a human {caught[source] / total[source]:.3f}"
          + (f" (routed: {wrong})" if wrong else ""))
PY
"$kefu" eval classify --model "$model" --data tests/data/in-scope-questions.jsonl --json >"$tmp/ours.json"
python3 - "$tmp/ours.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"  in scope, our wording: {r['examples']} questions, accuracy {r['accuracy']:.3f}, "
      f"coverage {r['coverage']:.3f}, answered accuracy {r['answered_accuracy']:.3f}")
PY
# Other clouds' customers: questions naming AWS, Azure, Google Cloud, Tencent Cloud and Huawei
# Cloud products, for our queues or for products no queue covers (`oos`).
for set in other-clouds other-clouds-blind; do
  "$kefu" eval classify --model "$model" --data "tests/data/$set.jsonl" --json >"$tmp/$set.json" 2>/dev/null
  python3 - "$tmp/$set.json" "$set" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"  {sys.argv[2]}: {r['examples']} questions; in-scope accuracy {r['in_scope_accuracy']:.3f}, "
      f"coverage {r['coverage']:.3f}, answered accuracy {r['answered_accuracy']:.3f}, "
      f"out-of-scope recall {r['oos_recall']:.3f}")
PY
done
