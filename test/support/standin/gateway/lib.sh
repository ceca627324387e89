# Shared shell helpers of the gateway stand-in (sourced by entry.sh, handler.sh, job.sh).
# JSON is parsed and built by PostgreSQL itself (json functions in the scripts under sql/), so the
# shell only frames HTTP, touches files and calls psql.

STATE_DIR=/run/standin
SQL=/gw/sql

log() { printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2; }

# libpq's environment from DATABASE_URL (postgresql+asyncpg://user:password@host:port/db, as
# Cortex's compose writes it), so no password ever sits on a command line.
db_env_from_url() {
  u="${DATABASE_URL:?DATABASE_URL is required}"
  u="${u#*://}"
  creds="${u%@*}"
  rest="${u##*@}"
  PGUSER="$(httpd -d "${creds%%:*}")"
  PGPASSWORD="$(httpd -d "${creds#*:}")"
  hostport="${rest%%/*}"
  PGDATABASE="${rest#*/}"
  PGDATABASE="${PGDATABASE%%\?*}"
  PGHOST="${hostport%%:*}"
  PGPORT="${hostport##*:}"
  [ "$PGPORT" = "$hostport" ] && PGPORT=5432
  export PGUSER PGPASSWORD PGHOST PGPORT PGDATABASE
}

psql_q() { psql -X -q --no-password -v ON_ERROR_STOP=1 "$@"; }

# The message of psql's first ERROR line in "$1" (its stderr).
pg_error() { printf '%s\n' "$1" | sed -n 's/.*ERROR: *//p' | head -n 1; }

now_iso() { date -u +%Y-%m-%dT%H:%M:%SZ; }

reason() {
  case "$1" in
    200) echo OK ;; 400) echo Bad Request ;; 401) echo Unauthorized ;; 403) echo Forbidden ;;
    404) echo Not Found ;; 409) echo Conflict ;; 422) echo Unprocessable Entity ;;
    503) echo Service Unavailable ;; *) echo Error ;;
  esac
}

# respond STATUS BODY [HEADER-LINE]
respond() {
  len="$(printf '%s' "$2" | wc -c)"
  printf 'HTTP/1.1 %s %s\r\nContent-Type: application/json\r\nContent-Length: %s\r\nConnection: close\r\n' \
    "$1" "$(reason "$1")" "$len"
  [ -n "${3:-}" ] && printf '%s\r\n' "$3"
  printf '\r\n%s' "$2"
}

# Cortex's error shape (facts §6): {"error":{"code","message"}}. Codes and messages are ours.
respond_error() { respond "$1" "{\"error\":{\"code\":\"$2\",\"message\":\"$3\"}}"; }

# Whether "$1" is an absolute path under one of CORTEX_TRANSFER_DIRS (facts §6: bundle paths are
# gateway paths under the transfer dirs).
in_transfer_dirs() {
  case "$1" in /*) ;; *) return 1 ;; esac
  case "/$1/" in */../* | */./*) return 1 ;; esac
  old_ifs="$IFS"
  IFS=,
  for d in $CORTEX_TRANSFER_DIRS; do
    d="${d%/}"
    case "$1" in "$d" | "$d"/*)
      IFS="$old_ifs"
      return 0
      ;;
    esac
  done
  IFS="$old_ifs"
  return 1
}

# The models/<served>/manifest.json files of bundle "$1" as one JSON array on stdout.
manifests_json() {
  printf '['
  sep=''
  for m in "$1"/models/*/manifest.json; do
    [ -f "$m" ] || continue
    printf '%s' "$sep"
    cat "$m"
    sep=','
  done
  printf ']'
}
