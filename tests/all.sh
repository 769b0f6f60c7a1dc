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
# Then: cargo fmt --check, cargo clippy -D warnings, and every test - unit,
# gateway integration, the openai Python client, and the CRD tests against a
# real kube-apiserver that tests/controlplane/run.sh starts on loopback - and,
# before those, each fuzz target for a bounded time (tests/fuzz.sh; cargo-fuzz
# is installed into the cache on the first run).
#
# Arguments are passed to `cargo test` (e.g. tests/all.sh --test gateway).
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

step "building (first run on a machine: several minutes)"
cargo build --locked --all-targets

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --locked --all-targets -- -D warnings

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

step "running every test against a local Kubernetes control plane"
tests/controlplane/run.sh cargo test --locked --all-targets "$@" -- --include-ignored
step "all tests passed"
