#!/usr/bin/env bash
# Installs what cortex-install's demo (and, with --test, its test suite) needs on a fresh Debian 12
# machine, and starts a loopback-only Docker engine if none runs. Idempotent: what is there is kept.
#   scripts/setup.sh          Deno (npm), Docker engine, Compose v1 and v2, busybox-static
#   scripts/setup.sh --test   the same, plus skopeo, PostgreSQL 15 (the test journeys use them) and
#                             GNU time (the benchmark suite's peak RSS)
# As non-root, it installs nothing with apt: it names the packages and exits 1.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
want_test=false
[ "${1:-}" = "--test" ] && want_test=true
log() { echo "setup: $*" >&2; }

if ! command -v deno >/dev/null 2>&1; then
  log "installing Deno 2.9.6 from npm"
  npm install -g deno@2.9.6 >/tmp/setup-deno.log 2>&1 || { cat /tmp/setup-deno.log >&2; exit 1; }
fi

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
[ -x /bin/busybox ] || need+=(busybox-static)
if $want_test; then
  command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
  [ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
  # GNU time: the benchmark suite's peak RSS (bench/lib/proc.ts; its --quick run is a test).
  [ -x /usr/bin/time ] || need+=(time)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing ${need[*]}; as root run: apt-get install -y ${need[*]}"
    exit 1
  fi
  log "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/tmp/setup-apt.log 2>&1 || {
    apt-get update -qq >>/tmp/setup-apt.log 2>&1
    apt-get install -y -qq --no-install-recommends "${need[@]}" >>/tmp/setup-apt.log 2>&1 ||
      { tail -30 /tmp/setup-apt.log >&2; exit 1; }
  }
  # Debian starts a cluster when it installs PostgreSQL; the tests run their own servers.
  if printf '%s\n' "${need[@]}" | grep -qx postgresql-15; then
    service postgresql stop >/dev/null 2>&1 || true
  fi
fi

# Compose v2 as a Docker CLI plugin beside v1 (Cortex 0.2's compose files need v2).
if ! docker compose version >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    log "Compose v2 is missing; as root run: $here/install-compose-v2"
    exit 1
  fi
  log "installing Compose v2 (Debian trixie's docker-compose, as a CLI plugin)"
  "$here/install-compose-v2" >/tmp/setup-compose.log 2>&1 || { cat /tmp/setup-compose.log >&2; exit 1; }
fi

if ! docker info >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    log "no Docker engine is running and this user cannot start one"
    exit 1
  fi
  # Never let the engine take a private-range address: no bridge, no iptables (loopback only).
  log "starting a loopback-only Docker engine (log: /tmp/dockerd.log)"
  setsid dockerd --bridge=none --iptables=false --ip-masq=false --ip-forward=false \
    >/tmp/dockerd.log 2>&1 </dev/null &
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 || { tail -30 /tmp/dockerd.log >&2; exit 1; }
fi
log "$(deno --version | head -1); engine $(docker version --format '{{.Server.Version}}'); compose $(docker compose version --short) and $(docker-compose version --short)"
