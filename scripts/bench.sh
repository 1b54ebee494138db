#!/usr/bin/env bash
# `make bench`: release builds on a durable local cluster; the queue alone against pgmq and
# graphile-worker, rendering against a bare Chromium loop, puppeteer-core and the per-page CLI,
# and the real-page corpus (--corpus DIR, default ../shared/corpus/dev). Prints a table,
# draws bench/charts/*.png and rewrites BENCHMARKS.md. Pass --quick for a tenth of the work.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --release
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "==> installing Node.js and npm (graphile-worker runs on them)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq nodejs npm >/dev/null; else sudo apt-get install -y -qq nodejs npm >/dev/null; fi
fi
(cd bench/graphile && npm ci --no-audit --no-fund --silent)
# puppeteer-core drives the system Chromium (never a downloaded browser) as the bare-browser anchor.
(cd bench/puppeteer && npm ci --no-audit --no-fund --silent)
cargo build --release -p pgshot-worker -p pgshot-api -p pgshot-bench
PGSHOT_BINARIES=target/release PGSHOT_CLUSTER_DURABLE=1 target/release/pgshot-bench "$@"
