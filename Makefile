# The two commands of the README. Both install what is missing first (scripts/setup.sh).

.PHONY: run test bench

# Set up, start Postgres (or use DATABASE_URL) and serve pgshot in the foreground until Ctrl-C.
run:
	scripts/run.sh

# Set up, then run every test: unit tests and integration tests against a real Postgres cluster.
test:
	scripts/test.sh

# Benchmarks (not part of CI): the queue alone and rendering, on release builds and a durable
# Postgres cluster; prints a table and rewrites BENCHMARKS.md.
bench:
	scripts/setup.sh --release
	cargo build --release -p pgshot-worker -p pgshot-bench
	PGSHOT_BINARIES=target/release PGSHOT_CLUSTER_DURABLE=1 target/release/pgshot-bench
