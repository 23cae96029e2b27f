#!/usr/bin/env bash
# Run the #[ignore] real-cluster tests. Uses the current KUBECONFIG if it
# reaches a cluster; otherwise creates a throwaway kind (or k3d) cluster.
# Not run in CI (no container engine there).
set -euo pipefail
cd "$(dirname "$0")/../.."
created=""
if ! kubectl version >/dev/null 2>&1; then
  if command -v kind >/dev/null 2>&1; then
    kind create cluster --name xct-tests --wait 120s
    created="kind"
  elif command -v k3d >/dev/null 2>&1; then
    k3d cluster create xct-tests --wait
    created="k3d"
  else
    echo "no cluster reachable and neither kind nor k3d installed" >&2
    exit 1
  fi
fi
cleanup() {
  case "$created" in
    kind) kind delete cluster --name xct-tests ;;
    k3d) k3d cluster delete xct-tests ;;
  esac
}
trap cleanup EXIT
cargo test --test cluster -- --ignored --test-threads=1
