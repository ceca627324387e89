#!/usr/bin/env bash
# Compile cortex-install into one executable with assets/ embedded.
#   ./compile.sh              -> dist/cortex-install (x86_64 Linux)
#   ./compile.sh aarch64      -> dist/cortex-install-aarch64 (aarch64 Linux)
#   ./compile.sh all          -> both
# deno compile needs a runtime ("denort") for the target. It downloads it from Deno's release host;
# on a host that cannot reach it, set DENORT_BIN=/path/to/denort (the denort of the same Deno
# version and target; the full `deno` binary can NOT stand in).
set -euo pipefail
cd "$(dirname "$0")"

targets=()
case "${1:-x86_64}" in
  x86_64) targets=(x86_64-unknown-linux-gnu) ;;
  aarch64) targets=(aarch64-unknown-linux-gnu) ;;
  all) targets=(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu) ;;
  *) echo "usage: $0 [x86_64|aarch64|all]" >&2; exit 2 ;;
esac

mkdir -p dist
for t in "${targets[@]}"; do
  out=dist/cortex-install
  [ "$t" = aarch64-unknown-linux-gnu ] && out=dist/cortex-install-aarch64
  echo "compiling $out for $t${DENORT_BIN:+ with DENORT_BIN=$DENORT_BIN}" >&2
  if ! deno compile --frozen -A --include assets/ --target "$t" --output "$out" main.ts 2>dist/compile.log; then
    cat dist/compile.log >&2
    if grep -qiE 'dl\.deno\.land|download|denort|error sending request|dns|connect' dist/compile.log; then
      cat >&2 <<MSG

compile.sh: deno compile could not fetch the runtime (denort) for $t.
This host cannot reach Deno's release host. Either run compile.sh on a build host that can, or
download denort-$t.zip for deno $(deno --version | head -1 | cut -d' ' -f2) elsewhere, unzip it,
and run:  DENORT_BIN=/path/to/denort ./compile.sh ${1:-x86_64}
MSG
    fi
    exit 1
  fi
  echo "built $out ($(du -h "$out" | cut -f1))" >&2
done
