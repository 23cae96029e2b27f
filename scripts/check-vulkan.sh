#!/usr/bin/env bash
# The Vulkan backend, built and run on a machine without a GPU: ggml's
# Vulkan backend as a loadable library (scripts/build-backend.sh) next to
# a dynamic-backends xct, run on Mesa's lavapipe, a Vulkan driver that
# computes on the CPU (llvmpipe). Checks that
#   - it builds from the pinned llama.cpp source. Debian 12's Vulkan
#     headers (1.3.239) lack VK_EXT_layer_settings, which this llama.cpp
#     uses, so the headers (Vulkan and SPIR-V, header-only) are Debian
#     13's, pinned by sha256 below, unpacked under WORK; the loader, glslc
#     and the driver are Debian 12's own;
#   - xct loads it from its backends folder and offloads every layer to
#     the Vulkan device;
#   - a run of examples/local/create-config.yaml (two steps, greedy) makes
#     the same decisions, byte for byte, on the Vulkan device as on the CPU;
#   - with STATIC=1, the same for `--features vulkan` (the backend compiled
#     into xct), built with the same headers in CARGO_TARGET_DIR (default
#     target/vk-static; about 14 minutes cold on 2 cores).
# lavapipe is slow (minutes for what the CPU does in seconds): this checks
# that the Vulkan path works, not how fast it is.
#
#   scripts/check-vulkan.sh DIST
#     DIST  a folder made by scripts/dist-dynamic.sh from a
#           `--features dynamic-backends` build (scripts/check-dynamic.sh)
#   WORK    headers, the CMake build and the runs (default target/vulkan)
#   STATIC  1: also build and check `--features vulkan`
set -euo pipefail
[ $# -eq 1 ] || { sed -n '2,25p' "$0" >&2; exit 2; }
dist=$(cd "$1" && pwd)
cd "$(dirname "$0")/.."
[ -x "$dist/xct" ] || { echo "$dist/xct is missing: make DIST with scripts/dist-dynamic.sh" >&2; exit 2; }
# The Vulkan loader, the shader compiler and Mesa's drivers (lavapipe).
./scripts/install-deps.sh glslc libvulkan1 mesa-vulkan-drivers
./scripts/fetch-model.sh
work=${WORK:-target/vulkan}
mkdir -p "$work"
work=$(cd "$work" && pwd)

# The headers: Debian 13's packages, fetched by their pool path.
pool=http://deb.debian.org/debian/pool/main
headers=$work/headers
if [ ! -f "$headers/usr/include/vulkan/vulkan.hpp" ]; then
  while read -r sum path; do
    deb=$work/$(basename "$path")
    curl -fsSL -o "$deb" "$pool/$path"
    echo "$sum  $deb" | sha256sum --check --quiet
    dpkg-deb -x "$deb" "$headers"
  done <<'DEBS'
8d329d465e16168afff58b1bd0dd6db46aac2cc3f56054a481b25a04e90b345a v/vulkan-loader/libvulkan-dev_1.4.309.0-1_amd64.deb
dc18db866d63680351c40ac6b6bece34cb52da64a7799ce1cc4f16f6bff4d064 s/spirv-headers/spirv-headers_1.6.1+1.4.309.0-1_all.deb
DEBS
fi
# What CMake's FindVulkan looks for under VULKAN_SDK: those headers,
# Debian 12's loader and glslc.
sdk=$work/sdk
mkdir -p "$sdk/lib" "$sdk/bin"
ln -sfn "$headers/usr/include" "$sdk/include"
ln -sf "$(ldconfig -p | awk '/libvulkan.so.1 .*x86-64/ {print $NF; exit}')" "$sdk/lib/libvulkan.so"
ln -sf "$(command -v glslc)" "$sdk/bin/glslc"

host=$(rustc -vV | sed -n 's/^host: //p')
src=$(cargo metadata --format-version 1 --locked --filter-platform "$host" | python3 -c '
import json, os, sys
pkgs = json.load(sys.stdin)["packages"]
print(next(os.path.dirname(p["manifest_path"]) for p in pkgs if p["name"] == "llama-cpp-sys-2"))')/llama.cpp
start=$SECONDS
lib=$(VULKAN_SDK=$sdk scripts/build-backend.sh "$src" "$work/build" vulkan \
  "-DSPIRV-Headers_DIR=$headers/usr/share/cmake/SPIRV-Headers" 2>"$work/build.log") \
  || { tail -30 "$work/build.log" >&2; exit 1; }
echo "Vulkan backend built in $((SECONDS - start)) s: $lib"
if ldd "$lib" | grep "not found"; then
  echo "libggml-vulkan.so has unresolved libraries" >&2
  exit 1
fi

# Two backend folders: the CPU libraries alone, and the same plus Vulkan.
rm -rf "$work/cpu" "$work/gpu" "$work/run"
mkdir -p "$work/cpu" "$work/gpu" "$work/run"
cp "$dist"/libggml-cpu*.so "$work/cpu/"
cp "$dist"/libggml-cpu*.so "$lib" "$work/gpu/"
sed -e 's/maxSteps: [0-9]*/maxSteps: 2/' -e 's/timeoutSeconds: [0-9]*/timeoutSeconds: 1800/' \
  examples/local/create-config.yaml >"$work/run/run.yaml"
model=$(pwd)/models/SmolLM2-135M-Instruct.Q4_1.gguf
# ggml leaves a device of type CPU out unless it is named: lavapipe is one.
export GGML_VK_VISIBLE_DEVICES=0
runs=("cpu $dist/xct $work/cpu 0" "gpu $dist/xct $work/gpu 999")
if [ "${STATIC:-}" = 1 ]; then
  target=${CARGO_TARGET_DIR:-target/vk-static}
  start=$SECONDS
  # FindVulkan reads VULKAN_SDK, find_package(SPIRV-Headers) the prefix path.
  VULKAN_SDK=$sdk CMAKE_PREFIX_PATH=$headers/usr CARGO_TARGET_DIR=$target \
    cargo build --release --locked --features vulkan --bin xct
  echo "xct --features vulkan built in $((SECONDS - start)) s"
  runs+=("static $(cd "$target/release" && pwd)/xct - 999")
fi
decisions() { awk '/^  decision:/ {on=1; next} /^  tool:/ {on=0} on' "$1"; }
for r in "${runs[@]}"; do
  read -r name xct backends layers <<<"$r"
  # The run fails by design (two steps do not finish the goal): its
  # history is what is compared.
  (cd "$work/run" && if [ "$backends" != - ]; then export XCT_BACKENDS_DIR=$backends; fi &&
    RUST_LOG=xct=info "$xct" local run.yaml --workspace "ws-$name" --history "$name.yaml" \
      --model "$model" --threads 2 --n-gpu-layers "$layers" >"$name.log" 2>&1) || true
  log=$work/run/$name.log
  grep -q "^step   2 " "$log" || { cat "$log" >&2; echo "the $name run did not make two steps" >&2; exit 1; }
  if [ "$name" = cpu ]; then
    [ "$(decisions "$work/run/cpu.yaml" | wc -l)" -gt 0 ] || { echo "no decision in the CPU run" >&2; exit 1; }
    continue
  fi
  grep -Eq 'Vulkan0 \(llvmpipe[^;]*; ([0-9]+) of \1 layers offloaded' "$log" \
    || { grep -i -E "offloaded|vulkan" "$log" >&2; echo "$name: the Vulkan backend did not take every layer" >&2; exit 1; }
  if ! diff <(decisions "$work/run/cpu.yaml") <(decisions "$work/run/$name.yaml"); then
    echo "$name: the Vulkan run decided otherwise than the CPU run" >&2
    exit 1
  fi
  grep -o 'Vulkan0 ([^;]*; [0-9]* of [0-9]* layers offloaded; [a-z]* backends' "$log" | head -1
  grep "^step" "$log"
  echo "$name: the same $(grep -c '^  decision:' "$work/run/cpu.yaml") decisions on Vulkan as on the CPU"
done
