#!/usr/bin/env bash
# The CUDA image's build (scripts/build-cuda.sh), run on a machine with no
# GPU and no nvidia/cuda image: the CUDA 13.0 toolkit comes from NVIDIA's
# PyPI wheels (pinned by sha256 below). Checks that
#   - the build succeeds and libggml-cuda.so holds device code for each
#     architecture (build-cuda.sh checks with cuobjdump, from its own wheel);
#   - it needs only libcudart and libcublas (the toolkit's, as the CUDA
#     runtime image has them) and libcuda.so.1 (the GPU driver's), and
#     loads with every symbol resolved once a libcuda.so.1 is there;
#   - xct from the folder, with the CUDA libraries but no driver (the CUDA
#     image on a node without a GPU), loads its backends from its folder and
#     runs on the CPU, 0 layers offloaded (scripts/check-dist-cpu.sh).
# About an hour cold on 2 cores (every CPU variant, and the CUDA kernels for
# two architectures), so CI does not run it; see README "GPU".
#   WORK  where the toolkit is unpacked (default target/cuda-toolkit)
#   CUDA_ARCHS  as for build-cuda.sh
#   CARGO_TARGET_DIR  default target/cuda; the folder is its xct-cuda/
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/fetch-model.sh
work=${WORK:-target/cuda-toolkit}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda}

toolkit=$work/nvidia/cu13
if [ ! -x "$toolkit/bin/nvcc" ]; then
  mkdir -p "$work/wheels"
  # nvcc, its front end (crt) and back end (nvvm), the runtime headers and
  # library, CUB/Thrust (cccl), cuBLAS: what ggml-cuda compiles and links
  # against. cuobjdump only reads the result; 13.0 has no wheel of it.
  cat >"$work/requirements.txt" <<'REQ'
nvidia-cuda-nvcc==13.0.88 --hash=sha256:56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03
nvidia-cuda-crt==13.0.88 --hash=sha256:2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4
nvidia-nvvm==13.0.88 --hash=sha256:c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0
nvidia-cuda-runtime==13.0.96 --hash=sha256:7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548
nvidia-cuda-cccl==13.0.85 --hash=sha256:e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649
nvidia-cublas==13.0.2.14 --hash=sha256:0cf238ffdbe46c00cb9aa98e7bca745c223a5ca5a53e686ac8b3e5a08fe80d6c
nvidia-cuda-cuobjdump==13.2.86 --hash=sha256:d332c2ffe78e703ca0a3894be927f83124244e2acf0d792b8c12b4362d44d837
REQ
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$work/requirements.txt" -d "$work/wheels"
  for w in "$work"/wheels/*.whl; do python3 -m zipfile -e "$w" "$work"; done
  chmod +x "$toolkit"/bin/* "$toolkit"/nvvm/bin/*
  # The layout CMake's FindCUDAToolkit expects of an installed toolkit:
  # lib64/, unversioned library links, and lib64/stubs/libcuda.so, which
  # libggml-cuda.so links to for the driver API (cuMemCreate...); the real
  # libcuda.so.1 comes with the GPU driver. No wheel has the stub, so it is
  # made as NVIDIA's is: soname libcuda.so.1, defining every function that
  # cuda.h declares (after its _v2 renames). An empty one would not do: the
  # linker drops a library that defines nothing used, and libggml-cuda.so
  # would lose its dependency on libcuda.so.1.
  ln -sfn lib "$toolkit/lib64"
  for l in cudart cublas cublasLt; do ln -sf "lib$l.so.13" "$toolkit/lib/lib$l.so"; done
  mkdir -p "$toolkit/lib/stubs"
  echo '#include <cuda.h>' | cc -E -I"$toolkit/include" -x c - \
    | grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d ' (' | sort -u \
    | sed 's/.*/void &(void) {}/' \
    | cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$toolkit/lib/stubs/libcuda.so" -x c -
fi
toolkit=$(cd "$toolkit" && pwd)
export PATH="$toolkit/bin:$PATH" CUDAToolkit_ROOT=$toolkit

dist=$CARGO_TARGET_DIR/xct-cuda
rm -rf "$dist"
start=$SECONDS
./scripts/build-cuda.sh "$dist"
echo "built in $((SECONDS - start)) s"
dist=$(cd "$dist" && pwd)
lib=$dist/libggml-cuda.so

# Its libraries: the toolkit's, and the driver's libcuda.so.1 (its
# cuMem* calls resolve there), which alone is missing without a driver.
missing=$(LD_LIBRARY_PATH="$dist:$toolkit/lib" ldd "$lib" | awk '/not found/ {print $1}')
[ "$missing" = "libcuda.so.1" ] || { LD_LIBRARY_PATH="$dist:$toolkit/lib" ldd "$lib" >&2; echo "unresolved libraries: '$missing', not libcuda.so.1 alone" >&2; exit 1; }
# With a libcuda.so.1 there (the stub stands in for the driver's), every
# symbol resolves, as ggml's dlopen(RTLD_NOW) needs; ctypes loads so too.
drv=$(mktemp -d)
trap 'rm -rf "$drv"' EXIT
ln -s "$toolkit/lib/stubs/libcuda.so" "$drv/libcuda.so.1"
LD_LIBRARY_PATH="$dist:$toolkit/lib:$drv" python3 -c 'import ctypes, sys; ctypes.CDLL(sys.argv[1])' "$lib" \
  || { echo "libggml-cuda.so does not load with a driver library present" >&2; exit 1; }

# No driver: the CUDA backend cannot load, xct runs on the CPU.
LD_LIBRARY_PATH="$toolkit/lib" ./scripts/check-dist-cpu.sh "$dist"
echo "ok: $(du -sh "$dist" | cut -f1) in $dist, libggml-cuda.so $(du -h "$lib" | cut -f1)"
