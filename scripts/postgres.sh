#!/usr/bin/env bash
# Starts a throwaway PostgreSQL for the store tests and prints its URL on the last line.
# Installs the server from Debian's packages when it is missing. Usage: scripts/postgres.sh [start|stop]
set -euo pipefail
PGPORT=${PGPORT:-54329}
PGDATA=${PGDATA:-/tmp/runback-pg}
action=${1:-start}

find_bin() {
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/pg_ctl" ] && { echo "$dir"; return; }
  done
}

bin=$(find_bin || true)
if [ -z "$bin" ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) 1>&2
    bin=$(find_bin)
  else
    echo "PostgreSQL is not installed; run: sudo apt-get install postgresql" >&2
    exit 1
  fi
fi

as_pg() {
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}

if [ "$action" = stop ]; then
  as_pg "$bin/pg_ctl -D $PGDATA -m fast stop" >/dev/null 2>&1 || true
  exit 0
fi

if ! as_pg "$bin/pg_ctl -D $PGDATA status" >/dev/null 2>&1; then
  rm -rf "$PGDATA"; mkdir -p "$PGDATA"
  [ "$(id -u)" = 0 ] && chown postgres "$PGDATA"
  as_pg "$bin/initdb -D $PGDATA -U runback --auth=trust -E UTF8" >/dev/null
  as_pg "$bin/pg_ctl -D $PGDATA -l $PGDATA/server.log -o '-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off' -w start" >/dev/null
  as_pg "$bin/createdb -h 127.0.0.1 -p $PGPORT -U runback runback"
fi
echo "postgresql://runback@127.0.0.1:$PGPORT/runback"
