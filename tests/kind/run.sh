#!/usr/bin/env bash
# Runs modelgate's cluster test suite against a kind cluster (needs Docker,
# kind and kubectl on PATH). It cannot run on the project's own build machine,
# which has no Docker engine; there, tests/controlplane/run.sh starts a local
# kube-apiserver + etcd instead. The tests themselves are the same: they only
# follow KUBECONFIG.
#
#   tests/kind/run.sh                      # cargo test -- --include-ignored
#   tests/kind/run.sh cargo test --test crds -- --include-ignored
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

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { say "error: '$tool' is not on PATH"; exit 1; }
done

if [[ $# -eq 0 ]]; then
  set -- cargo test -- --include-ignored
fi

created=0
kubeconfig="$(mktemp "${TMPDIR:-/tmp}/modelgate-kind-kubeconfig.XXXXXX")"
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  rm -f "$kubeconfig"
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
  crd/llmproviders.modelgate.dev crd/modelaliases.modelgate.dev

say "running: $*"
cd "$root"
MODELGATE_USE_EXISTING_CLUSTER=1 MODELGATE_TEST_CLUSTER=kind "$root/tests/controlplane/run.sh" "$@"
