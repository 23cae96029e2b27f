#!/usr/bin/env bash
# Build the CPU container image from the real Dockerfile and run it as the
# chart runs it (read-only root, non-root user 65532, all capabilities
# dropped, no privilege escalation, /tmp as tmpfs, the model mounted
# read-only) against the in-memory test API server on the host network:
#   1. with the test model: /readyz turns 200 (llama.cpp loads in the image);
#   2. with examples/cluster/scale-web.decisions.yaml replayed: the run
#      scale-web Succeeds, Deployment web has 3 replicas, and the request log
#      shows the patch sent as system:serviceaccount:demo:xct-runner, dry run
#      first, then for real.
# Prints the image size and each phase's seconds.
#
# No registry is reachable here, so nothing is pulled: the Debian base is
# made with debootstrap and tagged with the name the Dockerfile uses, and
# the binary is built on this (Debian 12) machine and passed in with
# --target cpu-prebuilt. podman runs with runc and default_ulimits
# = [] (crun and the default RLIMIT_NOFILE fail on these machines' kernels).
# Needs root. Not part of CI (see README "Container image" for the timing).
#
#   scripts/check-image.sh                 # builds target/release/xct
#   XCT_IMAGE_BINARY=path scripts/check-image.sh   # uses that binary
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

need=()
for p in podman runc debootstrap curl; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
fi
./scripts/install-deps.sh
./scripts/fetch-model.sh

# Seconds since the script started, for the report.
t0=$SECONDS
phase() { echo "== $1 ($((SECONDS - t0)) s)"; }

work=$(mktemp -d)
containers=(xct-check-model xct-check-run)
remove_containers() {
  # One at a time: podman 4.3 stops at the first name it does not find.
  for c in "${containers[@]}"; do podman rm -f "$c" >/dev/null 2>&1 || true; done
}
cleanup() {
  remove_containers
  kill $(jobs -p) 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$work/containers.conf"
remove_containers   # left by an interrupted run

base=docker.io/library/debian:bookworm-slim
if ! podman image exists "$base"; then
  phase "making $base with debootstrap"
  rootfs="$work/rootfs"
  debootstrap --variant=minbase bookworm "$rootfs" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  tar -C "$rootfs" -c . | podman import --quiet - "$base" >/dev/null
  rm -rf "$rootfs"
fi

phase "building the binary"
binary=${XCT_IMAGE_BINARY:-}
if [ -z "$binary" ]; then
  cargo build --quiet --release --bin xct
  binary=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/xct
fi
target=$(./scripts/test-binaries.sh)

phase "building the image"
mkdir "$work/context"
cp "$binary" "$work/context/xct"
strip "$work/context/xct"
image=localhost/xct-operator:check
podman build --quiet --network host --target cpu-prebuilt -f Dockerfile -t "$image" "$work/context" >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "image $image: $((size / 1024 / 1024)) MiB"

phase "starting the test API server"
"$target/debug/xct-testapi" --listen 127.0.0.1:0 --kubeconfig "$work/kubeconfig" >"$work/url" &
for _ in $(seq 100); do [ -s "$work/url" ] && break; sleep 0.1; done
[ -s "$work/url" ] || { echo "the test API server did not start" >&2; exit 1; }
url=$(cat "$work/url")
chmod a+r "$work/kubeconfig"
export KUBECONFIG="$work/kubeconfig" KUBECACHEDIR="$work/kubectl-cache"
kubectl apply -f crds/ >/dev/null
kubectl apply -k examples/gitops/policies >/dev/null
kubectl apply -f examples/cluster/demo.yaml >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The container as the chart's securityContext and volumes make it.
run_container() {
  local name=$1 port=$2; shift 2
  podman run -d --name "$name" --network host --read-only --tmpfs /tmp \
    --user 65532:65532 --cap-drop ALL --security-opt no-new-privileges \
    -v "$work/kubeconfig:/etc/xct/kubeconfig:ro" -e KUBECONFIG=/etc/xct/kubeconfig \
    -v "$root/models:/models:ro" -v "$root/examples:/examples:ro" \
    "$image" controller --health-addr "127.0.0.1:$port" "$@" >/dev/null
}
# Wait for /readyz to answer 200; on timeout show the container's log.
wait_ready() {
  local name=$1 port=$2 code=
  for _ in $(seq 120); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz" || true)
    [ "$code" = 200 ] && return 0
    sleep 1
  done
  echo "$name: /readyz answered ${code:-nothing} after 120 s" >&2
  podman logs "$name" >&2 || true
  return 1
}

phase "container with the test model"
port=$(free_port)
run_container xct-check-model "$port" --model /models/SmolLM2-135M-Instruct.Q4_1.gguf
wait_ready xct-check-model "$port"
echo "/readyz 200 with the model loaded: $(curl -s "http://127.0.0.1:$port/readyz")"
podman rm -f xct-check-model >/dev/null

phase "container replaying scale-web.decisions.yaml"
port=$(free_port)
run_container xct-check-run "$port" --scripted-decisions /examples/cluster/scale-web.decisions.yaml
wait_ready xct-check-run "$port"
kubectl apply -f examples/cluster/scale-web.yaml >/dev/null
phase_now=
for _ in $(seq 120); do
  phase_now=$(kubectl get xctrun scale-web -n demo -o jsonpath='{.status.phase}')
  case "$phase_now" in Succeeded|Failed) break ;; esac
  sleep 1
done
replicas=$(kubectl get deployment web -n demo -o jsonpath='{.spec.replicas}')
if [ "$phase_now" != Succeeded ] || [ "$replicas" != 3 ]; then
  echo "scale-web: phase ${phase_now:-none}, web replicas ${replicas:-none}; expected Succeeded and 3" >&2
  kubectl get xctrun scale-web -n demo -o yaml >&2
  podman logs xct-check-run >&2 || true
  exit 1
fi
curl -s "$url/_testapi/requests" | python3 -c '
import json, sys
records = json.load(sys.stdin)
patches = [r for r in records if r["verb"] == "patch" and r["resource"] == "deployments" and r["name"] == "web"]
sa = "system:serviceaccount:demo:xct-runner"
shape = [(r["user"], r["dryRun"], r["status"]) for r in patches]
want = [(sa, True, 200), (sa, False, 200)]
if shape != want:
    sys.exit(f"patches of deployments/web: {shape}; expected {want}")
print(f"request log: {len(patches)} patches of deployments/web, as {sa}: dry run, then real")
'
echo "scale-web Succeeded; web has $replicas replicas"
phase "done"
