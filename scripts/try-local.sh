#!/usr/bin/env bash
# Fresh machine to a running XCT loop: install build packages, fetch the
# test model, build, and run the local example step by step.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/fetch-model.sh
rm -rf workspace
rc=0
cargo run --quiet -- local examples/local/create-config.yaml --workspace workspace --history create-config.history.yaml || rc=$?
case $rc in
  0) echo "the model signalled done" ;;
  1) echo "the run ended without done (exit 1: a budget ended it); every step is in create-config.history.yaml" ;;
  *) exit "$rc" ;;
esac
