#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds (once) and prints the path of `gitops-health`, the small Go program the GitOps tests
# ask what Argo CD (the health scripts in config/argocd/, under gopher-lua) and Flux (kstatus,
# sigs.k8s.io/cli-utils) say about the objects the real controller wrote:
#
#   health="$(tests/gitops/build.sh)"
#   kubectl get modelaliases -o json | "$health" --argocd-cm config/argocd/argocd-cm.yaml
#
# Built from this directory's go.mod / go.sum (every dependency pinned) with the Go caches of
# the test control plane (tests/controlplane/goenv.sh), and cached under
#   ${MODELGATE_CACHE:-$HOME/.cache/modelgate}/tools/gitops-health-<hash of the sources>/
# so only the first run pays for the build (about a minute); later runs print the path at once.
# Progress goes to stderr, the path to stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../controlplane/goenv.sh
source "$here/../controlplane/goenv.sh"

say() { printf 'gitops: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

key="$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-12)"
dir="$MODELGATE_CACHE/tools/gitops-health-$key"
binary="$dir/gitops-health"

if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi

command -v go >/dev/null || die "'go' is not on PATH; gitops-health is built from its Go module with the Go toolchain"
mkdir -p "$dir"
exec 9>"$dir/.lock"
if ! flock -n 9; then
  say "another process is building gitops-health in $dir; waiting for it..."
  flock 9
fi
if [[ -x "$binary" ]]; then
  echo "$binary"
  exit 0
fi

started=$SECONDS
say "first run on this machine: building gitops-health (gopher-lua, kstatus) into $dir"
staging="$(mktemp -d "$dir/partial.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
(cd "$here" && go build -trimpath -ldflags="-s -w" -o "$staging/gitops-health" .)
echo '{"apiVersion":"v1","kind":"List","items":[]}' | "$staging/gitops-health" >/dev/null \
  || die "the freshly built gitops-health does not run"
mv "$staging/gitops-health" "$binary"
say "built gitops-health in $((SECONDS - started))s (cached for next time in $dir)"
echo "$binary"
