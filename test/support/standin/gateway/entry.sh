#!/bin/sh
# Gateway stand-in: start-up (test/support/gateway_image.ts builds the image).
#
# Stands in for Cortex's gateway start-up (main.py@F lifespan) where cortex-install depends on it:
#   1. the schema: STANDIN_SCHEMA=0.1 behaves like 0.1.1's `create_all` (creates missing tables,
#      no alembic_version; facts §9 "schema"), then runs a query on the 0.1 columns that Alembic
#      0002 drops, so 0.1 fails to start on a 0.2 database (facts §5: 0002 is one-way);
#      STANDIN_SCHEMA=0.2 behaves like Alembic at start-up (services/migrations.py@R, facts §5):
#      stamps 0001_baseline on a 0.1 database, applies the irreversible 0002_engine_spec, and
#      refuses a revision it does not know. A failed migration stops start-up (main.py@F).
#   2. the first admin from ADMIN_BOOTSTRAP_USERNAME/_PASSWORD when no Admin exists (facts §3).
#   3. only then the HTTP server: uvicorn serves nothing before the lifespan start-up ends, so
#      `GET /health` answers {"status":"ok"} only after the migration (facts §5, §8).
#
# Settings: DATABASE_URL (as Cortex's compose writes it, postgresql+asyncpg://u:p@h:port/db),
# ADMIN_BOOTSTRAP_*, SESSION_SECRET, SESSION_TTL_HOURS, CORTEX_TRANSFER_DIRS, CORTEX_MODELS_DIR.
# Stand-in knobs (not Cortex's): STANDIN_PORT (default 8084, Cortex's fixed port),
# STANDIN_HOST (default 127.0.0.1: tests bind loopback only), STANDIN_FAIL (never-healthy: migrate,
# then /health answers 503 forever; crash: migrate, then exit 1), STANDIN_RECORD (file that gets one
# JSON line per request, default /var/log/standin/requests.jsonl), STANDIN_JOB_DELAY_MS (time a job
# stays pending, then running; default 300).
set -eu
. /gw/lib.sh

: "${STANDIN_PORT:=8084}"
: "${STANDIN_HOST:=127.0.0.1}"
: "${STANDIN_FAIL:=}"
: "${STANDIN_RECORD:=/var/log/standin/requests.jsonl}"
: "${STANDIN_JOB_DELAY_MS:=300}"
: "${CORTEX_TRANSFER_DIRS:=/var/cortex/exports}"
: "${CORTEX_MODELS_DIR:=/var/cortex/models}"
export STANDIN_PORT STANDIN_HOST STANDIN_FAIL STANDIN_RECORD STANDIN_JOB_DELAY_MS \
  CORTEX_TRANSFER_DIRS CORTEX_MODELS_DIR
mkdir -p "$(dirname "$STANDIN_RECORD")" "$STATE_DIR"
touch "$STANDIN_RECORD"

trap 'exit 0' TERM INT
log "Cortex gateway stand-in $CORTEX_VERSION (schema $STANDIN_SCHEMA) starting"
db_env_from_url

# The database may still be starting (0.1's compose has no service_healthy): retry for 60 s.
i=0
until psql_q -c 'SELECT 1' >/dev/null 2>&1; do
  i=$((i + 1))
  if [ "$i" -ge 300 ]; then
    log "ERROR: cannot connect to the database at $PGHOST:$PGPORT"
    psql_q -c 'SELECT 1' || true
    exit 1
  fi
  sleep 0.2
done

case "$STANDIN_SCHEMA" in
  0.1)
    psql_q -1 -f /gw/sql/schema_0.1.sql || { log "ERROR: create_all failed"; exit 1; }
    if ! err="$(psql_q -f /gw/sql/check_0.1.sql 2>&1 >/dev/null)"; then
      log "ERROR: Application startup failed: $err"
      exit 1
    fi
    ;;
  0.2)
    if ! out="$(psql_q -1 -f /gw/sql/migrate_0.2.sql 2>&1)"; then
      log "ERROR: database migration failed, startup aborted: $out"
      exit 1
    fi
    log "alembic: $(psql_q -At -c 'SELECT version_num FROM alembic_version')"
    ;;
  *)
    log "ERROR: STANDIN_SCHEMA must be 0.1 or 0.2"
    exit 1
    ;;
esac

psql_q -f /gw/sql/bootstrap.sql >/dev/null || { log "ERROR: admin bootstrap failed"; exit 1; }
# The session secret in force (SESSION_SECRET, or the random one bootstrap kept in config_kv), for
# handler.sh's cookie check.
(
  umask 077
  if [ -n "${SESSION_SECRET:-}" ]; then
    printf '%s' "$SESSION_SECRET" >"$STATE_DIR/session_secret"
  else
    psql_q -At -c "SELECT value FROM config_kv WHERE key = 'session_secret'" | tr -d '\n' \
      >"$STATE_DIR/session_secret"
  fi
)

if [ "$STANDIN_FAIL" = crash ]; then
  log "ERROR: STANDIN_FAIL=crash: start-up fails after the migration"
  exit 1
fi
[ "$STANDIN_FAIL" = never-healthy ] && log "STANDIN_FAIL=never-healthy: /health will answer 503"

log "Uvicorn running on http://$STANDIN_HOST:$STANDIN_PORT"
# One handler process per connection (busybox nc -ll -e forks per accepted connection).
nc -ll -p "$STANDIN_PORT" "$STANDIN_HOST" -e /gw/handler.sh &
wait $!
