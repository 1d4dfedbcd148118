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
fresh_cluster() {
  rm -rf "$data"; mkdir -p "$data"
  if [ "$(id -u)" = 0 ]; then chown postgres "$data"; fi
  as_postgres "$bin/initdb" -D "$data" -A trust -U postgres >&2
}
start_server() {
  as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $data -c max_connections=100" start >&2
}
if [ ! -s "$data/PG_VERSION" ]; then fresh_cluster; fi
# -t 30: a server too busy to answer within pg_isready's default 3 s (a loaded machine) is not
# taken for a dead one, stopped and started again under the tests using it.
if ! "$bin/pg_isready" -q -t 30 -h 127.0.0.1 -p "$port"; then
  # A cluster left by an earlier, killed run may have stale state: stop what is left of it, and
  # if it still does not start, start a new one.
  as_postgres "$bin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
  pkill -9 -f "postgres -D $data" 2>/dev/null || true
  rm -f "$data/postmaster.pid"
  start_server || { fresh_cluster && start_server; }
fi
"$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='tuner'" \
  | grep -q 1 || "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE tuner" >&2
echo "postgresql+psycopg2://postgres@127.0.0.1:$port/tuner"
