#!/usr/bin/env bash
# Brings the debug binaries (xct, xct-testapi) up to date exactly as
# `cargo test --workspace --all-targets` builds them, and prints the target
# directory that holds them (under debug/). After the test suite this is a
# no-op. A plain `cargo build` of the same binaries compiles most crates
# again: the workspace's dev-dependencies change the features of shared
# dependencies, so a build's artifacts are not the tests' (some 3.5 min of
# a cold CI run on 2 cores, for the chart and image checks).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --quiet --no-run --workspace --all-targets
cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
