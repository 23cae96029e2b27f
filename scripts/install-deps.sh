#!/usr/bin/env bash
# System packages the build needs (llama.cpp is compiled from source by
# llama-cpp-sys-2: cmake and libclang for bindgen). Idempotent; installs only
# what is missing. Needs root (or sudo) on Debian/Ubuntu.
set -euo pipefail
pkgs=(cmake libclang1-14 libclang-common-14-dev)
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
