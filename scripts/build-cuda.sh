#!/usr/bin/env bash
# Build the CUDA flavor of xct, as the Dockerfile's CUDA image does: ggml's
# backends as libraries loaded at start (`--features cuda,dynamic-backends`),
# the CUDA one compiled for CUDA_ARCHS, and everything collected into one
# folder by scripts/dist-dynamic.sh (xct, its libraries, the CPU variants
# and libggml-cuda.so, rpath $ORIGIN), then checked to hold device code for
# each architecture. Needs the CUDA toolkit (nvcc, cuobjdump) and cmake; no
# GPU.
#
#   scripts/build-cuda.sh OUT
#     OUT         the folder to fill (the Dockerfile's is /opt/xct)
#   CUDA_ARCHS    CMake CUDA architectures (default "80;90": A100, H100/H200)
#   CARGO_TARGET_DIR  as for cargo (default target). llama-cpp-sys-2's build
#                 does not rerun when only the architectures change: use a
#                 fresh target folder for other ones.
set -euo pipefail
[ $# -eq 1 ] || { sed -n '2,15p' "$0" >&2; exit 2; }
out=$1
cd "$(dirname "$0")/.."
for t in nvcc cuobjdump; do
  command -v $t >/dev/null || { echo "$t not found: the CUDA build needs the CUDA toolkit" >&2; exit 2; }
done
archs=${CUDA_ARCHS:-80;90}
# llama-cpp-sys-2 passes CMAKE_* variables from the environment to CMake.
export CMAKE_CUDA_ARCHITECTURES=$archs
target=${CARGO_TARGET_DIR:-target}
cargo build --release --locked --bin xct --features cuda,dynamic-backends
strip "$target/release/xct"
scripts/dist-dynamic.sh "$target/release" "$out"
lib=$out/libggml-cuda.so
[ -f "$lib" ] || { echo "$out has no libggml-cuda.so: the CUDA backend was not built" >&2; exit 1; }
# Device code (cubins) for each architecture asked for.
elves=$(cuobjdump --list-elf "$lib")
IFS=';' read -ra want <<<"$archs"
for a in "${want[@]}"; do
  n=$(grep -c "\.sm_${a}\.cubin" <<<"$elves" || true)
  [ "$n" -gt 0 ] || { echo "libggml-cuda.so has no sm_$a code (a warm target folder built for others?)" >&2; exit 1; }
  echo "libggml-cuda.so: $n cubins for sm_$a"
done
