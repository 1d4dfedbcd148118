#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on a loopback port for the multi-worker tests, installing
# the distribution's package if needed. Prints the SQLAlchemy URL on stdout; exits non-zero if no
# server could be started. Usage: url=$(bash .ci/postgres.sh)
set -euo pipefail
port=${TUNER_PG_PORT:-55432}
data=${TUNER_PG_DATA:-/tmp/tuner-pg-$port}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
fi
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ ! -s "$data/PG_VERSION" ]; then
  rm -rf "$data"; mkdir -p "$data"
  [ "$(id -u)" = 0 ] && chown postgres "$data"
  as_postgres "$bin/initdb" -D "$data" -A trust -U postgres >&2
fi
if ! as_postgres "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $data -c max_connections=100" start >&2
fi
"$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='tuner'" \
  | grep -q 1 || "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE tuner" >&2
echo "postgresql+psycopg2://postgres@127.0.0.1:$port/tuner"
