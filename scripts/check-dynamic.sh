#!/usr/bin/env bash
# The loadable-backend build (`--features dynamic-backends`), built and
# tested as this project's machines can: the real-model tests pass with the
# CPU backend loaded at run time, scripts/dist-dynamic.sh makes a folder
# that runs on its own (rpath $ORIGIN, no LD_LIBRARY_PATH), and xct in it
# loads its backends from that folder. Its own target folder (target/dyn):
# about 15 minutes cold on 2 cores (every x86-64 CPU variant is compiled),
# so CI does not run it; see README "GPU".
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/fetch-model.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/dyn}
tests=(--test llama_decider --test local_e2e --test injection --test operator_e2e)
cargo test --features dynamic-backends "${tests[@]}" -- --test-threads=2
dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT
./scripts/dist-dynamic.sh "$CARGO_TARGET_DIR/debug" "$dist/xct"
env -u LD_LIBRARY_PATH ./scripts/check-dist-cpu.sh "$dist/xct"
