#!/usr/bin/env bash
# Starts a Postgres 15 cluster owned by the `postgres` OS user (Postgres refuses to run as root)
# in DIR on PORT, with the pgshot extension created in database `pgshot`, unless it runs already.
# Local (Unix socket) connections authenticate by OS user (peer), TCP connections by password
# (scram-sha-256): `make run` gives its processes their own non-superuser roles (scripts/run.sh).
# Usage: scripts/cluster.sh DIR PORT
set -euo pipefail

dir=$(realpath -m "$1")
port=$2
bin=/usr/lib/postgresql/15/bin
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if [ ! -s "$dir/PG_VERSION" ]; then
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
  chmod 700 "$dir"
  as_pg "$bin/initdb" -D "$dir" -U postgres --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
  cat >> "$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
password_encryption = 'scram-sha-256'
CONF
fi
# Clusters made by earlier versions trusted every local connection: not any more.
as_pg tee "$dir/pg_hba.conf" >/dev/null <<HBA
local all postgres peer
host  all all 127.0.0.1/32 scram-sha-256
HBA

if ! as_pg "$bin/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
  # pgrx appends a Rust backtrace to every error's DETAIL when backtraces are enabled.
  as_pg env RUST_LIB_BACKTRACE=0 "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w start >/dev/null
else
  as_pg "$bin/pg_ctl" -D "$dir" reload >/dev/null
fi

psql() { as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -U postgres "$@"; }
psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'pgshot'" | grep -q 1 \
  || psql -d postgres -c "CREATE DATABASE pgshot"
psql -d pgshot -c "CREATE EXTENSION IF NOT EXISTS pgshot"
psql -d pgshot -c "ALTER EXTENSION pgshot UPDATE"
