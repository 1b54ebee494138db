# The two commands of the README. Both install what is missing first (scripts/setup.sh).

.PHONY: run test

# Set up, start Postgres (or use DATABASE_URL) and serve pgshot in the foreground until Ctrl-C.
run:
	scripts/run.sh

# Set up, then run every test: unit tests and integration tests against a real Postgres cluster.
test:
	scripts/test.sh
