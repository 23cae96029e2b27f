#!/usr/bin/env bash
# The policy gate: replay the recorded histories (histories/*.yaml) against
# the policies in the working tree (policies/) and compare every verdict with
# what the policies at BASE decide (a git worktree of BASE). Exit 0: no
# verdict changed; 1: a verdict changed or an expectation failed (the output
# says which, newly allowed or newly denied); 2: unreadable input.
#
# Usage: ./policy-gate.sh BASE [xct policy test options, e.g. --output github]
#   CI (pull request):  ./policy-gate.sh "origin/$BASE_REF" --output github
#   pre-commit:         ./policy-gate.sh HEAD
# XCT names the xct binary (default: xct on PATH); NAMESPACE_LABELS the
# labels of the namespaces the histories ran in (NS:key=value, space-separated).
set -euo pipefail
base=${1:?usage: policy-gate.sh BASE [options]}
shift
root=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
cleanup() {
  git -C "$root" worktree remove --force "$work/base" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
git -C "$root" worktree add --quiet --detach "$work/base" "$base"
labels=()
for l in ${NAMESPACE_LABELS:-}; do labels+=(--namespace-labels "$l"); done
expect=()
[ -f "$root/expectations.yaml" ] && expect=(--expect "$root/expectations.yaml")
"${XCT:-xct}" policy test --policies "$root/policies" --baseline "$work/base/policies" \
  "${labels[@]}" "${expect[@]}" "$@" "$root"/histories/*.yaml
