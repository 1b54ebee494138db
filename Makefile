# The two commands of the README. Both install what is missing first (scripts/setup.sh).

.PHONY: run test bench

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
