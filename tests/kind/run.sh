#!/usr/bin/env bash
# Runs modelgate's cluster tests against a kind cluster (needs Docker, kind, kubectl and Go on
# PATH). It cannot run on the project's own build machine, which has no Docker engine; there,
# tests/controlplane/run.sh (API-level tests) and tests/node/run.sh (the node tests: pods,
# rollouts, drains) start local clusters instead. The tests themselves are the same: they
# only follow KUBECONFIG and the MODELGATE_*IMAGE variables.
#
#   tests/kind/run.sh                      # both suites, as tests/all.sh runs them
#   tests/kind/run.sh cargo test --test crds -- --include-ignored
#   tests/kind/run.sh cargo test --test node -- --include-ignored
#
# Images: modelgate is built from the Dockerfile (the users' recipe) and loaded into the
# cluster, and saved as the archive the image test reads; the test images (curl, the paced
# upstream) are the ones tests/node/images.sh assembles, loaded with `kind load image-archive`.
#
# Environment:
#   KIND_CLUSTER_NAME   cluster to use or create (default modelgate-test)
#   KIND_NODE_IMAGE     node image for a new cluster (default: kind's own)
#   KEEP_KIND_CLUSTER=1 keep a cluster this script created (default: delete it)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cluster="${KIND_CLUSTER_NAME:-modelgate-test}"
say() { printf 'kind: %s\n' "$*" >&2; }

for tool in docker kind kubectl go curl; do
  command -v "$tool" >/dev/null || { say "error: '$tool' is not on PATH"; exit 1; }
done

created=0
work="$(mktemp -d "${TMPDIR:-/tmp}/modelgate-kind.XXXXXX")"
kubeconfig="$work/kubeconfig"
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  rm -rf "$work"
  if [[ $created == 1 && "${KEEP_KIND_CLUSTER:-}" != 1 ]]; then
    say "deleting cluster $cluster"
    kind delete cluster --name "$cluster" || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  say "reusing existing cluster $cluster"
else
  say "creating cluster $cluster"
  image_args=()
  if [[ -n "${KIND_NODE_IMAGE:-}" ]]; then
    image_args=(--image "$KIND_NODE_IMAGE")
  fi
  created=1
  kind create cluster --name "$cluster" --config "$here/cluster.yaml" "${image_args[@]}" --wait 180s
fi
kind get kubeconfig --name "$cluster" >"$kubeconfig"
export KUBECONFIG="$kubeconfig"

say "installing the CRDs from crds/"
kubectl apply --server-side --force-conflicts -f "$root/crds/"
kubectl wait --for=condition=Established --timeout=60s \
  crd/llmproviders.modelgate.dev crd/modelaliases.modelgate.dev crd/gatewayreplicas.modelgate.dev \
  crd/teams.modelgate.dev crd/accessgroups.modelgate.dev

say "building the modelgate image from the Dockerfile"
export MODELGATE_IMAGE="localhost/modelgate/modelgate:kind-dev"
docker build -t "$MODELGATE_IMAGE" "$root"
kind load docker-image "$MODELGATE_IMAGE" --name "$cluster"
export MODELGATE_IMAGE_ARCHIVE="$work/modelgate.tar"
docker save -o "$MODELGATE_IMAGE_ARCHIVE" "$MODELGATE_IMAGE"

say "assembling and loading the test images (curl, upstream, and redis when redis-server is installed)"
while read -r name reference archive; do
  kind load image-archive "$archive" --name "$cluster"
  case "$name" in
    curl) export MODELGATE_CURL_IMAGE="$reference" ;;
    upstream) export MODELGATE_UPSTREAM_IMAGE="$reference" ;;
    redis) export MODELGATE_REDIS_IMAGE="$reference" ;;
  esac
done < <("$root/tests/node/images.sh" "$("$root/tests/node/build.sh" --tools)")
MODELGATE_HELM="$("$root/tests/tools/helm.sh")"
export MODELGATE_HELM

cd "$root"
export MODELGATE_USE_EXISTING_CLUSTER=1 MODELGATE_TEST_CLUSTER=kind
if [[ $# -gt 0 ]]; then
  say "running: $*"
  "$root/tests/controlplane/run.sh" "$@"
else
  say "running the control plane suite, then the node suite"
  "$root/tests/controlplane/run.sh" cargo test --all-targets -- --include-ignored
  "$root/tests/controlplane/run.sh" cargo test --test node -- --include-ignored
fi
