#!/usr/bin/env bash
# `make test`: set up, then every test (unit tests and integration tests against real Postgres
# and real Chromium), then one closing line with the totals.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh || exit $?
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --exclude pgshot --tests --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
