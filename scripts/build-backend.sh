#!/usr/bin/env bash
# Build one of ggml's GPU backends as a library that a dynamic-backends xct
# loads at start (libggml-NAME.so in its backends folder), from the
# llama.cpp source of the pinned llama-cpp-sys-2 crate: the same source as
# the xct folder's libggml-base, so the module's ABI matches. It is
# configured from the source's top, as the crate's build.rs does: the crate
# ships ggml/ without the tests/, examples/ and ggml.pc.in that a
# standalone ggml configure needs. Used by scripts/gpu-bench.sh (CUDA, on a
# GPU machine) and scripts/check-vulkan.sh (Vulkan, here).
#
#   scripts/build-backend.sh LLAMA_SRC BUILD NAME [CMAKE_ARG...]
#     LLAMA_SRC  the crate's llama.cpp/ folder
#     BUILD      the CMake build folder (kept: a second call rebuilds little)
#     NAME       cuda or vulkan: turns on the CMake option GGML_<NAME>
#     CMAKE_ARG  more -D options for that backend
# Prints the library's path on stdout; CMake's output goes to stderr.
set -euo pipefail
[ $# -ge 3 ] || { sed -n '2,16p' "$0" >&2; exit 2; }
src=$1 build=$2 name=$3
shift 3
[ -f "$src/ggml/CMakeLists.txt" ] || { echo "$src is not llama.cpp's source (no ggml/)" >&2; exit 2; }
case $name in
  cuda | vulkan) ;;
  *) echo "NAME: cuda or vulkan, not $name" >&2; exit 2 ;;
esac
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_COMMON=OFF -DLLAMA_CURL=OFF \
  -DGGML_BACKEND_DL=ON -DGGML_NATIVE=OFF "-DGGML_${name^^}=ON" "$@" >&2
cmake --build "$build" --target "ggml-$name" -j "$(nproc)" >&2
lib=$(find "$build" -name "libggml-$name.so" | head -1)
[ -n "$lib" ] || { echo "no libggml-$name.so was built in $build" >&2; exit 1; }
echo "$lib"
