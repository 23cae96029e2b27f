#!/usr/bin/env bash
# Collect a `--features dynamic-backends` build of xct into one folder that
# runs anywhere with the same glibc: the binary (rpath $ORIGIN), the
# llama.cpp and ggml libraries it links, and the ggml backend libraries it
# loads at start from its own folder (the CPU ones for every x86-64 level;
# libggml-cuda.so when built with --features cuda,dynamic-backends). Drop
# another backend library (e.g. one built by scripts/gpu-bench.sh) into the
# folder and xct loads it too.
#
#   scripts/dist-dynamic.sh PROFILE_DIR OUT
#     PROFILE_DIR  target/release (or target/debug) of that build
#     OUT          the folder to fill
set -euo pipefail
[ $# -eq 2 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
profile=$1; out=$2
[ -x "$profile/xct" ] || { echo "$profile/xct is missing: cargo build --features dynamic-backends --bin xct" >&2; exit 2; }
command -v patchelf >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq patchelf >/dev/null; }
# The backend modules land in llama-cpp-sys-2's OUT_DIR/backends; the newest
# build is the one the binary came from.
backends=$(ls -dt "$profile"/build/llama-cpp-sys-2-*/out/backends 2>/dev/null | head -1)
[ -n "$backends" ] && ls "$backends"/libggml-*.so >/dev/null 2>&1 \
  || { echo "no backend libraries under $profile/build: was it built with --features dynamic-backends?" >&2; exit 2; }
mkdir -p "$out"
cp "$profile/xct" "$out/"
# The shared libraries xct links (libllama, libggml, libggml-base...), from
# the same build, with their soname links; then the backend modules.
cp -P "$(dirname "$backends")"/lib/lib*.so* "$out/"
cp "$backends"/libggml-*.so "$out/"
patchelf --set-rpath '$ORIGIN' "$out/xct"
for f in "$out"/*.so*; do [ -L "$f" ] || patchelf --set-rpath '$ORIGIN' "$f"; done
if env -u LD_LIBRARY_PATH ldd "$out/xct" | grep -q "not found"; then
  env -u LD_LIBRARY_PATH ldd "$out/xct" >&2
  echo "$out/xct does not resolve its libraries from its folder" >&2
  exit 1
fi
echo "$out: xct, $(ls "$out" | grep -c '\.so') libraries ($(ls "$out" | grep -c '^libggml-cpu') CPU backend variants), $(du -sh "$out" | cut -f1)"
