#!/usr/bin/env bash
# Rebuilds the default router model `models/router/` from the cloud-queues data set
# (../shared/data/classify/cloud-queues: train.jsonl to train, dev.jsonl to calibrate).
# Deterministic: the same data, seed and binary give the same model.
# `kefu train`'s default candidates, the fastText-style network and the attention member
# (`TrainOptions::attention_member`), are tried next to the built-in members and kept when they
# lower the ensemble's dev NLL: at seed 42 the attention member is kept (dev NLL 0.529 → 0.503),
# accuracy (seeds 42/7/1234) 0.8393/0.8393/0.8475 without the help articles below.
#
# The router also learns from the sample knowledge base `kb/` (`--articles kb`): the title and
# the tags of each article whose category is a queue become training rows (146; 7 of them, which
# a first model trained without the articles confidently files under another queue, such as
# `kb/network`'s security-group rules that the data files under security, are dropped). They
# are everyday wording next to the documentation headings of cloud-queues, and train only (never
# dev). Seeds 42/7/1234: dev accuracy 0.8393/0.8410/0.8344 (mean 0.8382 vs 0.8420 without),
# ECE 0.048/0.038/0.044 (0.040/0.049/0.044 without); scripts/ood-eval.sh, mean of the three
# seeds without → with: our own in-scope wording accuracy 0.822 → 0.889, coverage 0.741 → 0.815,
# questions about products without a queue sent to a human 0.833 → 0.872, all out-of-scope
# questions 0.926 → 0.942.
# With the (queue, product) auxiliary head that `kefu train` learns from the rows' `product`
# field by default (`--aux-field`, `train::AUX_WEIGHT`; session 10, after the numbers above):
# dev accuracy 0.8426/0.8426/0.8328 (mean 0.8393), ECE 0.044/0.037/0.032.
#
# After calibrating on dev, the chosen members train again on train + dev (`kefu train`'s
# default refit), so the shipped router learns from every labelled row; the dev figures printed
# last are therefore not held out (held-out figures: the CI gate, which trains with `--no-refit`,
# and scripts/refit-folds.sh).
#
# Session 11: the linear SVM member became a default candidate of `kefu train` (it pays on
# clinc150 and banking77), but not for this router: at seed 42 it is kept by dev NLL yet lowers
# dev accuracy 0.8426 → 0.8377 and raises ECE 0.044 → 0.050 (`--no-refit`; 3-seed means
# 0.8393 → 0.8355, lower on every seed), so the candidates here are the other two.
#
# Session 16: the router also has the help-article vote member (`--kb`, `TrainOptions::kb_member`):
# the aliyun-faq help corpus, each article filed under its queue by scripts/aliyun-kb.py, and a
# ticket's nearest articles vote for their queues. It became cheap enough to ship (it scores by
# a ticket's 16 largest features, `train::KB_QUERY_FEATURES`). `--no-refit`, seeds 42/7/1234:
# dev accuracy 0.8574/0.8492/0.8557 (mean 0.8541, against 0.8393 without), ECE
# 0.050/0.039/0.050. The articles are read at training time only: the model stores each one's
# 128 largest TF-IDF feature ids and weights, never its text.
#
# Session 19: other clouds' product names (`--aliases models/aliases.txt`, route::aliases): a
# ticket about EC2, S3, CloudFront or Route 53 also gets our names for those products. The
# cloud-queues dev rows name no other cloud's product: dev accuracy is unchanged (`--no-refit`,
# seeds 42/7/1234: 0.8574/0.8492/0.8557). Questions written for other clouds' products
# (tests/data/other-clouds-blind.jsonl, 60 written without seeing the aliases; seed 42,
# `--no-refit`): in-scope accuracy 0.244 → 0.511, coverage 0.30 → 0.47, out-of-scope recall
# 0.733 → 0.733 (scripts/ood-eval.sh reports both files).
#
#   scripts/train-default.sh [DATA_DIR [DOCS_DIR]]
#     DATA_DIR  default ../shared/data/classify/cloud-queues
#     DOCS_DIR  default ../shared/data/search/aliyun-faq/docs
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/data/classify/cloud-queues}"
docs="${2:-../shared/data/search/aliyun-faq/docs}"
cargo build --release --quiet
target="${CARGO_TARGET_DIR:-target}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Third-party text: written to a temporary file, never into the repository.
scripts/aliyun-kb.py "$docs" >"$tmp/aliyun-kb.jsonl"
"$target/release/kefu" train \
  --data "$data/train.jsonl" --dev "$data/dev.jsonl" \
  --articles kb --candidates fasttext,attention --kb "$tmp/aliyun-kb.jsonl" \
  --aliases models/aliases.txt --out models/router --seed 42
echo "dev figures of the shipped router (it has trained on dev too, so they are not held out):"
"$target/release/kefu" eval classify --model models/router --data "$data/dev.jsonl"
