#!/usr/bin/env bash
# Fresh machine to a running XCT loop: install build packages, fetch the
# test model, build, and run the local example step by step.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/fetch-model.sh
rm -rf workspace
cargo run --quiet -- local examples/local/create-config.yaml --workspace workspace --history create-config.history.yaml
