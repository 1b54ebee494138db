#!/usr/bin/env bash
# `make run`: set up, then serve pgshot in the foreground until Ctrl-C.
#
# Without DATABASE_URL, pgshot gets its own Postgres cluster in .pgshot/postgres (port
# PGSHOT_PG_PORT, default 5433), run by the `postgres` OS user, and the worker, the API and the
# keys CLI each log in as a role of their own, with a password (scram-sha-256) kept in
# .pgshot/roles.env, and no privilege beyond their pgshot group role. With DATABASE_URL, it uses
# that database (and that role for every process) and creates the extension there.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --release
say() { printf '==> %s\n' "$*" >&2; }
say "building the worker and the API"
cargo build --release --quiet -p pgshot-worker -p pgshot-api

psql_url() { psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"; }

own_cluster=
worker_url=${DATABASE_URL:-}
api_url=${DATABASE_URL:-}
if [ -z "${DATABASE_URL:-}" ]; then
  dir=.pgshot/postgres
  port=${PGSHOT_PG_PORT:-5433}
  scripts/cluster.sh "$dir" "$port"
  own_cluster=$dir
  secrets=.pgshot/roles.env
  if [ ! -s "$secrets" ]; then
    (umask 077 && for r in worker api admin app; do echo "${r}_password=$(openssl rand -hex 24)"; done > "$secrets")
  fi
  # shellcheck disable=SC1090
  . "$secrets"
  as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
  for r in worker api admin app; do
    password_var=${r}_password
    as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$(realpath "$dir")" -p "$port" -U postgres -d pgshot \
      -v role="pgshot_${r}_login" -v kind="$r" -v password="${!password_var}" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L', :'role', :'password') \gexec
-- This database's group role of that kind (pgshot_<database>_<kind>).
SELECT format('GRANT %I TO %I', pgshot.role(:'kind'), :'role') \gexec
SQL
  done
  role_url() { local p=${1}_password; echo "postgres://pgshot_${1}_login:${!p}@127.0.0.1:$port/pgshot"; }
  worker_url=$(role_url worker)
  api_url=$(role_url api)
  admin_url=$(role_url admin)
  app_url=$(role_url app)
  # The settings below are the database owner's to make: over the socket, as postgres.
  psql_url() { as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$(realpath "$dir")" -p "$port" -U postgres -d pgshot "$@"; }
else
  psql_url -c "CREATE EXTENSION IF NOT EXISTS pgshot"
  psql_url -c "ALTER EXTENSION pgshot UPDATE"
  admin_url=$DATABASE_URL
  app_url=$DATABASE_URL
fi

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
DATABASE_URL=$worker_url target/release/pgshot-worker &
children+=("$!")
DATABASE_URL=$api_url target/release/pgshot-api &
children+=("$!")

cat >&2 <<MSG
==> pgshot is ready, API on http://${PGSHOT_LISTEN:-127.0.0.1:8080}
    SQL (as a member of the database's app role, pgshot_pgshot_app):
          psql "$app_url" -c "SELECT screenshot_enqueue('https://example.com', '{\"fullPage\": true}')"
    REST: create a key (as the admin role; printed once, on the last line), then call the API with it:
          DATABASE_URL='$admin_url' target/release/pgshot-api keys create --name me
          curl -X POST http://${PGSHOT_LISTEN:-127.0.0.1:8080}/v1/screenshots/async -H "X-API-Key: <key>" \\
               -H 'Content-Type: application/json' -d '{"url": "https://example.com"}'
    Spec: http://${PGSHOT_LISTEN:-127.0.0.1:8080}/openapi.json, docs: http://${PGSHOT_LISTEN:-127.0.0.1:8080}/docs
    Dashboard: http://${PGSHOT_LISTEN:-127.0.0.1:8080}/dashboard (log in with the key; set PGSHOT_ADMIN_TOKEN for the operator's view)
    Press Ctrl-C to stop.
MSG

# In the foreground until Ctrl-C, or until a service exits (which stops the others).
wait -n "${children[@]}"
