#!/bin/sh
# Gateway stand-in: one HTTP/1.1 request per connection on stdin/stdout (busybox nc -ll -e).
# Routes (facts §6, §8): GET /health; POST /auth/login; GET /admin/bundles/scan,
# POST /admin/bundles/import, GET /admin/bundles/status (0.2 only, Admin cookie required).
# Every request is recorded as one JSON line in $STANDIN_RECORD (the password of a login is not).
. /gw/lib.sh

CR="$(printf '\r')"
IFS=' ' read -r method target _proto || exit 0
content_length=0
cookie_hdr=""
while IFS= read -r line; do
  line="${line%"$CR"}"
  [ -z "$line" ] && break
  case "$line" in
    [Cc]ontent-[Ll]ength:*) content_length="$(echo "${line#*:}" | tr -d ' ')" ;;
    [Cc]ookie:*) cookie_hdr="${line#*:}" ;;
  esac
done
body=""
[ "$content_length" -gt 0 ] 2>/dev/null && body="$(head -c "$content_length")"

path="${target%%\?*}"
query=""
case "$target" in *\?*) query="${target#*\?}" ;; esac

# cortex_session=<value> from the Cookie header.
session=""
old_ifs="$IFS"
IFS=';'
for c in $cookie_hdr; do
  c="${c# }"
  case "$c" in cortex_session=*) session="${c#cortex_session=}" ;; esac
done
IFS="$old_ifs"

qparam() {
  old_ifs="$IFS"
  IFS='&'
  for kv in $query; do
    case "$kv" in "$1="*)
      IFS="$old_ifs"
      httpd -d "${kv#*=}"
      return 0
      ;;
    esac
  done
  IFS="$old_ifs"
  return 0
}

export REQ_BODY="$body"

# One JSON line per request; the body as base64 (no JSON parsing in the shell). A login's body
# holds the password: sql/login_record.sql gives that body without it.
jstr() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr -d '\r\n'; }
record() {
  printf '{"at":"%s","method":"%s","path":"%s","query":"%s","session":%s%s}\n' "$(now_iso)" \
    "$(jstr "$method")" "$(jstr "$path")" "$(jstr "$query")" \
    "$([ -n "$session" ] && echo true || echo false)" "$1" >>"$STANDIN_RECORD"
}
if [ "$path" != /auth/login ]; then
  record "$([ -n "$body" ] && printf ',"body_b64":"%s"' "$(printf '%s' "$body" | base64 -w 0)")"
fi

# Runs an endpoint script whose one output value is "STATUS\nSET-COOKIE\nBODY".
sql_endpoint() {
  if ! out="$(psql_q -At -f "$SQL/$1" 2>/tmp/err.$$)"; then
    msg="$(pg_error "$(cat /tmp/err.$$)")"
    rm -f /tmp/err.$$
    log "$1 failed: $msg"
    respond_error 500 internal_error "$(printf '%s' "$msg" | tr -d '"\\')"
    return
  fi
  rm -f /tmp/err.$$
  st="$(printf '%s\n' "$out" | sed -n 1p)"
  ck="$(printf '%s\n' "$out" | sed -n 2p)"
  bd="$(printf '%s\n' "$out" | sed -n '3,$p')"
  if [ -n "$ck" ]; then respond "$st" "$bd" "Set-Cookie: $ck"; else respond "$st" "$bd"; fi
}

