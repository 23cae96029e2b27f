#!/usr/bin/env bash
# How many decisions are cut off at maxTokens, with the test model: the two
# local examples at temperature 0, then the context scenario (a 6 KB log
# read again and again with --n-ctx 2048, maxTokens 120) and the story
# scenario (fs.write of a long story, maxTokens 120) at temperature 1.2 for
# seeds 1..3. Prints one line per run and the total share.
# Usage: scripts/measure-cutoffs.sh   (after cargo build and scripts/fetch-model.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
xct="$target/debug/xct"
model=${XCT_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/ws"
for _ in $(seq 96); do echo "2026-11-27T10:00:00Z web-0 GET /api/items 200 12ms user=alice"; done > "$work/ws/access.log"
runs=(examples/local/create-config.yaml examples/local/absolute-path.yaml)
for seed in 1 2 3; do
  cat > "$work/context-$seed.yaml" <<Y
apiVersion: xct.dev/v1alpha1
kind: XctRun
metadata: {name: context-$seed}
spec:
  goal: Use fs.read on access.log, then use fs.read on access.log again, then say done.
  tools: [fs.read]
  limits: {maxSteps: 8, maxConsecutiveErrors: 8}
  model: {seed: $seed, maxTokens: 120, temperature: 1.2}
Y
  cat > "$work/story-$seed.yaml" <<Y
apiVersion: xct.dev/v1alpha1
kind: XctRun
metadata: {name: story-$seed}
spec:
  goal: Use fs.write to write a long story about a dragon into story.txt, then say done.
  tools: [fs.write]
  limits: {maxSteps: 3, maxConsecutiveErrors: 3}
  model: {seed: $seed, maxTokens: 120, temperature: 1.2}
Y
  runs+=("$work/context-$seed.yaml" "$work/story-$seed.yaml")
done
for m in "${runs[@]}"; do
  name=$(basename "$m" .yaml)
  extra=()
  case "$name" in context-* | story-*) extra=(--n-ctx 2048) ;; esac
  "$xct" local "$m" --workspace "$work/ws" --history "$work/$name.history.yaml" --model "$model" "${extra[@]}" >/dev/null 2>&1 || true
done
python3 - "$work" <<'P'
import glob, sys, yaml
total = cut = 0
for f in sorted(glob.glob(sys.argv[1] + "/*.history.yaml")):
    steps = yaml.safe_load(open(f)).get("steps", [])
    c = sum(1 for s in steps if s.get("model", {}).get("truncated"))
    print(f"{f.rsplit('/', 1)[1]}: {c}/{len(steps)} decisions cut off")
    total += len(steps); cut += c
print(f"total: {cut}/{total} cut off ({100 * cut / max(total, 1):.1f}%)")
P
