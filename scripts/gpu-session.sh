#!/usr/bin/env bash
# A benchmark session on a lent GPU machine (the device tool) in two calls:
# a call carries at most 64 MiB (the working tree included), the machine
# has nvcc and cmake but no Rust, and stays warm 30 s after a call. So the
# xct folder, the model and the CUDA backend (or the source to build it
# from) are packed here into two folders, one per call.
#
#   scripts/gpu-session.sh pack DIST MODEL DEST       here
#     DIST       a folder made by scripts/dist-dynamic.sh (packed stripped)
#     MODEL      the GGUF, split over the two calls
#     DEST       gets DEST/1 and DEST/2; it must be git-ignored (add it to
#                .git/info/exclude), and each call carries one of them
#     CUDA_LIB   a libggml-cuda.so built here (scripts/gpu-bench.sh with
#                RUNS= and CUDA_ARCHS=90-real): packed instead of the
#                llama.cpp source, so the machine builds nothing
#     LLAMA_SRC  the pinned crate's llama.cpp/ (default: the one in cargo's
#                registry)
#   scripts/gpu-session.sh first DEST/1       there, the first call
#     unpacks into /tmp/xct-gpu and, unless a library came packed, starts
#     gpu-bench.sh's build-only run (RUNS=: the CUDA backend for
#     CUDA_ARCHS, default 90, and the ldd checks) in a process of its own,
#     which outlives the call (273 s on an H200 machine's 16 cores);
#     returns at once
#   scripts/gpu-session.sh second DEST/2      there, within 30 s
#     joins and checks the model, waits for the build (at most
#     BUILD_WAIT_S, default 480), and runs scripts/gpu-bench.sh with every
#     layer offloaded once per variant into $OUT/VARIANT/ (three files each:
#     the device tool brings back at most 8)
#     VARIANTS   default "streams:bc unified:c": NAME:SECTIONS, where NAME is
#                streams (one KV stream per slot), unified (one KV cache for
#                all slots: XCT_KV_UNIFIED=true) or cpu (no layer offloaded)
#     CONCURRENCY and N_CTX pass to gpu-bench.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=/tmp/xct-gpu
# What one call may carry, the working tree included, less a margin.
carry_limit=$((64 * 1024 * 1024 - 512 * 1024))

usage() { sed -n '2,31p' "$0" >&2; exit 2; }

