#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds (once) and prints the directory holding the test control plane's
# binaries: kube-apiserver, kubectl and etcd, compiled from the versions pinned
# in this directory's go.mod / go.sum.
#
#   bin="$(tests/controlplane/build.sh)"
#
# Binaries are cached by version under
#   ${MODELGATE_CACHE:-$HOME/.cache/modelgate}/controlplane/kubernetes-<v>_etcd-<v>/bin
# so only the first run pays for the build (several minutes on 2 cores); later
# runs return at once. Progress goes to stderr, the directory to stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=goenv.sh
source "$here/goenv.sh"

say() { printf 'controlplane: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

# The versions come from go.mod, so the cache key can never disagree with it.
k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$here/go.mod")"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ { print $2; exit }' "$here/go.mod")"
[[ -n "$k8s_version" && -n "$etcd_version" ]] || die "cannot read the pinned versions from $here/go.mod"

# Fold go.sum into the key too: a re-pin that changes dependencies but not the
# headline versions must not reuse stale binaries.
# Hash the contents only (not the paths), so every clone on a machine shares the cache.
sum_key="$(cat "$here/go.mod" "$here/go.sum" | sha256sum | cut -c1-12)"
root="$MODELGATE_CACHE/controlplane/kubernetes-${k8s_version}_etcd-${etcd_version}_${sum_key}"
bin="$root/bin"
binaries=(kube-apiserver kubectl etcd)

have_all() {
  local b
  for b in "${binaries[@]}"; do [[ -x "$bin/$b" ]] || return 1; done
}

if have_all; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || die "'go' is not on PATH; the control plane is built from source with the Go toolchain"
mkdir -p "$root"

# Serialise concurrent first runs (e.g. two test suites started at once).
exec 9>"$root/.lock"
if ! flock -n 9; then
  say "another process is building the control plane in $root; waiting for it..."
  flock 9
fi
if have_all; then
  echo "$bin"
  exit 0
fi

if [[ "$k8s_version" =~ ^v([0-9]+)\.([0-9]+)\. ]]; then
  major="${BASH_REMATCH[1]}" minor="${BASH_REMATCH[2]}"
else
  die "unexpected Kubernetes version '$k8s_version' in go.mod"
fi

# What Kubernetes' own build (hack/lib/version.sh) stamps into its binaries,
# so `kubectl version` and the server's /version report the real release.
ldflags=(-s -w)
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=(
    -X "$pkg.gitVersion=$k8s_version"
    -X "$pkg.gitMajor=$major"
    -X "$pkg.gitMinor=$minor"
    -X "$pkg.gitTreeState=clean"
    -X "$pkg.buildDate=1970-01-01T00:00:00Z"
  )
done

started=$SECONDS
say "first run on this machine: building the test control plane from source"
say "  kube-apiserver + kubectl $k8s_version, etcd $etcd_version ($(go env GOVERSION), $(nproc) cores)"
say "  into $bin"
say "  Go caches: $GOMODCACHE, $GOCACHE"
say "  this takes roughly 7-15 minutes on 2 cores (kube-apiserver is most of it); later runs reuse the binaries"

staging="$(mktemp -d "$root/bin.partial.XXXXXX")"
trap 'rm -rf "$staging"' EXIT

cd "$here"
step=$SECONDS
say "[1/4] downloading Go modules (go mod download)..."
go mod download
say "      done in $((SECONDS - step))s"

build() {
  local name="$1" pkg="$2" n="$3"
  step=$SECONDS
  say "[$n/4] go build $pkg -> $name ..."
  go build -trimpath -ldflags="${ldflags[*]}" -o "$staging/$name" "$pkg"
  say "      done in $((SECONDS - step))s"
}
build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver 2
build kubectl k8s.io/kubernetes/cmd/kubectl 3
build etcd go.etcd.io/etcd/server/v3 4

"$staging/kubectl" version --client >/dev/null || die "the freshly built kubectl does not run"
"$staging/etcd" --version >/dev/null || die "the freshly built etcd does not run"

chmod 755 "$staging"
rm -rf "$bin"
mv "$staging" "$bin"
trap - EXIT
say "built the control plane in $((SECONDS - started))s (cached for next time in $bin)"
echo "$bin"
