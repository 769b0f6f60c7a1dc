#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds (once) and prints the path of a pinned `helm`, compiled from its Go
# module with the Go toolchain (no prebuilt download):
#
#   helm="$(tests/tools/helm.sh)"
#   "$helm" lint charts/modelgate
#
# The binary is cached by version under
#   ${MODELGATE_CACHE:-$HOME/.cache/modelgate}/tools/helm-<version>/helm
# so only the first run pays for the build (a few minutes on 2 cores); later
# runs print the path at once. Go's module and build caches are the ones the
# test control plane uses (tests/controlplane/goenv.sh), so the many
# k8s.io modules the two share are downloaded and compiled once.
#
# The module's own go.sum pins every dependency, and `go install pkg@version`
# checks the module itself against the Go checksum database.
# Progress goes to stderr, the path to stdout.
set -euo pipefail

HELM_VERSION="v4.3.1"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=../controlplane/goenv.sh
source "$here/../controlplane/goenv.sh"

say() { printf 'tools/helm: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

major="${HELM_VERSION%%.*}"     # v4
module="helm.sh/helm/$major"
dir="$MODELGATE_CACHE/tools/helm-$HELM_VERSION"
helm="$dir/helm"

if [[ -x "$helm" ]]; then
  echo "$helm"
  exit 0
fi

command -v go >/dev/null || die "'go' is not on PATH; helm is built from its Go module with the Go toolchain"
mkdir -p "$dir"

# Serialise concurrent first runs.
exec 9>"$dir/.lock"
if ! flock -n 9; then
  say "another process is building helm in $dir; waiting for it..."
  flock 9
fi
if [[ -x "$helm" ]]; then
  echo "$helm"
  exit 0
fi

started=$SECONDS
say "first run on this machine: building helm $HELM_VERSION from $module ($(go env GOVERSION), $(nproc) cores)"
say "  into $dir; Go caches: $GOMODCACHE, $GOCACHE"
say "  this takes a few minutes; later runs reuse the binary"

staging="$(mktemp -d "$dir/partial.XXXXXX")"
trap 'rm -rf "$staging"' EXIT

# What helm's own Makefile stamps into a release build.
ldflags="-s -w -X $module/internal/version.version=$HELM_VERSION -X $module/internal/version.gitTreeState=clean"
# `go install pkg@version` builds outside any main module: -mod=readonly from
# goenv.sh does not apply there.
GOFLAGS="-buildvcs=false" GOBIN="$staging" \
  go install -trimpath -ldflags="$ldflags" "$module/cmd/helm@$HELM_VERSION"

got="$("$staging/helm" version --template '{{.Version}}')" || die "the freshly built helm does not run"
[[ "$got" == "$HELM_VERSION" ]] || die "the freshly built helm reports version '$got', not $HELM_VERSION"

mv "$staging/helm" "$helm"
say "built helm $HELM_VERSION in $((SECONDS - started))s (cached for next time in $dir)"
echo "$helm"