# All /admin routes need an Admin session cookie (facts §6): uid.exp.role.sig, signed with the
# session secret (Cortex: HMAC with SESSION_SECRET), unexpired, role Admin.
require_admin() {
  old_ifs="$IFS"
  IFS=.
  # shellcheck disable=SC2086
  set -- $session
  IFS="$old_ifs"
  if [ $# -eq 4 ] && [ "$3" = Admin ] && [ "$2" -gt "$(date +%s)" ] 2>/dev/null &&
    [ "$4" = "$(printf '%s' "$(cat "$STATE_DIR/session_secret"):$1:$2:$3" | sha256sum | cut -d' ' -f1)" ]; then
    return 0
  fi
  respond_error 401 not_authenticated "Admin session required"
  return 1
}

# The bundle dir named by "$1", checked as the gateway does (facts §6): under a transfer dir,
# a folder with bundle.json of kind cortex-bundle. Responds and fails otherwise.
check_bundle() {
  if [ -z "$1" ] || ! in_transfer_dirs "$1"; then
    respond_error 400 path_not_allowed "Path is not under CORTEX_TRANSFER_DIRS"
    return 1
  fi
  if [ ! -f "$1/bundle.json" ]; then
    respond_error 404 bundle_not_found "No bundle.json in that folder"
    return 1
  fi
  if ! grep -q -E '"kind" *: *"cortex-bundle"' "$1/bundle.json"; then
    respond_error 400 invalid_bundle "bundle.json is not a cortex-bundle"
    return 1
  fi
}

# checksums.sha256 of bundle "$1" checked like the gateway's verifier: {verified,ok,bad,missing}.
checksums_json() {
  if [ ! -f "$1/checksums.sha256" ]; then
    printf '{"verified":false,"ok":0,"bad":0,"missing":0,"present":false}'
    return
  fi
  res="$(cd "$1" && sha256sum -c checksums.sha256 2>&1)"
  ok="$(printf '%s\n' "$res" | grep -c ': OK$')"
  missing="$(printf '%s\n' "$res" | grep -c -E 'FAILED open or read|No such file')"
  bad="$(printf '%s\n' "$res" | grep ': FAILED$' | grep -vc 'open or read')"
  printf '{"verified":true,"ok":%s,"bad":%s,"missing":%s,"present":true}' "$ok" "$bad" "$missing"
}

do_scan() {
  bpath="$(qparam path)"
  check_bundle "$bpath" || return 0
  checks='{"verified":false}'
  case "$(qparam verify)" in true | 1) checks="$(checksums_json "$bpath")" ;; esac
  manifests="$(manifests_json "$bpath")"
  # Model files already at <models dir>/<path> with the listed size (files_present_on_host).
  tab="$(printf '\t')"
  missing="$(MANIFESTS="$manifests" psql_q -At -F "$tab" -f "$SQL/manifest_files.sql" | while IFS="$tab" read -r served rel bytes; do
    f="$CORTEX_MODELS_DIR/$rel"
    if [ ! -f "$f" ] || [ "$(stat -c %s "$f")" != "$bytes" ]; then printf '%s\n' "$served"; fi
  done)"
  images='[]'
  [ -f "$bpath/images.json" ] && images="$(cat "$bpath/images.json")"
  SCAN_PATH="$bpath" BUNDLE_JSON="$(cat "$bpath/bundle.json")" IMAGES_JSON="$images" \
    MANIFESTS="$manifests" MISSING="$missing" CHECKS="$checks" sql_endpoint scan.sql
}

do_import() {
  if ! parsed="$(psql_q -At -f "$SQL/import_request.sql" 2>/tmp/err.$$)"; then
    msg="$(pg_error "$(cat /tmp/err.$$)" | tr -d '"\\')"
    rm -f /tmp/err.$$
    respond_error 422 invalid_request "$msg"
    return 0
  fi
  rm -f /tmp/err.$$
  bpath="$(printf '%s\n' "$parsed" | sed -n 1p)"
  check_bundle "$bpath" || return 0
  mkdir -p "$STATE_DIR"
  # One job at a time (facts §6); mkdir is the atomic test-and-set.
  if ! mkdir "$STATE_DIR/job.lock" 2>/dev/null; then
    respond_error 409 job_running "Another bundle job is running"
    return 0
  fi
  if [ -f "$STATE_DIR/job.json" ] && grep -q -E '"status" *: *"(pending|running)"' "$STATE_DIR/job.json"; then
    rmdir "$STATE_DIR/job.lock"
    respond_error 409 job_running "Another bundle job is running"
    return 0
  fi
  job_id="$(date +%s)-$$"
  JOB_ID="$job_id" JOB_AT="$(now_iso)" psql_q -At -f "$SQL/job_new.sql" >"$STATE_DIR/job.json.tmp"
  mv "$STATE_DIR/job.json.tmp" "$STATE_DIR/job.json"
  rmdir "$STATE_DIR/job.lock"
  # The job runs after the response, as Cortex's background task does.
  setsid /gw/job.sh "$job_id" </dev/null >/dev/null 2>>/tmp/job.log &
  respond 200 "{\"job\":$(cat "$STATE_DIR/job.json")}"
}

do_status() {
  if [ -f "$STATE_DIR/job.json" ]; then
    respond 200 "{\"job\":$(cat "$STATE_DIR/job.json")}"
  else
    respond 200 '{"job":null}'
  fi
}

case "$method $path" in
  "GET /health")
    if [ "$STANDIN_FAIL" = never-healthy ]; then
      respond 503 '{"status":"starting"}'
    else
      respond 200 '{"status":"ok"}'
    fi
    ;;
  "POST /auth/login")
    record "$(psql_q -At -f "$SQL/login_record.sql" 2>/dev/null | sed 's/^/,"body":/')"
    sql_endpoint login.sql
    ;;
  "GET /admin/bundles/scan" | "POST /admin/bundles/import" | "GET /admin/bundles/status")
    # The bundles API is new in 0.2 (facts §6); 0.1 has no such routes.
    if [ "$STANDIN_SCHEMA" != 0.2 ]; then
      respond_error 404 not_found "Not Found"
    elif require_admin; then
      case "$path" in
        */scan) do_scan ;;
        */import) do_import ;;
        */status) do_status ;;
      esac
    fi
    ;;
  *" /admin/"*) require_admin && respond_error 404 not_found "Not Found" ;;
  *) respond_error 404 not_found "Not Found" ;;
esac
