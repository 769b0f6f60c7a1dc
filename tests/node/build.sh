#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds (once) and prints the directory holding the test node's binaries:
#
#   kube-controller-manager, kube-scheduler, kubelet, kube-proxy
#       k8s.io/kubernetes at the version tests/controlplane/go.mod pins (the control
#       plane's own module, so every package they share with kube-apiserver is compiled
#       once, in Go's build cache), in ONE `go build`, so they share compilation too;
#   coredns, oci-image, upstream
#       this directory's go.mod: CoreDNS with the plugins cluster DNS needs
#       (cmd/coredns), the image assembler (cmd/oci-image, go-containerregistry) and the
#       test upstream (cmd/upstream), in one `go build`;
#   pause
#       Kubernetes' own build/pause/linux/pause.c from the same k8s.io/kubernetes module,
#       compiled static with cc as its Makefile does.
#
#   bin="$(tests/node/build.sh)"
#   tools="$(tests/node/build.sh --tools)"   # only coredns, oci-image, upstream (for kind)
#
# Cached under ${MODELGATE_CACHE:-$HOME/.cache/modelgate}/node/: kubernetes-<v>_<hash>/bin
# (hash of tests/controlplane/go.mod and go.sum) and tools-coredns-<v>_<hash>/bin (hash of
# this directory's go.mod, go.sum and sources), linked together in bin-<hash>-<hash>; later
# runs return at once.
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
# Two caches, so that editing a small tool does not relink kubelet: the Kubernetes binaries
# (and pause, from the same module) keyed by the control plane's go.mod/go.sum, the tools by
# this directory's go.mod/go.sum and sources. Bump `recipe` when the build commands change.
recipe=1
k8s_key="$( (echo "$recipe"; cat "$controlplane/go.mod" "$controlplane/go.sum") | sha256sum | cut -c1-12)"
tools_key="$( (echo "$recipe"; cat "$here/go.mod" "$here/go.sum" "$here"/cmd/*/*.go) | sha256sum | cut -c1-12)"
k8s_bin="$MODELGATE_CACHE/node/kubernetes-${k8s_version}_$k8s_key/bin"
tools_bin="$MODELGATE_CACHE/node/tools-coredns-${coredns_version}_$tools_key/bin"
# What callers get: one directory of links to both.
bin="$MODELGATE_CACHE/node/bin-${k8s_key}-$tools_key"
k8s_binaries=(kube-controller-manager kube-scheduler kubelet kube-proxy pause)
tool_binaries=(coredns oci-image upstream)

have() {
  local dir="$1" b
  shift
  for b in "$@"; do [[ -x "$dir/$b" ]] || return 1; done
}
have_all() {
  have "$bin" "${k8s_binaries[@]}" "${tool_binaries[@]}"
}

tools_only=0
[[ "${1:-}" != --tools ]] || tools_only=1
if [[ $tools_only == 1 ]] && have "$tools_bin" "${tool_binaries[@]}"; then
  echo "$tools_bin"
  exit 0
fi
if have_all; then
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || die "'go' is not on PATH; the test node is built from source with the Go toolchain"
command -v cc >/dev/null || die "'cc' is not on PATH; the pause binary is compiled from Kubernetes' pause.c (apt-get install gcc libc6-dev)"
mkdir -p "$MODELGATE_CACHE/node"
exec 9>"$MODELGATE_CACHE/node/.build.lock"
if ! flock -n 9; then
  say "another process is building the test node; waiting for it..."
  flock 9
fi
if [[ $tools_only == 0 ]] && have_all; then
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
staging=""
trap '[[ -z "$staging" ]] || rm -rf "$staging"' EXIT

if [[ $tools_only == 0 ]] && ! have "$k8s_bin" "${k8s_binaries[@]}"; then
  say "first run on this machine: building the test node's Kubernetes binaries ($(go env GOVERSION), $(nproc) cores)"
  say "  kube-controller-manager, kube-scheduler, kubelet, kube-proxy $k8s_version and pause, into $k8s_bin"
  say "  Go caches: $GOMODCACHE, $GOCACHE (packages kube-apiserver shares with them are reused)"
  mkdir -p "$(dirname "$k8s_bin")"
  staging="$(mktemp -d "$(dirname "$k8s_bin")/bin.partial.XXXXXX")"
  step=$SECONDS
  say "[1/2] go build kube-controller-manager kube-scheduler kubelet kube-proxy (one invocation)..."
  (cd "$controlplane" && go mod download && go build -trimpath -ldflags="${ldflags[*]}" -o "$staging/" \
    k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
  say "      done in $((SECONDS - step))s"
  step=$SECONDS
  pause_src="$(cd "$controlplane" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause"
  pause_version="$(awk -F' *\\?= *' '$1 == "TAG" { print $2; exit }' "$pause_src/Makefile")"
  [[ -n "$pause_version" ]] || die "cannot read the pause version from $pause_src/Makefile"
  say "[2/2] cc -static pause.c (pause $pause_version)..."
  cc -Os -Wall -Werror -static -DVERSION="v$pause_version-modelgate" -o "$staging/pause" "$pause_src/linux/pause.c"
  strip "$staging/pause" 2>/dev/null || true
  echo "$pause_version" >"$staging/pause.version"
  say "      done in $((SECONDS - step))s"
  for b in kubelet kube-proxy kube-controller-manager kube-scheduler; do
    "$staging/$b" --version >/dev/null || die "the freshly built $b does not run"
  done
  "$staging/pause" -v >/dev/null || die "the freshly built pause does not run"
  chmod 755 "$staging"
  rm -rf "$k8s_bin"
  mv "$staging" "$k8s_bin"
  staging=""
fi

if ! have "$tools_bin" "${tool_binaries[@]}"; then
  say "building coredns $coredns_version, oci-image and upstream (tests/node/cmd) into $tools_bin"
  mkdir -p "$(dirname "$tools_bin")"
  staging="$(mktemp -d "$(dirname "$tools_bin")/bin.partial.XXXXXX")"
  step=$SECONDS
  (cd "$here" && go mod download && go build -trimpath -ldflags="-s -w" -o "$staging/" ./cmd/coredns ./cmd/oci-image ./cmd/upstream)
  say "      done in $((SECONDS - step))s"
  chmod 755 "$staging"
  rm -rf "$tools_bin"
  mv "$staging" "$tools_bin"
  staging=""
fi

if [[ $tools_only == 1 ]]; then
  echo "$tools_bin"
  exit 0
fi
staging="$(mktemp -d "$MODELGATE_CACHE/node/bin.partial.XXXXXX")"
for b in "${k8s_binaries[@]}" pause.version; do ln -s "$k8s_bin/$b" "$staging/$b"; done
for b in "${tool_binaries[@]}"; do ln -s "$tools_bin/$b" "$staging/$b"; done
chmod 755 "$staging"
rm -rf "$bin"
mv "$staging" "$bin"
staging=""
say "the test node's binaries are ready in $((SECONDS - started))s (cached in $bin)"
echo "$bin"
