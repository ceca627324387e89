#!/bin/sh
# Gateway stand-in: the background bundle import job (facts §6), started by POST
# /admin/bundles/import after it answered. Its state is $STATE_DIR/job.json, which
# GET /admin/bundles/status returns. It stays `pending` STANDIN_JOB_DELAY_MS, then `running`.
. /gw/lib.sh
JOB_FILE="$STATE_DIR/job.json"

# job_update PATCH [MODEL]: merge PATCH into the job, append MODEL to artifacts.models.
job_update() {
  JOB="$(cat "$JOB_FILE")" PATCH="$1" MODEL="${2:-}" psql_q -At -f "$SQL/job_patch.sql" >"$JOB_FILE.tmp" &&
    mv "$JOB_FILE.tmp" "$JOB_FILE"
}

fail() {
  msg="$(printf '%s' "$1" | tr -d '"\\')"
  log "job failed: $msg"
  job_update "{\"status\":\"failed\",\"error\":\"$msg\",\"finished_at\":\"$(now_iso)\"}"
  exit 0
}

delay_ms="${STANDIN_JOB_DELAY_MS:-300}"
sleep "$((delay_ms / 1000)).$(printf '%03d' $((delay_ms % 1000)))"
job_update "{\"status\":\"running\",\"started_at\":\"$(now_iso)\"}"
sleep "$((delay_ms / 1000)).$(printf '%03d' $((delay_ms % 1000)))"

req="$(JOB="$(cat "$JOB_FILE")" psql_q -At -f "$SQL/job_request.sql")" || fail "cannot read the job"
bpath="$(printf '%s\n' "$req" | sed -n 1p)"
load_images="$(printf '%s\n' "$req" | sed -n 2p)"
import_models="$(printf '%s\n' "$req" | sed -n 3p)"
copy_files="$(printf '%s\n' "$req" | sed -n 4p)"
conflict="$(printf '%s\n' "$req" | sed -n 5p)"
verify="$(printf '%s\n' "$req" | sed -n 6p)"
names="$(printf '%s\n' "$req" | sed -n 7p)"

if [ "$verify" = true ]; then
  # verify_checksums fails on any bad or missing line (facts §6).
  (cd "$bpath" && sha256sum -c checksums.sha256 >/dev/null 2>&1) || fail "Checksum verification failed"
fi
if [ "$load_images" = true ]; then
  # Cortex's gateway runs docker load through docker.sock here; the stand-in has no docker, and
  # cortex-install never asks for it (the images are loaded and verified already).
  fail "The gateway stand-in does not load images (load_images=true)"
fi
if [ "$import_models" = true ]; then
  for m in "$bpath"/models/*/manifest.json; do
    [ -f "$m" ] || continue
    served="$(basename "$(dirname "$m")")"
    if [ -n "$names" ]; then
      case ",$names," in *",$served,"*) ;; *) continue ;; esac
    fi
    if [ "$copy_files" = true ] && [ -d "$bpath/models/$served/files" ]; then
      cp -r "$bpath/models/$served/files/." "$CORTEX_MODELS_DIR/" || fail "Cannot copy the files of $served"
    fi
    if ! art="$(MANIFEST="$(cat "$m")" CONFLICT="$conflict" psql_q -At -f "$SQL/import_model.sql" 2>/tmp/job-err.$$)"; then
      fail "$(pg_error "$(cat /tmp/job-err.$$)")"
    fi
    job_update '{}' "$art"
  done
fi
job_update "{\"status\":\"completed\",\"finished_at\":\"$(now_iso)\"}"
