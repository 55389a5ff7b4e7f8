#!/usr/bin/env bash
# Install (from Debian's packages) and start a throwaway PostgreSQL server on 127.0.0.1 for the
# tests, then print its URL. initdb refuses to run as root, so the cluster runs as an
# unprivileged user ("postgres" from the Debian package, or the current user when not root).
set -euo pipefail
port=${FEEDBOT_TEST_PG_PORT:-54329}
pgdata=${FEEDBOT_TEST_PGDATA:-/tmp/feedbot-test-pg-$port}

find_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
bin=$(find_bin)
if [ -z "$bin" ]; then
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  echo "installing PostgreSQL from Debian's packages…" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >&2
  bin=$(find_bin)
fi

if [ "$(id -u)" -eq 0 ]; then
  id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql postgres
  as_pg() { runuser -u postgres -- "$@"; }
  owner=postgres
else
  as_pg() { "$@"; }
  owner=$(id -un)
fi

if ! as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    rm -rf "$pgdata"
    mkdir -p "$pgdata"
    chown "$owner" "$pgdata"
    as_pg "$bin/initdb" -D "$pgdata" -U postgres -A trust --no-sync -E UTF8 >/dev/null
  fi
  as_pg "$bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 \
    -o "-p $port -c listen_addresses=127.0.0.1 -k $pgdata -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start >/dev/null
fi
if ! "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -Atc "select 1 from pg_database where datname='feedbot_test'" | grep -q 1; then
  "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres feedbot_test
fi
echo "postgresql://postgres@127.0.0.1:$port/feedbot_test"
