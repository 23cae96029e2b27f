#!/usr/bin/env bash
# The whole test suite, as CI runs it: cargo tests, then the Helm chart checks.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/fetch-model.sh
cargo test --workspace --all-targets -- --test-threads=2
./scripts/check-chart.sh
