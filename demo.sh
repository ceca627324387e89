#!/usr/bin/env bash
# The README's main command: run cortex-install end to end on the embedded demo bundle.
# Installs what is missing on a fresh Debian 12 machine (Deno from npm; as root, Docker and Compose
# from Debian), starts a loopback-only engine if none runs, then `deno run -A main.ts demo "$@"`.
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh
exec deno run -A main.ts demo "$@"
