#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions run from traps look unreachable to shellcheck
# The node half of tests/node/run.sh, which runs this as the COMMAND of
# tests/controlplane/run.sh (so KUBECONFIG, MODELGATE_CONTROLPLANE_DIR and kubectl are set)
# with the node's namespaces already made. It starts, inside them:
#   containerd (and imports the images), kube-controller-manager, kube-scheduler, kubelet,
#   kube-proxy, then CoreDNS as a Deployment in kube-system,
# waits until the node is Ready and cluster DNS answers, and runs COMMAND.
#
# Every process it starts is in the node's PID namespace: run.sh ends them all at once by
# killing that namespace's init, so this script only has to stop COMMAND.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
say() { printf 'node: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

work="$MODELGATE_NODE_DIR"
holder="$MODELGATE_NODE_HOLDER"
bin="$MODELGATE_NODE_BIN"
node_ip="$MODELGATE_NODE_IP"
pod_cidr="$MODELGATE_NODE_POD_CIDR"
dns_ip="$MODELGATE_NODE_DNS_IP"
timeout="$MODELGATE_NODE_TIMEOUT"
pki="$MODELGATE_CONTROLPLANE_DIR/pki"
node_name=modelgate-node
server="$(kubectl config view --minify -o 'jsonpath={.clusters[0].cluster.server}')"
sock="$work/containerd.sock"
started=$SECONDS

# in_node COMMAND...: runs COMMAND in the node's namespaces and cgroup.
in_node() {
  nsenter --target "$holder" --mount --net --pid --uts -- /bin/sh -c '
    for f in $(cat "$0"); do echo $$ >"$f"; done
    exec "$@"' "$work/cgroup.procs.list" "$@"
}

declare -A pids=()
# start NAME COMMAND...: a component, in the background, logging to $work/NAME.log.
start() {
  local name="$1"
  shift
  in_node "$@" >"$work/$name.log" 2>&1 </dev/null &
  pids[$name]=$!
}

show_log() {
  say "last lines of $1:"
  tail -n 30 "$1" | sed 's/^/    /' >&2
}

# await WHAT COMMAND...: polls COMMAND until it succeeds, failing early if a component died.
await() {
  local what="$1" deadline=$((SECONDS + timeout)) name
  shift
  while ((SECONDS < deadline)); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    for name in "${!pids[@]}"; do
      if ! kill -0 "${pids[$name]}" 2>/dev/null; then
        show_log "$work/$name.log"
        die "$name exited while waiting for $what"
      fi
    done
    sleep 0.25
  done
  for name in "${!pids[@]}"; do show_log "$work/$name.log"; done
  die "timed out after ${timeout}s waiting for $what"
}

# --- identities ---------------------------------------------------------------------------

# sign NAME SUBJECT [SUBJECT-ALT-NAMES]: a client (or, with SANs, a serving) certificate
# from the control plane's CA.
sign() {
  local ext="$work/pki/$1.ext"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/pki/$1.key" 2>/dev/null
  openssl req -new -key "$work/pki/$1.key" -subj "$2" -out "$work/pki/$1.csr" 2>/dev/null
  {
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature, keyEncipherment"
    if [[ -n "${3:-}" ]]; then
      echo "extendedKeyUsage = serverAuth"
      echo "subjectAltName = $3"
    else
      echo "extendedKeyUsage = clientAuth"
    fi
  } >"$ext"
  openssl x509 -req -in "$work/pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 2 -extfile "$ext" -out "$work/pki/$1.crt" 2>/dev/null
}

# kubeconfig NAME: a kubeconfig for the client certificate NAME.
kubeconfig() {
  cat >"$work/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: modelgate-test
  cluster:
    server: $server
    certificate-authority: $pki/ca.crt
users:
- name: $1
  user:
    client-certificate: $work/pki/$1.crt
    client-key: $work/pki/$1.key
contexts:
- name: modelgate-test
  context: {cluster: modelgate-test, user: $1}
current-context: modelgate-test
EOF
}

mkdir -p "$work/pki" "$work/cni" "$work/containerd"
# The identities kubeadm gives these components, so the apiserver's Node authorizer and
# the default RBAC bindings apply to them as in any cluster.
sign kubelet "/O=system:nodes/CN=system:node:$node_name"
sign kubelet-serving "/CN=$node_name" "IP:$node_ip, DNS:$node_name"
sign kube-proxy "/CN=system:kube-proxy"
sign kube-controller-manager "/CN=system:kube-controller-manager"
sign kube-scheduler "/CN=system:kube-scheduler"
for name in kubelet kube-proxy kube-controller-manager kube-scheduler; do kubeconfig "$name"; done

# --- containerd -----------------------------------------------------------------------------

pause_image="$MODELGATE_NODE_PAUSE_IMAGE"
cat >"$work/cni/10-modelgate.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "modelgate",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "mg0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$pod_cidr"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
cat >"$work/containerd.toml" <<EOF
version = 2
root = "$work/containerd/root"
# /run is private to the node (run.sh), as are the shims' sockets under /run/containerd/s.
state = "/run/containerd"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]
[grpc]
  address = "$sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$work/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$pause_image"
  # This machine withholds CAP_SYS_RESOURCE (README.md: quirks), so no process may lower its
  # oom_score_adj; runc would fail to start every pod trying. Clamp it as for rootless.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$work/cni"
    max_conf_num = 1
