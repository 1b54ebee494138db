#!/usr/bin/env bash
# Installs what pgshot needs on a fresh Debian 12 machine, skipping whatever is already there,
# then builds and installs the extension into the system Postgres 15.
# Usage: scripts/setup.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."

PGRX_VERSION=0.18.1
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
APT_PACKAGES=(postgresql-15 postgresql-server-dev-15 libclang-dev libssl-dev pkg-config openssl chromium fonts-liberation fonts-noto-color-emoji fonts-noto-cjk)

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
say() { printf '==> %s\n' "$*" >&2; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $PGRX_VERSION" ]; then
  say "installing cargo-pgrx $PGRX_VERSION (about ten minutes on two cores)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

if ! grep -qs "^pg15 = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  say "pointing pgrx at the system Postgres 15"
  cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
fi

# schemathesis fuzzes the REST API in the tests (tests/tests/fuzz.rs), from its own virtualenv.
SCHEMATHESIS_VERSION=4.32.5
if [ "$(.pgshot/venv/bin/st --version 2>/dev/null)" != "st, version $SCHEMATHESIS_VERSION" ]; then
  say "installing schemathesis $SCHEMATHESIS_VERSION into .pgshot/venv"
  python3 -m venv .pgshot/venv
  .pgshot/venv/bin/pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

# Object storage is tested against moto's S3 server (tests/tests/storage.rs), in a virtualenv of
# its own (its Flask and Werkzeug pins are not schemathesis's business).
MOTO_VERSION=5.2.5
if [ "$(.pgshot/moto/bin/python -c 'import moto; print(moto.__version__)' 2>/dev/null)" != "$MOTO_VERSION" ]; then
  say "installing moto $MOTO_VERSION (an S3 server for the tests) into .pgshot/moto"
  python3 -m venv .pgshot/moto
  .pgshot/moto/bin/pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi

# The generated-client tests (tests/tests/generated_clients.rs) generate a Python client with
# openapi-python-client; the code it generates parses date-times with python-dateutil.
OPENAPI_PYTHON_CLIENT_VERSION=0.29.1
if [ "$(.pgshot/venv/bin/openapi-python-client --version 2>/dev/null)" != "openapi-python-client version: $OPENAPI_PYTHON_CLIENT_VERSION" ] \
  || ! .pgshot/venv/bin/python -c "import dateutil" 2>/dev/null; then
  say "installing openapi-python-client $OPENAPI_PYTHON_CLIENT_VERSION into .pgshot/venv"
  .pgshot/venv/bin/pip install --quiet --disable-pip-version-check \
    "openapi-python-client==$OPENAPI_PYTHON_CLIENT_VERSION" "python-dateutil==2.9.0.post0"
fi

# ...and lint the spec with Redocly and generate a TypeScript client with openapi-typescript,
# from the npm packages pinned in openapi/tools/package-lock.json.
if ! command -v npm >/dev/null; then
  say "installing Node.js and npm"
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
if ! cmp -s openapi/tools/package-lock.json openapi/tools/node_modules/.pgshot-installed-lock 2>/dev/null; then
  say "installing the spec's npm tools into openapi/tools/node_modules"
  (cd openapi/tools && npm ci --no-audit --no-fund --silent && cp package-lock.json node_modules/.pgshot-installed-lock)
fi

# A worker running as root renders as this user, never as root (worker/src/launcher.rs).
if ! id pgshot-render >/dev/null 2>&1; then
  say "creating the unprivileged user pgshot-render that Chromium runs as"
  sudo_if_needed useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin pgshot-render
fi

say "building and installing the pgshot extension"
# Installing writes into Postgres's own directories.
install_cmd=(cargo pgrx install --pg-config "$PG_CONFIG" --package pgshot "$@")
if [ "$(id -u)" = 0 ] || [ -w "$($PG_CONFIG --pkglibdir)" ]; then
  "${install_cmd[@]}"
else
  install_cmd+=(--sudo)
  "${install_cmd[@]}"
fi
# The install scripts of released versions, so that `CREATE EXTENSION pgshot VERSION '0.1.0'`
# followed by `ALTER EXTENSION pgshot UPDATE` can be tested (tests/tests/upgrade.rs). pgrx
# installs the current version and the upgrade scripts (pg_ext/sql/pgshot--A--B.sql) itself.
sudo_if_needed install -m 0644 pg_ext/sql/released/pgshot--*.sql "$($PG_CONFIG --sharedir)/extension/"
