#!/usr/bin/env bash
# `make test`: set up, then every test (unit tests and integration tests against real Postgres
# and real Chromium), then one closing line with the totals.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh || exit $?
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# A hung test must fail with its output, not run into CI's own limit and leave nothing behind.
limit=${PGSHOT_TEST_TIMEOUT_SECONDS:-3600}
timeout --kill-after=30 "$limit" cargo test --workspace --exclude pgshot --exclude pgshot-bench --tests --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ "$status" = 124 ] || [ "$status" = 137 ]; then
  echo "make test: the tests did not finish within $limit s (PGSHOT_TEST_TIMEOUT_SECONDS); see 'has been running' above" >&2
fi
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed\n", passed, failed }' "$log"
exit "$status"
