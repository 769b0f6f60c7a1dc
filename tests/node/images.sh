#!/usr/bin/env bash
# Assembles the test images as OCI archives (tests/node/cmd/oci-image), each cached under
# ${MODELGATE_CACHE:-$HOME/.cache/modelgate}/node/images by the hash of what goes into it,
# and prints one line per image: NAME REFERENCE ARCHIVE.
#
#   tests/node/images.sh NODE_BIN [MODELGATE_BINARY]
#
# NODE_BIN is tests/node/build.sh's directory. Images:
#   pause      Kubernetes' pause, the pods' sandbox
#   coredns    cluster DNS
#   curl       Debian's curl, for requests from inside pods
#   upstream   cmd/upstream, a paced OpenAI-compatible server
#   redis      Debian's redis-server and sh, for the chart's tenancy.redis.deploy (when
#              redis-server is installed)
#   modelgate  (with MODELGATE_BINARY) the Dockerfile's runtime image without its base: the
#              binary, the libraries it loads, CA certificates for the platform verifier and
#              distroless' nonroot account; tests/node.rs checks that it and the Dockerfile agree
# tests/node/run.sh imports them all; tests/kind/run.sh loads curl and upstream into kind.
set -euo pipefail

node_bin="${1:?usage: images.sh NODE_BIN [MODELGATE_BINARY]}"
binary="${2:-}"
export MODELGATE_CACHE="${MODELGATE_CACHE:-$HOME/.cache/modelgate}"
images="$MODELGATE_CACHE/node/images"
mkdir -p "$images"
etc="$(mktemp -d "${TMPDIR:-/tmp}/modelgate-node-etc.XXXXXX")"
trap 'rm -rf "$etc"' EXIT
# The accounts of distroless' "nonroot" images (the Dockerfile's base), and name lookups
# that try /etc/hosts before DNS.
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$etc/group"
printf 'hosts: files dns\n' >"$etc/nsswitch.conf"
chmod 644 "$etc"/*

# libs BINARY: SOURCE:DEST arguments for the shared libraries BINARY loads (ldd's list,
# the dynamic loader included), each at the path it is loaded from.
libs() {
  local line lib
  if ! ldd "$1" >/dev/null 2>&1; then
    return 0 # static
  fi
  while read -r line; do
    case "$line" in
      *"=> /"*) lib="${line#*=> }" ;;
      /*) lib="$line" ;;
      *) continue ;;
    esac
    lib="${lib%% (*}"
    printf '%s:%s\n' "$lib" "$lib"
  done < <(ldd "$1")
}

# assemble NAME REPOSITORY OCI-IMAGE-ARGS...: an image archive in the cache, keyed by what
# goes into it; prints "NAME REFERENCE ARCHIVE".
assemble() {
  local name="$1" repository="$2" key ref archive spec
  shift 2
  key="$({
    printf '%s\n' "$@"
    for spec in "$@"; do
      [[ "$spec" == *:/* && -f "${spec%%:*}" ]] && sha256sum "${spec%%:*}" | cut -c1-64
    done
    sha256sum "$node_bin/oci-image"
  } | sha256sum | cut -c1-12)"
  ref="$repository:dev-$key"
  archive="$images/${repository//\//_}-dev-$key.oci.tar"
  if [[ -f "$archive" ]]; then
    touch "$archive"
  else
    "$node_bin/oci-image" -o "$archive" -name "$ref" "$@" >/dev/null
  fi
  echo "$name $ref $archive"
}

# Archives unused for two days go (each build of the binary makes a new one).
find "$images" -name '*.oci.tar' -mtime +2 -delete 2>/dev/null || true
certs=/etc/ssl/certs/ca-certificates.crt
mapfile -t curl_libs < <(libs "$(command -v curl)")
if [[ -n "$binary" ]]; then
  mapfile -t modelgate_libs < <(libs "$binary")
  # The Dockerfile's ENTRYPOINT, CMD, USER and EXPOSE; the binary where it COPYs it.
  assemble modelgate localhost/modelgate/modelgate \
    -entrypoint '["/usr/local/bin/modelgate"]' -cmd '["--help"]' -user 65532:65532 \
    -expose 12000 -expose 12001 -expose 12002 \
    -label org.opencontainers.image.title=modelgate \
    "$binary:/usr/local/bin/modelgate:0755" "${modelgate_libs[@]}" \
    "$certs:$certs:0644" "$etc/passwd:/etc/passwd" "$etc/group:/etc/group" \
    "$etc/nsswitch.conf:/etc/nsswitch.conf"
fi
# The node's own images (tests/kind/run.sh passes `build.sh --tools`, which has no pause).
if [[ -x "$node_bin/pause" ]]; then
  assemble pause localhost/modelgate-test/pause \
    -entrypoint '["/pause"]' -user 65535:65535 "$node_bin/pause:/pause:0755"
  assemble coredns localhost/modelgate-test/coredns \
    -entrypoint '["/coredns"]' -user 65532:65532 -expose 53 \
    "$node_bin/coredns:/coredns:0755" "$etc/passwd:/etc/passwd" "$etc/group:/etc/group"
fi
assemble curl localhost/modelgate-test/curl \
  -entrypoint '["/usr/bin/curl"]' -user 65532:65532 \
  "$(command -v curl):/usr/bin/curl:0755" "${curl_libs[@]}" "$certs:$certs:0644" \
  "$etc/passwd:/etc/passwd" "$etc/group:/etc/group" "$etc/nsswitch.conf:/etc/nsswitch.conf"
# Redis for the chart's tenancy.redis.deploy: Debian's redis-server (tests/all.sh installs it
# for the usage store tests) and the shell the chart's command line runs it with, as the
# chart's uid 999.
if command -v redis-server >/dev/null; then
  redis="$(command -v redis-server)" sh="$(readlink -f /bin/sh)"
  mapfile -t redis_libs < <(libs "$redis"; libs "$sh")
  mapfile -t redis_libs < <(printf '%s\n' "${redis_libs[@]}" | sort -u)
  printf 'root:x:0:0:root:/root:/sbin/nologin\nredis:x:999:999:redis:/data:/sbin/nologin\n' >"$etc/passwd-redis"
  chmod 644 "$etc/passwd-redis"
  assemble redis localhost/modelgate-test/redis \
    -entrypoint '["/usr/bin/redis-server"]' -user 999:999 -expose 6379 \
    -env PATH=/usr/local/bin:/usr/bin:/bin \
    "$redis:/usr/bin/redis-server:0755" "$sh:/bin/sh:0755" "${redis_libs[@]}" \
    "$etc/passwd-redis:/etc/passwd"
fi
assemble upstream localhost/modelgate-test/upstream \
  -entrypoint '["/upstream"]' -user 65532:65532 -expose 8080 \
  "$node_bin/upstream:/upstream:0755" "$etc/passwd:/etc/passwd" "$etc/group:/etc/group"
