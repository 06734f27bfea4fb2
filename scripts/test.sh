#!/usr/bin/env bash
# The one test command (README.md, .ci/run): unit + integration tests, then the browser
# end-to-end test against a real `kefu serve` in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

# Library, binary, integration and doc tests (benches are compiled by clippy in .ci/run and run
# on their own: they read ../shared/data).
cargo test --release --locked

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's chromium for the browser test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  elif [ "${CI:-}" = true ]; then
    echo "chromium is required in CI" >&2; exit 1
  else
    echo "SKIPPED browser test: /usr/bin/chromium not installed (apt-get install chromium)"; exit 0
  fi
fi
cargo build --release --locked
KEFU_BIN="${CARGO_TARGET_DIR:-target}/release/kefu" bash tests/browser/run.sh
