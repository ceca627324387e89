#!/usr/bin/env bash
# The README's test command: installs what is missing on a fresh Debian 12 machine (Deno, Docker
# engine, Compose v1 and v2, busybox-static, skopeo, PostgreSQL 15), starts a loopback-only engine
# if none runs, then runs the whole gate: `deno task ok` (fmt, lint, check, every test).
set -euo pipefail
cd "$(dirname "$0")"
scripts/setup.sh --test
exec deno task ok "$@"
