# Sourced by build.sh and pin.sh: every Go download and build artefact lives
# under the modelgate cache, so a fresh clone on the same machine reuses them.
# shellcheck shell=bash
MODELGATE_CACHE="${MODELGATE_CACHE:-$HOME/.cache/modelgate}"
export MODELGATE_CACHE
export GOMODCACHE="$MODELGATE_CACHE/go/mod"
export GOCACHE="$MODELGATE_CACHE/go/build"
export GOFLAGS="-buildvcs=false -mod=readonly"
export GOWORK=off
export CGO_ENABLED=0
