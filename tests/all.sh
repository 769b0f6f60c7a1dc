#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this):
#
#   tests/all.sh
#
# On a fresh machine it installs what the suite needs, caching it under
# ${MODELGATE_CACHE:-$HOME/.cache/modelgate} so later runs are fast:
#   - a Python virtualenv with the official openai client and pytest;
#   - etcd, kube-apiserver and kubectl, built from Go modules (first run only:
#     several minutes; see tests/controlplane/), helm (tests/tools/helm.sh) and
#     gitops-health (tests/gitops/: Argo CD's Lua runtime and kstatus);
#   - the Rust build (CARGO_TARGET_DIR defaults into the cache).
#   - redis-server (Debian package) for the shared usage store tests;
#   - the test node (kubelet, kube-proxy, the controllers from the same Go
#     module; CoreDNS; Debian's containerd, runc, CNI plugins), the release
#     binary and the images made from it (first run: several minutes more;
#     see tests/node/).
# Then: cargo fmt --check, cargo clippy -D warnings, and every test - unit,
# gateway integration, the openai Python client, and the CRD tests against a
# real kube-apiserver that tests/controlplane/run.sh starts on loopback - and,
# before those, each fuzz target for a bounded time (tests/fuzz.sh; cargo-fuzz
# is installed into the cache on the first run); then the node tests
# (tests/node.rs: the chart and config/default installed, rolled and drained
# for real) on the single-node cluster tests/node/run.sh starts (needs root).
#
# Arguments are passed to `cargo test` (e.g. tests/all.sh --test gateway): then
# only the control plane suite runs, or only the node suite for --test node.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export MODELGATE_CACHE="${MODELGATE_CACHE:-$HOME/.cache/modelgate}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$MODELGATE_CACHE/target}"
mkdir -p "$MODELGATE_CACHE"

started=$SECONDS
step() { printf '\n==> %s (%ss)\n' "$*" "$((SECONDS - started))" >&2; }
die() { printf 'tests/all.sh: %s\n' "$*" >&2; exit 1; }

step "checking tools"
command -v cargo >/dev/null || die "cargo is missing: install Rust (https://rustup.rs), then run this again"
command -v go >/dev/null || die "go is missing: the local Kubernetes control plane is built from Go modules; install Go 1.25 or newer"
missing=()
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
command -v redis-server >/dev/null || missing+=(redis-server)
if [[ ${#missing[@]} -gt 0 ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    step "installing ${missing[*]} with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    die "missing: ${missing[*]}; install them and run this again"
  fi
fi
for component in rustfmt clippy; do
  cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1 || {
    command -v rustup >/dev/null && rustup component add "$component" >/dev/null 2>&1
  } || die "cargo $component is missing: rustup component add $component"
done

venv="$MODELGATE_CACHE/venv"
stamp="$venv/.requirements.sha256"
want="$(sha256sum tests/python/requirements.txt | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  step "creating the Python virtualenv with the openai client ($venv)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/python/requirements.txt
  echo "$want" >"$stamp"
fi
export MODELGATE_PYTHON="$venv/bin/python"

step "cargo fmt --check"
cargo fmt --all -- --check

# tests/node.rs is left out of --all-targets (Cargo.toml: it needs a node); name it too.
step "building (first run on a machine: several minutes)"
cargo build --locked --all-targets --test node

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets --test node -- -D warnings

step "helm for the deployment tests (first run on a machine: built from its Go module)"
MODELGATE_HELM="$(tests/tools/helm.sh)"; export MODELGATE_HELM

step "gitops-health for the GitOps tests: gopher-lua and kstatus (first run: built from its Go module)"
MODELGATE_GITOPS_HEALTH="$(tests/gitops/build.sh)"; export MODELGATE_GITOPS_HEALTH

if [[ $# -eq 0 ]]; then
  step "fuzzing: every target in fuzz/, about ${FUZZ_TOTAL_SECONDS:-75}s in all (first run on a machine: builds cargo-fuzz and the instrumented targets)"
  tests/fuzz.sh
else
  step "not fuzzing: a test selection was given (tests/fuzz.sh runs the fuzz targets)"
fi

# Which suites: both without arguments; with arguments, the one they select.
controlplane_suite=1 node_suite=1
if [[ $# -gt 0 ]]; then
  node_suite=0
  previous=""
  for arg in "$@"; do
    if [[ "$arg" == --test=node || ("$previous" == --test && "$arg" == node) ]]; then
      node_suite=1 controlplane_suite=0
    fi
    previous="$arg"
  done
fi

if [[ $controlplane_suite == 1 ]]; then
  step "running every test against a local Kubernetes control plane"
  tests/controlplane/run.sh cargo test --locked --all-targets "$@" -- --include-ignored
fi
if [[ $node_suite == 1 ]]; then
  [[ $(id -u) -eq 0 ]] || die "the node tests start a kubelet and containerd and need root; run tests/all.sh as root"
  node_started=$SECONDS
  step "the node tests on a local single-node cluster (first run on a machine: builds the node and the release binary)"
  if [[ $# -gt 0 ]]; then
    tests/node/run.sh cargo test --locked "$@" -- --include-ignored
  else
    tests/node/run.sh cargo test --locked --test node -- --include-ignored
  fi
  step "the node tests passed in $((SECONDS - node_started))s"
fi
step "all tests passed"
