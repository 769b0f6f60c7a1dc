#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions run from traps look unreachable to shellcheck
# Runs COMMAND against a throwaway single-node Kubernetes cluster that runs real pods.
#
#   tests/node/run.sh COMMAND [ARG...]
#   tests/node/run.sh cargo test --test node -- --include-ignored
#   tests/node/run.sh bash                       # a shell with KUBECONFIG set
#
# It is tests/controlplane/run.sh (etcd + kube-apiserver) plus a node, the pieces of a
# kind node without Docker:
#   - kube-controller-manager and kube-scheduler, from the same pinned k8s.io/kubernetes;
#   - kubelet with containerd and runc (Debian's), the reference CNI plugins (bridge,
#     host-local, portmap, loopback: Debian's containernetworking-plugins), kube-proxy
#     (nftables mode) for ClusterIP Services, and CoreDNS for Service names in pods;
#   - images without a registry: pause, CoreDNS, curl, a test upstream, Redis and modelgate are assembled as
#     OCI archives from binaries on this machine (tests/node/cmd/oci-image) and imported with
#     `ctr images import`.
# COMMAND sees KUBECONFIG (the admin), MODELGATE_IMAGE (the modelgate image, from the
# release binary), MODELGATE_IMAGE_ARCHIVE (its OCI archive), MODELGATE_CURL_IMAGE,
# MODELGATE_UPSTREAM_IMAGE (cmd/upstream: a paced OpenAI-compatible server),
# MODELGATE_REDIS_IMAGE (for the chart's tenancy.redis.image),
# MODELGATE_TEST_CLUSTER=node, and kubectl/helm on PATH.
#
# Isolation (see README.md): the node - containerd, kubelet, kube-proxy, the controllers,
# every pod - lives in a PID, mount, network and UTS namespace of its own, joined to this
# machine by one veth pair with addresses from 10.N.0.0/16 (N picked so that no route here
# overlaps it). The pod bridge, the pods' network namespaces, kube-proxy's nftables rules
# and every mount kubelet and containerd make exist only inside; when the namespace's first
# process (a pause binary) dies, the kernel ends every process in it and drops every mount.
# On the host this script adds only: the veth (and the routes through it to the pod and
# Service ranges), cgroups named modelgate-node-<id>, and a temporary directory - all
# removed on exit, Ctrl-C, SIGTERM, or (by a watchdog) if this script is SIGKILLed.
#
# Needs root, cgroups (v1 or v2), and Debian packages it installs when missing:
# containerd runc containernetworking-plugins nftables iptables redis-server (for the
# Redis image).
#
# Environment:
#   MODELGATE_USE_EXISTING_CLUSTER=1  with KUBECONFIG and MODELGATE_IMAGE set: start
#                                     nothing, run COMMAND there (tests/kind/run.sh)
#   MODELGATE_NODE_TIMEOUT            seconds to wait for each component (default 180)
#   MODELGATE_KEEP_NODE_DIR=1         keep the directory (logs, configs) on exit
#   MODELGATE_BINARY                  the modelgate binary for the image (default: the
#                                     release build, built here with cargo)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
say() { printf 'node: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[[ $# -gt 0 ]] || die "usage: $0 COMMAND [ARG...]"

if [[ "${MODELGATE_USE_EXISTING_CLUSTER:-}" == 1 ]]; then
  [[ -n "${MODELGATE_IMAGE:-}" ]] || die "MODELGATE_USE_EXISTING_CLUSTER=1 needs MODELGATE_IMAGE: an image the cluster's nodes already have"
  exec "$here/../controlplane/run.sh" "$@"
fi

[[ $(id -u) -eq 0 ]] || die "the test node needs root (namespaces, mounts, cgroups, containerd); run this as root"
export MODELGATE_CACHE="${MODELGATE_CACHE:-$HOME/.cache/modelgate}"
started=$SECONDS

# --- packages -----------------------------------------------------------------------------

# command -> the Debian package that has it
declare -A packages=(
  [containerd]=containerd [ctr]=containerd [runc]=runc [nft]=nftables [iptables]=iptables
  [nsenter]=util-linux [unshare]=util-linux [ip]=iproute2 [openssl]=openssl [curl]=curl
  [cc]=gcc [ldd]=libc-bin [flock]=util-linux [redis-server]=redis-server
)
missing=()
for tool in "${!packages[@]}"; do
  command -v "$tool" >/dev/null || missing+=("${packages[$tool]}")
done
for plugin in bridge host-local portmap loopback; do
  [[ -x "/usr/lib/cni/$plugin" ]] || missing+=(containernetworking-plugins)
done
[[ -e /usr/lib/x86_64-linux-gnu/libc.a ]] || missing+=(libc6-dev)
[[ -r /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
if [[ ${#missing[@]} -gt 0 ]]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  command -v apt-get >/dev/null || die "missing: ${missing[*]} (Debian package names); install them and run this again"
  say "installing ${missing[*]} with apt-get (first run on this machine)"
  # Nothing starts: without systemd the containerd package only installs files.
  apt-get update -qq -o DPkg::Lock::Timeout=600 >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
    --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- binaries and images ------------------------------------------------------------------

node_bin="$("$here/build.sh")"
cp_bin="$("$here/../controlplane/build.sh")"
helm="$("$repo/tests/tools/helm.sh")"

if [[ -z "${MODELGATE_BINARY:-}" ]]; then
  say "building the release binary for the image (cargo build --release)"
  (cd "$repo" && cargo build --release --locked --bin modelgate)
  MODELGATE_BINARY="${CARGO_TARGET_DIR:-$repo/target}/release/modelgate"
fi
[[ -x "$MODELGATE_BINARY" ]] || die "MODELGATE_BINARY=$MODELGATE_BINARY is not an executable"

step=$SECONDS
declare -A image archive
while read -r name reference path; do
  image[$name]="$reference"
  archive[$name]="$path"
done < <("$here/images.sh" "$node_bin" "$MODELGATE_BINARY")
for name in pause coredns curl upstream redis modelgate; do
  [[ -n "${image[$name]:-}" ]] || die "images.sh made no $name image"
done
say "images ready in $((SECONDS - step))s (cached in $MODELGATE_CACHE/node/images)"

# --- the node's namespaces ----------------------------------------------------------------

timeout="${MODELGATE_NODE_TIMEOUT:-180}"
work="$(mktemp -d "${TMPDIR:-/tmp}/modelgate-node.XXXXXX")"
id="$(tr 'A-Z' 'a-z' <<<"${work##*.}" | tr -dc 'a-z0-9')"
id="${id:0:6}$(printf '%04x' $((RANDOM % 65536)))"
cgroup_name="modelgate-node-$id"
host_if="mgh$id"
unshare_pid=""
holder=""
command_pid=""
watchdog_pid=""
net_prefix=""

# shellcheck source=../controlplane/process.sh
source "$here/../controlplane/process.sh"

# The cgroups of the node (one per v1 hierarchy, or one in the v2 tree): the node's
# processes in <name>/node, kubelet's pods below <name> too (its --cgroup-root).
cgroup_dirs() {
  local d
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    echo "/sys/fs/cgroup/$cgroup_name"
  else
    for d in /sys/fs/cgroup/*/; do
      [[ -f "$d/cgroup.procs" ]] && echo "${d%/}/$cgroup_name"
    done
  fi
  return 0
}

remove_cgroups() {
  local dir i
  for dir in $(cgroup_dirs); do
    [[ -d "$dir" ]] || continue
    # Deepest first; a cgroup whose last process is still exiting refuses rmdir for a moment.
    for ((i = 0; i < 50; i++)); do
      find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
      [[ -d "$dir" ]] || break
      sleep 0.1
    done
    [[ -d "$dir" ]] && say "could not remove the cgroup $dir (processes left in it?)"
  done
  return 0
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # The control plane (and, inside it, COMMAND) first: COMMAND may still use the node.
  stop_pid "$command_pid" "the control plane" 60
  if [[ -n "$holder" ]]; then
    # The namespace's init: when it dies the kernel kills every process in the namespace.
    kill -KILL "$holder" 2>/dev/null || true
  fi
  if [[ -n "$unshare_pid" ]]; then
    wait "$unshare_pid" 2>/dev/null || true
  fi
  ip link del "$host_if" 2>/dev/null || true
  remove_cgroups
  stop_watchdog "$watchdog_pid"
  if [[ "${MODELGATE_KEEP_NODE_DIR:-}" == 1 ]]; then
    say "kept $work (logs, configs)"
  else
    rm -rf "$work"
  fi
  say "stopped the node"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# If this script is SIGKILLed no trap runs: the watchdog then stops the control plane (whose
# own watchdog stops its servers), kills the node's init and removes what was added here.
mkfifo "$work/.tick"
(
  # Deaf to INT and TERM: a signal to the whole process group (Ctrl-C, `timeout`) must not
  # take the watchdog down with the processes it is there to clean up after.
  trap - EXIT
  trap '' INT TERM
  set +e
  while kill -0 "$$" 2>/dev/null; do
    read -r -t 1 _ <>"$work/.tick" || true
  done
  for name in controlplane holder; do
    [[ -f "$work/$name.pid" ]] && kill -KILL "$(<"$work/$name.pid")" 2>/dev/null
  done
  sleep 1
  ip link del "$host_if" 2>/dev/null
  remove_cgroups
  rm -rf "$work"
) >/dev/null 2>&1 </dev/null &
watchdog_pid=$!

# The network: 10.N.0.0/30 for the veth (host .1, node .2), 10.N.1.0/24 for pods,
# 10.N.2.0/24 for Services. N is drawn until no route or address here falls in 10.N.0.0/16;
# the lock keeps two runs from drawing the same N.
mkdir -p "$MODELGATE_CACHE/node"
exec 8>"$MODELGATE_CACHE/node/.network.lock"
flock 8
for ((i = 0; i < 200; i++)); do
  n=$((100 + RANDOM % 100))
  if ! ip -4 route show table all | grep -qE "(^|[[:space:]])10\.$n\." &&
    ! ip -4 addr show | grep -qE "inet 10\.$n\."; then
    net_prefix="10.$n"
    break
  fi
done
[[ -n "$net_prefix" ]] || die "found no free 10.N.0.0/16 for the node's network"
host_ip="$net_prefix.0.1"
node_ip="$net_prefix.0.2"
pod_cidr="$net_prefix.1.0/24"
service_cidr="$net_prefix.2.0/24"

# The namespaces. The pause binary is their init: it reaps orphans, and its death ends
# everything in them. --kill-child: if unshare dies, so does it.
for dir in $(cgroup_dirs); do
  mkdir -p "$dir/node"
  if [[ -f "$dir/cgroup.subtree_control" && "$dir" == /sys/fs/cgroup/"$cgroup_name" ]]; then
    # cgroup v2: hand every controller the root has down to the node's tree.
    controllers="$(sed 's/[^ ]*/+&/g' /sys/fs/cgroup/cgroup.subtree_control)"
    [[ -z "$controllers" ]] || echo "$controllers" >"$dir/cgroup.subtree_control"
  fi
  if [[ -f "$dir/cpuset.cpus" && ! -f "$dir/cgroup.controllers" ]]; then
    # cgroup v1 cpuset: a new cgroup starts with no CPUs and no memory nodes.
    cat "$dir/../cpuset.cpus" >"$dir/cpuset.cpus"
    cat "$dir/../cpuset.mems" >"$dir/cpuset.mems"
    cat "$dir/cpuset.cpus" >"$dir/node/cpuset.cpus"
    cat "$dir/cpuset.mems" >"$dir/node/cpuset.mems"
  fi
done
for dir in $(cgroup_dirs); do echo "$dir/node/cgroup.procs"; done >"$work/cgroup.procs.list"
(
  for f in $(<"$work/cgroup.procs.list"); do echo "$BASHPID" >"$f"; done
  exec unshare --pid --fork --kill-child --mount --propagation private --mount-proc --net --uts \
    "$node_bin/pause"
) >"$work/holder.log" 2>&1 </dev/null &
unshare_pid=$!
for ((i = 0; i < 100; i++)); do
  holder="$(cat "/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null || true)"
  holder="${holder%% *}"
  [[ -n "$holder" ]] && break
  exited "$unshare_pid" && break
  sleep 0.05
done
[[ -n "$holder" ]] || die "could not start the node's namespaces: $(cat "$work/holder.log")"
echo "$holder" >"$work/holder.pid"

# in_node COMMAND...: runs COMMAND inside the node's namespaces.
in_node() { nsenter --target "$holder" --mount --net --pid --uts -- "$@"; }

# Inside: a sysfs of the node's own network namespace (with the cgroup hierarchies put back
# under it), and private /run, /var/lib and /var/log, where kubelet, containerd and the CNI
# plugins keep their fixed paths.
in_node /bin/sh -euc '
  hostname modelgate-node
  mkdir -p "$1/.cgroup"
  mount --rbind /sys/fs/cgroup "$1/.cgroup"
  umount -l /sys
  mount -t sysfs sysfs /sys
  mount --rbind "$1/.cgroup" /sys/fs/cgroup
  umount -l "$1/.cgroup"
  for d in /run /var/lib /var/log; do mount -t tmpfs -o mode=0755 tmpfs "$d"; done
  mkdir -p /run/netns /var/lib/kubelet /var/lib/cni /var/log/pods /var/log/containers
' sh "$work" || die "could not set up the node's mounts"

ip link add "$host_if" type veth peer name eth0 netns "$holder" ||
  die "could not create the veth pair $host_if"
ip addr add "$host_ip/30" dev "$host_if"
ip link set "$host_if" up
ip route add "$pod_cidr" via "$node_ip" dev "$host_if"
ip route add "$service_cidr" via "$node_ip" dev "$host_if"
flock -u 8
[[ -e /proc/sys/net/bridge ]] || modprobe br_netfilter 2>/dev/null || true
in_node /bin/sh -euc '
  ip link set lo up
  ip addr add "$1/30" dev eth0
  ip link set eth0 up
  ip route add default via "$2"
  sysctl -qw net.ipv4.ip_forward=1
' sh "$node_ip" "$host_ip" || die "could not configure the node's network"
# Pod-to-Service traffic between pods on the bridge must pass the node's netfilter hooks for
# kube-proxy's NAT; without br_netfilter, kube-proxy masquerades all Service traffic instead.
if in_node sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null; then
  masquerade_all=false
else
  say "no br_netfilter here: kube-proxy will masquerade all Service traffic"
  masquerade_all=true
fi
say "node namespaces ready (init pid $holder, $node_ip via $host_if; pods $pod_cidr, Services $service_cidr)"

# --- the control plane, and the node inside it -------------------------------------------

export MODELGATE_CONTROLPLANE_ADDRESS="$host_ip"
export MODELGATE_CONTROLPLANE_SERVICE_CIDR="$service_cidr"
export MODELGATE_CONTROLPLANE_SANS="IP:$net_prefix.2.1, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local"
export MODELGATE_CONTROLPLANE_AUTHORIZATION_MODE="Node,RBAC"
export MODELGATE_CONTROLPLANE_APISERVER_ARGS="--enable-admission-plugins=NodeRestriction --kubelet-preferred-address-types=InternalIP"
export MODELGATE_NODE_DIR="$work" MODELGATE_NODE_HOLDER="$holder" MODELGATE_NODE_BIN="$node_bin"
export MODELGATE_NODE_IP="$node_ip" MODELGATE_NODE_POD_CIDR="$pod_cidr" MODELGATE_NODE_CGROUP="$cgroup_name"
export MODELGATE_NODE_DNS_IP="$net_prefix.2.10" MODELGATE_NODE_TIMEOUT="$timeout"
export MODELGATE_NODE_MASQUERADE_ALL="$masquerade_all"
export MODELGATE_NODE_IMAGES="${archive[pause]} ${archive[coredns]} ${archive[curl]} ${archive[upstream]} ${archive[redis]} ${archive[modelgate]}"
export MODELGATE_NODE_PAUSE_IMAGE="${image[pause]}" MODELGATE_NODE_COREDNS_IMAGE="${image[coredns]}"
export MODELGATE_IMAGE="${image[modelgate]}" MODELGATE_IMAGE_ARCHIVE="${archive[modelgate]}"
export MODELGATE_CURL_IMAGE="${image[curl]}" MODELGATE_UPSTREAM_IMAGE="${image[upstream]}"
export MODELGATE_REDIS_IMAGE="${image[redis]}"
export MODELGATE_HELM="$helm"
PATH="$(dirname "$helm"):$cp_bin:$PATH"
export PATH
say "binaries and images ready in $((SECONDS - started))s"

run_command "$work/controlplane.pid" "$here/../controlplane/run.sh" "$here/node.sh" "$@"
