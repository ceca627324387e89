#!/bin/sh
# Entry point of the test PostgreSQL image (test/support/postgres_image.ts): Debian's real
# postgresql-15 server, started the way the official `postgres` image's docker-entrypoint.sh
# does, with the same environment contract:
#   POSTGRES_USER (default postgres), POSTGRES_PASSWORD (required unless
#   POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB (default: the user), PGDATA (default
#   /var/lib/postgresql/data, may be a volume), POSTGRES_INITDB_ARGS, /docker-entrypoint-initdb.d/
#   (*.sql, *.sh) run once on first start.
# Differences, on purpose (tests run with `network_mode: host` on loopback):
#   - PGPORT chooses the port (the server, pg_isready, psql and pg_dump in `docker exec` all read it);
#   - POSTGRES_LISTEN_ADDRESSES (default 127.0.0.1, not '*': tests never bind other addresses);
#   - TCP connections need the password (scram-sha-256) even from 127.0.0.1, where the official
#     image's initdb leaves 127.0.0.1 on trust: with host networking that would let anything on the
#     host in without a password. The Unix socket stays on trust, as in the official image, so
#     `docker exec ... pg_dump -U <user>` works without a password there and here.
set -eu

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_LISTEN_ADDRESSES:=127.0.0.1}"
: "${POSTGRES_HOST_AUTH_METHOD:=scram-sha-256}"
export PGDATA POSTGRES_USER POSTGRES_DB POSTGRES_LISTEN_ADDRESSES POSTGRES_HOST_AUTH_METHOD

if [ "${1:-postgres}" != postgres ]; then
  exec "$@"
fi

if [ "$(id -u)" = 0 ]; then
  # As the official image: create/own the data dir (it may be a fresh volume), then drop to postgres.
  mkdir -p "$PGDATA" /var/run/postgresql
  chown -R postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 2777 /var/run/postgresql
  exec su -p -s /bin/sh postgres -c 'exec "$0" "$@"' "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
    echo "Error: Database is uninitialized and superuser password is not specified." >&2
    echo "       Set POSTGRES_PASSWORD (or POSTGRES_HOST_AUTH_METHOD=trust)." >&2
    exit 1
  fi
  pwfile="$(mktemp)"
  printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$pwfile"
  # --no-sync: a test image; initdb's fsyncs cost seconds on a busy disk and protect nothing here.
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of words, as in the official image
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust \
    --auth-host="$POSTGRES_HOST_AUTH_METHOD" --encoding=UTF8 --locale=C --no-sync ${POSTGRES_INITDB_ARGS:-} >/dev/null
  rm -f "$pwfile"
  # The official image accepts connections from every address (host all all all <method>).
  printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
  # Initialise on the Unix socket only, as the official image does.
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -X -q -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
      --set db="$POSTGRES_DB" <<'SQL'
CREATE DATABASE :"db";
SQL
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sql) psql -X -q -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sh) . "$f" ;;
      *) ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "PostgreSQL init process complete; ready for start up."
fi

[ "${1:-}" = postgres ] && shift
# The official image stops with SIGINT (fast shutdown: open sessions are ended); `docker import`
# cannot set STOPSIGNAL, so docker's SIGTERM is turned into SIGINT here.
# jit=off: the image leaves out llvmjit.so and LLVM (100 MB) that no test needs.
postgres -c listen_addresses="$POSTGRES_LISTEN_ADDRESSES" -c jit=off "$@" &
pid=$!
trap 'kill -INT "$pid"' TERM INT
wait "$pid" || true
wait "$pid"
