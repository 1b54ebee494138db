#!/usr/bin/env bash
# `make run`: set up, then serve pgshot in the foreground until Ctrl-C.
#
# Without DATABASE_URL, pgshot gets its own Postgres cluster in .pgshot/postgres (port
# PGSHOT_PG_PORT, default 5433), run by the `postgres` OS user. With DATABASE_URL, it uses that
# database and creates the extension there.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --release
say() { printf '==> %s\n' "$*" >&2; }
say "building the worker and the API"
cargo build --release --quiet -p pgshot-worker -p pgshot-api

psql_url() { psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"; }

own_cluster=
if [ -z "${DATABASE_URL:-}" ]; then
  dir=.pgshot/postgres
  DATABASE_URL=$(scripts/cluster.sh "$dir" "${PGSHOT_PG_PORT:-5433}")
  own_cluster=$dir
else
  psql_url -c "CREATE EXTENSION IF NOT EXISTS pgshot"
fi
export DATABASE_URL

if [ "${PGSHOT_ALLOW_PRIVATE_NETWORKS:-false}" = true ]; then
  say "allowing private network destinations (PGSHOT_ALLOW_PRIVATE_NETWORKS=true)"
  psql_url -c "DO \$\$ BEGIN EXECUTE format('ALTER DATABASE %I SET pgshot.allow_private_networks = on', current_database()); END \$\$"
else
  psql_url -c "DO \$\$ BEGIN EXECUTE format('ALTER DATABASE %I RESET pgshot.allow_private_networks', current_database()); END \$\$"
fi

# Webhook bodies are written by the workers' sessions: give them the API's public URL too.
public_url=${PGSHOT_PUBLIC_URL:-http://${PGSHOT_LISTEN:-127.0.0.1:8080}}
psql_url -c "DO \$\$ BEGIN EXECUTE format('ALTER DATABASE %I SET pgshot.public_url = %L', current_database(), '$public_url'); END \$\$"

children=()
stop() {
  trap - INT TERM EXIT
  for pid in "${children[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$own_cluster" ]; then
    say "stopping Postgres"
    runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$(realpath "$own_cluster")" -m fast stop >/dev/null || true
  fi
}
trap stop INT TERM EXIT

export PGSHOT_ALLOW_PRIVATE_NETWORKS=${PGSHOT_ALLOW_PRIVATE_NETWORKS:-false}
target/release/pgshot-worker &
children+=("$!")
target/release/pgshot-api &
children+=("$!")

cat >&2 <<MSG
==> pgshot is ready: DATABASE_URL=$DATABASE_URL, API on http://${PGSHOT_LISTEN:-127.0.0.1:8080}
    SQL:  psql "$DATABASE_URL" -c "SELECT screenshot_enqueue('https://example.com', '{\"fullPage\": true}')"
    REST: create a key (printed once, on the last line), then call the API with it:
          DATABASE_URL=$DATABASE_URL target/release/pgshot-api keys create --name me
          curl -X POST http://${PGSHOT_LISTEN:-127.0.0.1:8080}/v1/screenshots/async -H "X-API-Key: <key>" \\
               -H 'Content-Type: application/json' -d '{"url": "https://example.com"}'
    Spec: http://${PGSHOT_LISTEN:-127.0.0.1:8080}/openapi.json, docs: http://${PGSHOT_LISTEN:-127.0.0.1:8080}/docs
    Press Ctrl-C to stop.
MSG

# In the foreground until Ctrl-C, or until a service exits (which stops the others).
wait -n "${children[@]}"
