#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the store's tests: Debian's packages (installed when missing), a
# cluster in a temporary folder, listening on loopback only. `source .ci/postgres.sh` exports
# TETHER_TEST_POSTGRES_URL and stops the server (and removes the folder) when the calling shell exits.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
PG_BIN=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -1)")
PG_DIR=$(mktemp -d /tmp/tether-pg.XXXXXX)
PG_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
RUN_AS=()
if [ "$(id -u)" = 0 ]; then  # postgres refuses to run as root
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$PG_DIR"
  RUN_AS=(runuser -u postgres --)
fi
"${RUN_AS[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U tether --auth=trust >/dev/null
"${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DIR -c fsync=on" start >/dev/null
"${RUN_AS[@]}" "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U tether tether_test
export TETHER_TEST_POSTGRES_URL="postgresql+psycopg://tether@127.0.0.1:$PG_PORT/tether_test"
stop_postgres() { "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$PG_DIR"; }
trap stop_postgres EXIT
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') for the tests at $TETHER_TEST_POSTGRES_URL"
