#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds (once) and prints the directory holding the test node's binaries:
#
#   kube-controller-manager, kube-scheduler, kubelet, kube-proxy
#       k8s.io/kubernetes at the version tests/controlplane/go.mod pins (the control
#       plane's own module, so every package they share with kube-apiserver is compiled
#       once, in Go's build cache), in ONE `go build`, so they share compilation too;
#   coredns, oci-image
#       this directory's go.mod: CoreDNS with the plugins cluster DNS needs
#       (cmd/coredns), and the image assembler (cmd/oci-image, go-containerregistry);
#   pause
#       Kubernetes' own build/pause/linux/pause.c from the same k8s.io/kubernetes module,
#       compiled static with cc as its Makefile does.
#
#   bin="$(tests/node/build.sh)"
#
# Cached under ${MODELGATE_CACHE:-$HOME/.cache/modelgate}/node/<versions>_<hash>/bin, the
# hash covering both go.mod/go.sum pairs and the sources here: later runs return at once.
# Progress goes to stderr, the directory to stdout.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
controlplane="$here/../controlplane"
# shellcheck source=../controlplane/goenv.sh
source "$controlplane/goenv.sh"

say() { printf 'node: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ { print $2; exit }' "$controlplane/go.mod")"
coredns_version="$(awk '$1 == "github.com/coredns/coredns" && $2 ~ /^v/ { print $2; exit }' "$here/go.mod")"
[[ -n "$k8s_version" && -n "$coredns_version" ]] || die "cannot read the pinned versions from the go.mod files"
key="$(cat "$controlplane/go.mod" "$controlplane/go.sum" "$here/go.mod" "$here/go.sum" \
  "$here"/cmd/*/*.go "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12)"
root="$MODELGATE_CACHE/node/kubernetes-${k8s_version}_coredns-${coredns_version}_$key"
bin="$root/bin"
binaries=(kube-controller-manager kube-scheduler kubelet kube-proxy coredns oci-image upstream pause)

have_all() {
  local b
  for b in "${binaries[@]}"; do [[ -x "$bin/$b" ]] || return 1; done
}

if have_all; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || die "'go' is not on PATH; the test node is built from source with the Go toolchain"
command -v cc >/dev/null || die "'cc' is not on PATH; the pause binary is compiled from Kubernetes' pause.c (apt-get install gcc libc6-dev)"
mkdir -p "$root"
exec 9>"$root/.lock"
if ! flock -n 9; then
  say "another process is building the test node in $root; waiting for it..."
  flock 9
fi
if have_all; then
  echo "$bin"
  exit 0
fi

if [[ "$k8s_version" =~ ^v([0-9]+)\.([0-9]+)\. ]]; then
  major="${BASH_REMATCH[1]}" minor="${BASH_REMATCH[2]}"
else
  die "unexpected Kubernetes version '$k8s_version'"
fi
# The version stamp Kubernetes' own build gives its binaries (as tests/controlplane/build.sh).
ldflags=(-s -w)
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=(
    -X "$pkg.gitVersion=$k8s_version" -X "$pkg.gitMajor=$major" -X "$pkg.gitMinor=$minor"
    -X "$pkg.gitTreeState=clean" -X "$pkg.buildDate=1970-01-01T00:00:00Z"
  )
done

started=$SECONDS
say "first run on this machine: building the test node from source ($(go env GOVERSION), $(nproc) cores)"
say "  kube-controller-manager, kube-scheduler, kubelet, kube-proxy $k8s_version; coredns $coredns_version; pause"
say "  into $bin; Go caches: $GOMODCACHE, $GOCACHE"
staging="$(mktemp -d "$root/bin.partial.XXXXXX")"
trap 'rm -rf "$staging"' EXIT

step=$SECONDS
say "[1/3] go build kube-controller-manager kube-scheduler kubelet kube-proxy (one invocation)..."
(cd "$controlplane" && go mod download && go build -trimpath -ldflags="${ldflags[*]}" -o "$staging/" \
  k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
say "      done in $((SECONDS - step))s"

step=$SECONDS
say "[2/3] go build coredns oci-image upstream..."
(cd "$here" && go mod download && go build -trimpath -ldflags="-s -w" -o "$staging/" ./cmd/coredns ./cmd/oci-image ./cmd/upstream)
say "      done in $((SECONDS - step))s"

step=$SECONDS
pause_src="$(cd "$controlplane" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause"
pause_version="$(awk -F' *\\?= *' '$1 == "TAG" { print $2; exit }' "$pause_src/Makefile")"
[[ -n "$pause_version" ]] || die "cannot read the pause version from $pause_src/Makefile"
say "[3/3] cc -static pause.c (pause $pause_version)..."
cc -Os -Wall -Werror -static -DVERSION="v$pause_version-modelgate" -o "$staging/pause" "$pause_src/linux/pause.c"
strip "$staging/pause" 2>/dev/null || true
echo "$pause_version" >"$staging/pause.version"
say "      done in $((SECONDS - step))s"

for b in kubelet kube-proxy kube-controller-manager kube-scheduler; do
  "$staging/$b" --version >/dev/null || die "the freshly built $b does not run"
done
"$staging/pause" -v >/dev/null || die "the freshly built pause does not run"

chmod 755 "$staging"
rm -rf "$bin"
mv "$staging" "$bin"
trap - EXIT
say "built the test node in $((SECONDS - started))s (cached for next time in $bin)"
echo "$bin"
