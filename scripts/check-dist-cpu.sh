#!/usr/bin/env bash
# Run xct from a folder made by scripts/dist-dynamic.sh on the CPU (a short
# `xct bench`, the test model) and check what check-dynamic.sh and
# check-cuda-build.sh both need: the backends came from that folder, no layer
# was offloaded, and on a CPU with AMX the AMX variant was swapped (ggml
# picks it there and it dies with SIGILL; src/model/llama/backend.rs). The
# loader's environment is the caller's: run it under `env -u
# LD_LIBRARY_PATH` to show the folder needs none.
#   scripts/check-dist-cpu.sh DIST
set -euo pipefail
[ $# -eq 1 ] || { sed -n '2,9p' "$0" >&2; exit 2; }
dist=$(cd "$1" && pwd)
out=$(RUST_LOG=xct=info "$dist/xct" bench --sections b --steps 2 --threads 2 2>&1) \
  || { rc=$?; echo "$out" | tail -20 >&2; echo "xct bench from $dist failed (exit $rc; 132 is SIGILL)" >&2; exit 1; }
echo "$out" | grep -q "0 of [0-9]* layers offloaded; dynamic backends from $dist;" \
  || { echo "$out" >&2; echo "xct did not run on the CPU with the backends of $dist" >&2; exit 1; }
if grep -qw amx_int8 /proc/cpuinfo; then
  echo "$out" | grep -q "in place of libggml-cpu-sapphirerapids.so" || { echo "$out" >&2; echo "the AMX CPU variant was not replaced" >&2; exit 1; }
fi
echo "$out" | grep "^machine:"
