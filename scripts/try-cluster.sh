#!/usr/bin/env bash
# The cluster workflow without a cluster: start the in-memory test API
# server, install the CRDs, apply the demo namespace and a run with kubectl,
# start `xct controller` with the test model, and show the run's history.
# With a real cluster, skip the server and use your own KUBECONFIG.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/fetch-model.sh
cargo build --quiet --bin xct && cargo build --quiet -p xct-testapi --bin xct-testapi
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
"$target/debug/xct-testapi" --listen 127.0.0.1:0 --kubeconfig "$work/kubeconfig" > "$work/url" &
for _ in $(seq 100); do [ -s "$work/url" ] && break; sleep 0.1; done
[ -s "$work/url" ] || { echo "the test API server did not start" >&2; exit 1; }
export KUBECONFIG="$work/kubeconfig"
export KUBECACHEDIR="$work/kubectl-cache"   # this server only, never ~/.kube/cache
echo "test API server at $(cat "$work/url")"
kubectl apply -f crds/
kubectl apply -k examples/gitops/policies
kubectl apply -f examples/cluster/demo.yaml
kubectl apply -f examples/cluster/scale-web.yaml
"$target/debug/xct" controller --health-addr 127.0.0.1:0 &
for _ in $(seq 120); do
  phase=$(kubectl get xctrun scale-web -n demo -o jsonpath='{.status.phase}')
  case "$phase" in Succeeded|Failed) break ;; esac
  sleep 1
done
kubectl get xctrun -n demo
kubectl get xctrun scale-web -n demo -o yaml | sed -n '/^status:/,$p'
