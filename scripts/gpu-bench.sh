#!/usr/bin/env bash
# Benchmark xct on a GPU machine that has nvcc and cmake but no Rust: build
# ggml's CUDA backend from the pinned llama.cpp source as a loadable library,
# put it next to a dynamic-backends `xct`, and run `xct bench` sections a, b
# and c twice, the same way: on the CPU alone (a backends folder without the
# CUDA library) and with every layer offloaded, for 1, 16 and 64 runs.
#
#   scripts/gpu-bench.sh DIST LLAMA_SRC MODEL OUT
#     DIST       folder made by scripts/dist-dynamic.sh (xct, the libraries
#                it links, its CPU backend libraries; rpath $ORIGIN)
#     LLAMA_SRC  the llama.cpp source of the pinned llama-cpp-sys-2 crate
#                (its llama.cpp/ folder), built by scripts/build-backend.sh
#     MODEL      a GGUF file
#     OUT        where cpu.json, gpu.json, their logs, build.log and
#                ldd-cuda.txt go (only small files: the build and the
#                backend folders are made under WORK)
#   CUDA_ARCHS   CMake CUDA architectures (default 90: an H100/H200 only;
#                "80;90" for A100 and H100)
#   CUDA_LIB     a libggml-cuda.so built beforehand from the same source
#                (the build is skipped, and LLAMA_SRC is not read)
#   WORK         scratch folder, kept (default: a temporary one, removed at
#                the end); the library it builds is WORK/cuda-build/bin/
#                libggml-cuda.so, for CUDA_LIB in a later call
#   SECTIONS     which bench sections (default abc)
#   CONCURRENCY  runs for section c (default 1,16,64)
#   N_CTX        context per run (default 2048: 64 runs share one KV cache)
#   RUNS         which runs (default "cpu gpu"; one alone to split the work
#                over two calls where a call's time is short; set and empty:
#                build the library only, for CUDA_LIB in a later call)
# xct's own variables pass through: XCT_KV_UNIFIED=true runs every bench
# with one KV cache for all slots (`xct bench --kv-unified`); call the
# script once per setting, each with its own OUT, to compare them.
#
# The CUDA toolkit's own lib64/ (or lib/) beside nvcc's bin/ is put on
# LD_LIBRARY_PATH, so libcudart and libcublas resolve where the toolkit is
# not in the loader's paths (a pip-installed one, say).
set -euo pipefail
[ $# -eq 4 ] || { sed -n '2,36p' "$0" >&2; exit 2; }
dist=$(cd "$1" && pwd); src=$2; model=$3; out=$4
archs=${CUDA_ARCHS:-90}
concurrency=${CONCURRENCY:-1,16,64}
mkdir -p "$out"
if [ -n "${WORK:-}" ]; then
  work=$WORK
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
[ -x "$dist/xct" ] || { echo "$dist/xct is missing: make DIST with scripts/dist-dynamic.sh" >&2; exit 2; }
command -v nvcc >/dev/null || { echo "nvcc not found" >&2; exit 2; }
toolkit=$(cd "$(dirname "$(command -v nvcc)")/.." && pwd)
export LD_LIBRARY_PATH="$dist:$toolkit/lib64:$toolkit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# Every library xct needs must resolve from DIST, not from the system.
if ldd "$dist/xct" | grep -q "not found"; then
  ldd "$dist/xct" >&2
  echo "xct has unresolved libraries" >&2
  exit 1
fi

if [ -n "${CUDA_LIB:-}" ]; then
  lib=$CUDA_LIB
  echo "CUDA backend: $lib (built beforehand)"
else
  start=$SECONDS
  lib=$("$(dirname "$0")/build-backend.sh" "$src" "$work/cuda-build" cuda \
    -DGGML_CUDA_NCCL=OFF -DCMAKE_CUDA_ARCHITECTURES="$archs" 2>"$out/build.log") \
    || { tail -30 "$out/build.log" >&2; exit 1; }
  echo "CUDA backend for $archs built in $((SECONDS - start)) s: $lib"
fi

# Two backend folders: the CPU libraries alone, and the same plus CUDA.
cpu_dir="$work/backends-cpu"; gpu_dir="$work/backends-gpu"
mkdir -p "$cpu_dir" "$gpu_dir"
cp "$dist"/libggml-cpu*.so "$cpu_dir/"
cp "$dist"/libggml-cpu*.so "$gpu_dir/"
cp "$lib" "$gpu_dir/libggml-cuda.so"  # ggml loads backends by this name pattern
ldd "$gpu_dir/libggml-cuda.so" >"$out/ldd-cuda.txt"
if grep -q "not found" "$out/ldd-cuda.txt"; then
  cat "$out/ldd-cuda.txt" >&2
  echo "libggml-cuda.so has unresolved libraries" >&2
  exit 1
fi
# Its cuMem* calls resolve in the driver's libcuda.so.1; a library linked
# against a stub that defines nothing has lost that dependency, and ggml's
# dlopen(RTLD_NOW) refuses it (undefined symbol: cuMemCreate), so the "gpu"
# run would stay on the CPU (see scripts/check-cuda-build.sh).
grep -q "libcuda.so.1" "$out/ldd-cuda.txt" \
  || { echo "libggml-cuda.so does not link libcuda.so.1 (built against an empty driver stub?)" >&2; exit 1; }

run_bench() {
  local name=$1 dir=$2 layers=$3
  XCT_BACKENDS_DIR=$dir "$dist/xct" bench --model "$model" --sections "${SECTIONS:-abc}" \
    --n-gpu-layers "$layers" --n-ctx "${N_CTX:-2048}" --concurrency "$concurrency" --json "$out/$name.json" | tee "$out/$name.txt"
}
runs=${RUNS-cpu gpu}
for name in $runs; do
  case $name in
    cpu) run_bench cpu "$cpu_dir" 0 ;;
    gpu) run_bench gpu "$gpu_dir" 999 ;;
    *) echo "RUNS: cpu or gpu, not $name" >&2; exit 2 ;;
  esac
done
python3 - "$out" $runs <<'PY'
import json, sys
out = sys.argv[1]
unused = False
for name in sys.argv[2:]:
    r = json.load(open(f"{out}/{name}.json"))
    b = r["backend"]
    devices = ", ".join(f"{d['name']} ({d['description']})" for d in b["devices"])
    parts = [f"{name}: {devices}; {b['layersOffloaded']} of {b['layers']} layers offloaded"]
    if "b" in r:
        parts.append(f"(b) lazy {r['b']['lazyOverUnconstrained']:.2f}x unconstrained")
    if "c" in r:
        c = r["c"]
        rates = ", ".join(f"{x['runs']}: {x['rate']:.2f}/s" for x in c["decisionsPerSecond"])
        parts.append(f"(c) {rates}; {c['overBaseline']['runs']} runs = {c['overBaseline']['ratio']:.2f}x 1 run")
    print("; ".join(parts))
    # A CUDA library that did not load (no driver, another CUDA major)
    # leaves the "gpu" run on the CPU: say so rather than pass it off as a
    # GPU number.
    unused |= name == "gpu" and b["layersOffloaded"] == 0
if unused:
    sys.exit("gpu.json: no layer was offloaded, so the CUDA backend was not used")
PY
