#!/usr/bin/env bash
# The README's main command: run cortex-install end to end on the embedded demo bundle.
# Installs what is missing on a fresh Debian 12 machine (Deno from npm; as root, Docker from Debian),
# starts a loopback-only engine if none runs, then `deno run -A main.ts demo "$@"`.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v deno >/dev/null 2>&1; then
  echo "demo.sh: installing Deno 2.9.6 from npm" >&2
  npm install -g deno@2.9.6 >/tmp/demo-deno.log 2>&1 || { cat /tmp/demo-deno.log >&2; exit 1; }
fi
need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "demo.sh: missing ${need[*]}; as root run: apt-get install -y ${need[*]}" >&2
    exit 1
  fi
  echo "demo.sh: installing ${need[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/tmp/demo-apt.log 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; }
fi
exec deno run -A main.ts demo "$@"