pack() {
  [ $# -eq 3 ] || usage
  local dist=$1 model=$2 dest=$3
  [ -x "$dist/xct" ] || { echo "$dist/xct is missing: make DIST with scripts/dist-dynamic.sh" >&2; exit 2; }
  [ -f "$model" ] || { echo "no model at $model" >&2; exit 2; }
  mkdir -p "$dest/1" "$dest/2"
  git check-ignore -q "$dest/1/x" || { echo "$dest is not git-ignored: echo /$dest/ >> .git/info/exclude" >&2; exit 2; }
  rm -f "$dest"/1/* "$dest"/2/*
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  cp -a "$dist" "$tmp/dist"
  find "$tmp/dist" -type f \( -name xct -o -name '*.so*' \) -exec strip --strip-unneeded {} +
  tar cJf "$dest/1/dist.tar.xz" -C "$tmp" dist
  if [ -n "${CUDA_LIB:-}" ]; then
    strip --strip-unneeded -o "$tmp/libggml-cuda.so" "$CUDA_LIB"
    xz -T0 -c "$tmp/libggml-cuda.so" >"$dest/1/libggml-cuda.so.xz"
  else
    local src=${LLAMA_SRC:-$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llama-cpp-sys-2-"$(crate_version)"/llama.cpp | head -1)}
    [ -f "$src/ggml/CMakeLists.txt" ] || { echo "no llama.cpp source at $src (set LLAMA_SRC)" >&2; exit 2; }
    tar cJf "$dest/1/llama-src.tar.xz" -C "$(dirname "$src")" "$(basename "$src")"
  fi
  # The model's first part fills what the first call has left.
  local tree used room
  tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
  used=$(du -cb "$dest"/1/* | tail -1 | cut -f1)
  room=$((carry_limit - tree - used))
  [ "$room" -gt 0 ] || { echo "the first call is full before the model: tree $tree + packed $used bytes" >&2; exit 1; }
  head -c "$room" "$model" >"$dest/1/model.1"
  tail -c +"$((room + 1))" "$model" >"$dest/2/model.2"
  local second
  second=$(du -cb "$dest"/2/* | tail -1 | cut -f1)
  [ $((tree + second)) -le "$carry_limit" ] || { echo "the model is too large for two calls" >&2; exit 1; }
  sha256sum "$model" | cut -d' ' -f1 >"$dest/2/model.sha256"
  echo "$dest/1: $((tree + used + room)) bytes with the tree; $dest/2: $((tree + second)) bytes (limit $carry_limit)"
}

# The llama-cpp-sys-2 version Cargo.lock pins.
crate_version() {
  awk '/^name = "llama-cpp-sys-2"/ {getline; gsub(/"/, "", $3); print $3}' "$here/../Cargo.lock"
}

first() {
  [ $# -eq 1 ] || usage
  local part=$1
  rm -rf "$work"
  mkdir -p "$work/build"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
  nvcc --version | tail -2 || true
  tar xJf "$part/dist.tar.xz" -C "$work"
  cp "$part/model.1" "$work/"
  if [ -f "$part/libggml-cuda.so.xz" ]; then
    xz -dc "$part/libggml-cuda.so.xz" >"$work/libggml-cuda.so"
    echo "$work/libggml-cuda.so" >"$work/cuda.done"
    echo "CUDA backend: packed"
    return
  fi
  tar xJf "$part/llama-src.tar.xz" -C "$work"
  # gpu-bench.sh with RUNS= (set and empty) builds the library and checks
  # xct's and its libraries (ldd), then stops. setsid: the device tool ends
  # a call's processes unless they start a session of their own.
  setsid bash -c '
    if RUNS= WORK="$2/cuda" CUDA_ARCHS="$3" "$1/gpu-bench.sh" "$2/dist" "$2/llama.cpp" - "$2/build" >"$2/build/out.txt" 2>&1; then
      find "$2/cuda/cuda-build" -name libggml-cuda.so | head -1 >"$2/cuda.done"
    else
      touch "$2/cuda.failed"
    fi' _ "$here" "$work" "${CUDA_ARCHS:-90}" </dev/null >/dev/null 2>&1 &
  echo "CUDA backend: building for ${CUDA_ARCHS:-90} in the background ($work/build/)"
}

second() {
  [ $# -eq 1 ] || usage
  local part=$1 out=${OUT:?OUT: where the results go}
  [ -f "$work/model.1" ] || { echo "no first part in $work: run 'first' in the previous call" >&2; exit 1; }
  cat "$work/model.1" "$part/model.2" >"$work/model.gguf"
  echo "$(cat "$part/model.sha256")  $work/model.gguf" | sha256sum --check --quiet
  local waited=0
  while [ ! -f "$work/cuda.done" ]; do
    if [ -f "$work/cuda.failed" ] || [ "$waited" -ge "${BUILD_WAIT_S:-480}" ]; then
      tail -n 30 "$work/build/out.txt" "$work/build/build.log" >&2 || true
      echo "the CUDA backend was not built" >&2
      exit 1
    fi
    sleep 5
    waited=$((waited + 5))
  done
  [ -f "$work/build/out.txt" ] && cat "$work/build/out.txt"
  local lib variant name sections
  lib=$(cat "$work/cuda.done")
  for variant in ${VARIANTS:-streams:bc unified:c}; do
    name=${variant%%:*}
    sections=${variant#*:}
    local runs=gpu kv=
    case $name in
      streams) ;;
      unified) kv=XCT_KV_UNIFIED=true ;;
      cpu) runs=cpu ;;
      *) echo "VARIANTS: streams, unified or cpu, not $name" >&2; exit 2 ;;
    esac
    echo "== $name: sections $sections"
    env $kv RUNS=$runs SECTIONS="$sections" CUDA_LIB="$lib" WORK="$work/$name" \
      "$here/gpu-bench.sh" "$work/dist" - "$work/model.gguf" "$out/$name"
  done
}

case ${1:-} in
  pack | first | second)
    cmd=$1
    shift
    "$cmd" "$@"
    ;;
  *) usage ;;
esac
