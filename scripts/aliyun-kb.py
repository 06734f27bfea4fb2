#!/usr/bin/env python3
"""Writes the aliyun-faq help corpus as articles JSONL with a router category each, for
`kefu train --kb` (the KB-vote member: a ticket's nearest help articles vote for their queues).

The category of an article is the queue of the cloud-queues data set, by the rules that data set's
labels were derived with (`../shared/data/README.md`, "classify/cloud-queues"): first rule that
matches its path wins. Run it beside the data; its output holds third-party text, so write it
outside the repository:

    scripts/aliyun-kb.py [DOCS_DIR] > /tmp/aliyun-kb.jsonl
"""
import json
import os
import sys

# (queue, products, words in the path), in the data set's order.
RULES = [
    ("billing", set(), ["计费", "定价", "价格", "账单", "付费", "退款", "发票", "交易方式",
                        "pricing", "billing", "price", "refund", "invoice"]),
    ("account", {"ram"}, ["注册认证", "实名", "账号", "账户", "信用验证",
                          "registration and verification", "account"]),
    ("security", {"waf", "ddos", "cas", "kms"}, ["安全", "security"]),
    ("storage", {"oss", "nas"}, []),
    ("network", {"slb", "eip", "nat", "vpn"}, []),
    ("compute", {"ecs", "ess"}, []),
    ("cdn", {"cdn"}, []),
    ("domain", {"domain", "dns"}, []),
    ("monitoring", {"cms", "sls"}, []),
]
# ECS pages filed under storage or network folders.
ECS_WORDS = {"storage": ["块存储", "快照", "云盘", "block storage", "snapshot", "disk"],
             "network": ["网络", "network"]}


def category(path):
    p = path.lower()
    product = p.split("/", 1)[0]
    for queue, products, words in RULES:
        if product in products or any(w in p for w in words):
            return queue
        if product == "ecs" and any(w in p for w in ECS_WORDS.get(queue, [])):
            return queue
    return None


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(__file__), "..", "..", "shared", "data", "search", "aliyun-faq", "docs")
    written = skipped = 0
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".md"):
                continue
            full = os.path.join(folder, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            queue = category(rel)
            try:
                with open(full, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as err:
                print(f"aliyun-kb: {rel}: {err}", file=sys.stderr)
                skipped += 1
                continue
            if queue is None or not text.strip():
                skipped += 1
                continue
            title = next((line.lstrip("#").strip() for line in text.splitlines()
                          if line.startswith("# ") and line.lstrip("#").strip()),
                         name[:-3].strip() or os.path.basename(folder))
            lang = "zh" if "/cn.zh-CN/" in rel or "/intl.zh-CN/" in rel else "en"
            # A few upstream file names hold newlines, which article ids may not.
            article_id = "".join(c if c.isprintable() else " " for c in rel)
            print(json.dumps({"id": article_id, "title": title, "body": text, "lang": lang,
                              "category": queue}, ensure_ascii=False))
            written += 1
    print(f"aliyun-kb: {written} articles written, {skipped} skipped", file=sys.stderr)


if __name__ == "__main__":
    main()