EOF
step=$SECONDS
start containerd containerd --config "$work/containerd.toml"
await "containerd" ctr --address "$sock" version
read -r -a archives <<<"$MODELGATE_NODE_IMAGES"
for archive in "${archives[@]}"; do
  ctr --address "$sock" --namespace k8s.io images import --all-platforms "$archive" >/dev/null ||
    die "ctr could not import $archive"
done
say "containerd up, ${#archives[@]} images imported in $((SECONDS - step))s"

# --- controllers ------------------------------------------------------------------------------

# Their secure ports are on the node's own loopback: no port here can clash with them.
start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig="$work/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig="$work/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig="$work/kube-controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=10257 \
  --root-ca-file="$pki/ca.crt" \
  --service-account-private-key-file="$pki/service-account.key" \
  --use-service-account-credentials=true \
  --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
  --leader-elect=false \
  --profiling=false
start kube-scheduler "$bin/kube-scheduler" \
  --kubeconfig="$work/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig="$work/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig="$work/kube-scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=10259 \
  --leader-elect=false \
  --profiling=false

# --- kubelet and kube-proxy -----------------------------------------------------------------

cgroup_root="/$MODELGATE_NODE_CGROUP"
cat >"$work/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $work/pki/kubelet-serving.crt
tlsPrivateKeyFile: $work/pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$sock
cgroupDriver: cgroupfs
# Pods go below the node's own cgroup (run.sh removes it on exit).
cgroupRoot: $cgroup_root
# This machine has cgroup v1 (README.md: quirks); kubelet refuses it unless told otherwise.
failCgroupV1: false
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [$dns_ip]
# Pods whose DNS policy is Default get no nameserver: nothing outside the node is reachable.
resolvConf: ""
# The disk may be fuller than the default thresholds allow (15 % free for images), and
# imported images can never be pulled again: no eviction for disk, no image garbage collection.
evictionHard: {memory.available: 100Mi, nodefs.available: 0%, nodefs.inodesFree: 0%, imagefs.available: 0%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Status and pod changes show up quickly in tests.
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
serializeImagePulls: false
EOF
start kubelet "$bin/kubelet" \
  --config="$work/kubelet.yaml" \
  --kubeconfig="$work/kubelet.kubeconfig" \
  --hostname-override="$node_name" \
  --node-ip="$node_ip"

cat >"$work/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
clientConnection:
  kubeconfig: $work/kube-proxy.kubeconfig
hostnameOverride: $node_name
clusterCIDR: $pod_cidr
masqueradeAll: $MODELGATE_NODE_MASQUERADE_ALL
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Lowering its own oom_score_adj needs CAP_SYS_RESOURCE (README.md: quirks).
oomScoreAdj: 0
# conntrack limits are machine-wide: leave them alone (as kind does).
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
start kube-proxy "$bin/kube-proxy" --config="$work/kube-proxy.yaml"

node_ready() {
  [[ "$(kubectl get node "$node_name" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}
await "node $node_name to be Ready" node_ready
say "node $node_name Ready in $((SECONDS - started))s"

# --- cluster DNS ----------------------------------------------------------------------------

sed -e "s|@IMAGE@|$MODELGATE_NODE_COREDNS_IMAGE|g" -e "s|@DNS_IP@|$dns_ip|g" "$here/coredns.yaml" |
  kubectl apply --server-side --field-manager=modelgate-node -f - >/dev/null
coredns_ready() {
  [[ "$(kubectl -n kube-system get deployment coredns -o 'jsonpath={.status.readyReplicas}')" == 1 ]]
}
await "CoreDNS to be ready" coredns_ready
# The ServiceAccount admission needs each namespace's "default" ServiceAccount.
await "the default ServiceAccount" kubectl -n default get serviceaccount default
say "cluster ready in $((SECONDS - started))s: kubelet, kube-proxy (nftables), CoreDNS at $dns_ip"

# --- run ------------------------------------------------------------------------------------

export MODELGATE_TEST_CLUSTER=node
export MODELGATE_CONTAINERD_ADDRESS="$sock"
# shellcheck source=../controlplane/process.sh
source "$here/../controlplane/process.sh"
command_pid=""
stop_command() {
  local status=$?
  trap - EXIT INT TERM
  stop_pid "$command_pid" "the command"
  # The node goes first (its init's death ends every process in it), so that the apiserver
  # has no kubelet or controller left to drain when it stops next.
  kill -KILL "$holder" 2>/dev/null || true
  exit "$status"
}
trap stop_command EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
run_command "" "$@"
