# The two commands of the README. Both install what is missing first (scripts/setup.sh).

.PHONY: run test bench dashboard-screenshots

# Set up, start Postgres (or use DATABASE_URL) and serve pgshot in the foreground until Ctrl-C.
run:
	scripts/run.sh

# Set up, then run every test: unit tests and integration tests against a real Postgres cluster.
test:
	scripts/test.sh

# Benchmarks (not part of CI): the queue alone against pgmq and graphile-worker, rendering against
# a bare Chromium loop and the per-page CLI, on release builds and a durable Postgres cluster;
# prints a table, draws bench/charts/*.png and rewrites BENCHMARKS.md.
bench:
	scripts/bench.sh

# The README's pictures of the dashboard, taken by pgshot itself: the dashboard test, which then
# has its worker screenshot each view into docs/dashboard/.
dashboard-screenshots:
	scripts/setup.sh
	PGSHOT_DASHBOARD_SCREENSHOTS=$(CURDIR)/docs/dashboard cargo test -p pgshot-tests --test dashboard
