#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions run from traps look unreachable to shellcheck
# Runs COMMAND against a real, throwaway Kubernetes control plane.
#
#   tests/controlplane/run.sh COMMAND [ARG...]
#   tests/controlplane/run.sh cargo test --test crds -- --include-ignored
#
# What it does, the way controller-runtime's envtest does it:
#   1. builds (first run only) or reuses etcd, kube-apiserver and kubectl
#      (build.sh; cached under ${MODELGATE_CACHE:-$HOME/.cache/modelgate});
#   2. in a fresh temporary directory, makes a CA, a serving certificate, an
#      admin client certificate (group system:masters) and a service-account
#      signing key with openssl;
#   3. starts etcd and kube-apiserver on free ports, bound to 127.0.0.1 only,
#      with RBAC authorization, and writes a kubeconfig for the admin;
#   4. waits (with a deadline) until the apiserver's /readyz says ok;
#   5. runs COMMAND with KUBECONFIG set, the matching kubectl first on PATH and
#      MODELGATE_TEST_CLUSTER=local;
#   6. on exit - COMMAND's success or failure, an error here, Ctrl-C or
#      SIGTERM - stops the two servers it started (by pid), removes the
#      directory and exits with COMMAND's exit status.
#
# There is no kubelet or controller-manager: pods never run and a deleted
# namespace stays Terminating. That is fine for API-level tests.
#
# Environment:
#   MODELGATE_USE_EXISTING_CLUSTER=1  with KUBECONFIG set: start nothing, run
#                                     COMMAND against that cluster (e.g. kind)
#   MODELGATE_CONTROLPLANE_TIMEOUT    seconds to wait for readiness (default 120)
#   MODELGATE_KEEP_CONTROLPLANE_DIR=1 keep the directory (logs, certs) on exit
# For tests/node/run.sh, which starts a node beside this control plane:
#   MODELGATE_CONTROLPLANE_ADDRESS    the address kube-apiserver binds and advertises
#                                     (default 127.0.0.1; must be local)
#   MODELGATE_CONTROLPLANE_SANS       more subjectAltNames for its certificate,
#                                     e.g. "IP:10.96.0.1, DNS:kubernetes.default.svc"
#   MODELGATE_CONTROLPLANE_SERVICE_CIDR  --service-cluster-ip-range (default 10.0.0.0/24)
#   MODELGATE_CONTROLPLANE_AUTHORIZATION_MODE  --authorization-mode (default RBAC)
#   MODELGATE_CONTROLPLANE_APISERVER_ARGS more kube-apiserver flags (space-separated;
#                                     a flag given again overrides the one above)
# COMMAND sees MODELGATE_CONTROLPLANE_DIR: the directory with pki/ (the CA and its key)
# and the logs.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
say() { printf 'controlplane: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[[ $# -gt 0 ]] || die "usage: $0 COMMAND [ARG...]"

if [[ "${MODELGATE_USE_EXISTING_CLUSTER:-}" == 1 ]]; then
  [[ -n "${KUBECONFIG:-}" ]] || die "MODELGATE_USE_EXISTING_CLUSTER=1 needs KUBECONFIG to point at the cluster"
  if ! command -v kubectl >/dev/null; then
    PATH="$("$here/build.sh"):$PATH"
    export PATH
  fi
  export MODELGATE_TEST_CLUSTER="${MODELGATE_TEST_CLUSTER:-existing}"
  say "using the existing cluster from KUBECONFIG=$KUBECONFIG"
  exec "$@"
fi

for tool in openssl curl; do
  command -v "$tool" >/dev/null || die "'$tool' is needed to start the control plane (apt-get install $tool)"
done

bin="$("$here/build.sh")"
timeout="${MODELGATE_CONTROLPLANE_TIMEOUT:-120}"
address="${MODELGATE_CONTROLPLANE_ADDRESS:-127.0.0.1}"
service_cidr="${MODELGATE_CONTROLPLANE_SERVICE_CIDR:-10.0.0.0/24}"
authorization_mode="${MODELGATE_CONTROLPLANE_AUTHORIZATION_MODE:-RBAC}"
read -r -a extra_apiserver_args <<<"${MODELGATE_CONTROLPLANE_APISERVER_ARGS:-}"
work="$(mktemp -d "${TMPDIR:-/tmp}/modelgate-controlplane.XXXXXX")"
etcd_pid=""
apiserver_pid=""
etcd_port=""
api_port=""

# --- teardown ---------------------------------------------------------------

command_pid=""
watchdog_pid=""

# shellcheck source=process.sh
source "$here/process.sh"

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # COMMAND is still running only if we were interrupted or terminated.
  stop_pid "$command_pid" "the command"
  stop_pid "$apiserver_pid" kube-apiserver
  stop_pid "$etcd_pid" etcd
  stop_watchdog "$watchdog_pid"
  if [[ "${MODELGATE_KEEP_CONTROLPLANE_DIR:-}" == 1 ]]; then
    say "kept $work (logs, certificates, kubeconfig)"
  else
    rm -rf "$work"
  fi
  [[ -n "$apiserver_pid$etcd_pid" ]] && say "stopped"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# If this script is killed outright (SIGKILL), no trap runs. The watchdog, a
# subshell without child processes, notices that and stops COMMAND and the
# servers, whose pids are written to $work/*.pid as they start.
mkfifo "$work/.tick"
(
  # Deaf to INT and TERM: a signal to the whole process group (Ctrl-C, `timeout`) must not
  # take the watchdog down with the processes it is there to clean up after.
  trap - EXIT
  trap '' INT TERM
  while kill -0 "$$" 2>/dev/null; do
    read -r -t 1 _ <>"$work/.tick" || true
  done
  pids=()
  for name in command kube-apiserver etcd; do
    if [[ -f "$work/$name.pid" ]]; then pids+=("$(<"$work/$name.pid")"); fi
  done
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for ((i = 0; i < 15; i++)); do
    kill -0 "${pids[@]}" 2>/dev/null || break
    read -r -t 1 _ <>"$work/.tick" || true
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  rm -rf "$work"
) >/dev/null 2>&1 </dev/null &
watchdog_pid=$!

# --- helpers ----------------------------------------------------------------

# free_port VAR: sets VAR to a TCP port that nothing on this machine uses right
# now. It is drawn below the kernel's ephemeral range, so outgoing connections
# do not take it in the meantime; start_* retry with new ports if a bind still
# loses a race.
taken_ports=" "
free_port() {
  local low high used=" " addr port i _
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range
  high=32767
  if ((low > 20000)); then high=$((low - 1)); fi
  low=10000
  # Every local port in /proc/net/tcp{,6}, in any state, counts as used.
  for f in /proc/net/tcp /proc/net/tcp6; do
    [[ -r "$f" ]] || continue
    while read -r _ addr _; do
      [[ "$addr" == *:* ]] && used+="$((16#${addr##*:})) "
    done <"$f"
  done
  for ((i = 0; i < 1000; i++)); do
    port=$((low + (RANDOM * 32768 + RANDOM) % (high - low + 1)))
    if [[ "$used$taken_ports" != *" $port "* ]]; then
      taken_ports+="$port "
      printf -v "$1" '%s' "$port"
      return 0
    fi
  done
  die "found no free TCP port between $low and $high"
}

show_log() {
  say "last lines of $1:"
  tail -n 25 "$1" | sed 's/^/    /' >&2
}

# --- certificates and keys --------------------------------------------------

pki="$work/pki"
mkdir -p "$pki"
sans="IP:127.0.0.1, DNS:localhost"
[[ "$address" == 127.0.0.1 ]] || sans+=", IP:$address"
[[ -z "${MODELGATE_CONTROLPLANE_SANS:-}" ]] || sans+=", $MODELGATE_CONTROLPLANE_SANS"
cat >"$pki/openssl.cnf" <<EOF
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $sans
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
EOF

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
# sign NAME SUBJECT EXTENSIONS: a key and a certificate signed by our CA.
sign() {
  newkey "$pki/$1.key"
  openssl req -new -config "$pki/openssl.cnf" -key "$pki/$1.key" -subj "$2" -out "$pki/$1.csr"
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 2 -extfile "$pki/openssl.cnf" -extensions "$3" -out "$pki/$1.crt" 2>/dev/null
}
{
  newkey "$pki/ca.key"
  openssl req -x509 -new -config "$pki/openssl.cnf" -key "$pki/ca.key" -subj "/CN=modelgate-test-ca" \
    -days 2 -extensions ca -out "$pki/ca.crt"
  sign apiserver "/CN=kube-apiserver" server
  sign admin "/O=system:masters/CN=modelgate-test-admin" client
  newkey "$pki/service-account.key"
  openssl pkey -in "$pki/service-account.key" -pubout -out "$pki/service-account.pub"
} || die "openssl could not create the certificates in $pki"

# --- etcd -------------------------------------------------------------------

start_etcd() {
  local attempt deadline
  for attempt in 1 2 3; do
    local peer_port
    free_port etcd_port
    free_port peer_port
    "$bin/etcd" \
      --name=modelgate-test \
      --data-dir="$work/etcd" \
      --listen-client-urls="http://127.0.0.1:$etcd_port" \
      --advertise-client-urls="http://127.0.0.1:$etcd_port" \
      --listen-peer-urls="http://127.0.0.1:$peer_port" \
      --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
      --initial-cluster="modelgate-test=http://127.0.0.1:$peer_port" \
      --unsafe-no-fsync=true \
      --log-level=warn \
      >"$work/etcd.log" 2>&1 &
    etcd_pid=$!
    echo "$etcd_pid" >"$work/etcd.pid"
    deadline=$((SECONDS + timeout))
    while ((SECONDS < deadline)); do
      if exited "$etcd_pid"; then
        wait "$etcd_pid" 2>/dev/null || true
        etcd_pid=""
        break
      fi
      if curl -fsS --max-time 2 "http://127.0.0.1:$etcd_port/health" 2>/dev/null | grep -q '"health":"true"'; then
        return 0
      fi
      sleep 0.2
    done
    if [[ -n "$etcd_pid" ]]; then
      show_log "$work/etcd.log"
      die "etcd did not become healthy within ${timeout}s"
    fi
    grep -q 'address already in use' "$work/etcd.log" || { show_log "$work/etcd.log"; die "etcd exited during startup"; }
    say "etcd lost a race for its port (attempt $attempt); trying other ports"
    rm -rf "$work/etcd"
  done
  show_log "$work/etcd.log"
  die "etcd could not bind a free port"
}

# --- kube-apiserver ---------------------------------------------------------

start_apiserver() {
  local attempt
  for attempt in 1 2 3; do
    free_port api_port
    "$bin/kube-apiserver" \
      --etcd-servers="http://127.0.0.1:$etcd_port" \
      --bind-address="$address" \
      --advertise-address="$address" \
      --secure-port="$api_port" \
      --cert-dir="$pki" \
      --tls-cert-file="$pki/apiserver.crt" \
      --tls-private-key-file="$pki/apiserver.key" \
      --client-ca-file="$pki/ca.crt" \
      --kubelet-client-certificate="$pki/admin.crt" \
      --kubelet-client-key="$pki/admin.key" \
      --authorization-mode="$authorization_mode" \
      --service-account-issuer="https://$address:$api_port" \
      --service-account-key-file="$pki/service-account.pub" \
      --service-account-signing-key-file="$pki/service-account.key" \
      --service-cluster-ip-range="$service_cidr" \
      --allow-privileged=true \
      --profiling=false \
      "${extra_apiserver_args[@]}" \
      >"$work/kube-apiserver.log" 2>&1 &
    apiserver_pid=$!
    echo "$apiserver_pid" >"$work/kube-apiserver.pid"
    write_kubeconfig
    if wait_ready; then
      return 0
    fi
    if [[ -n "$apiserver_pid" ]]; then
      show_log "$work/kube-apiserver.log"
      die "kube-apiserver did not become ready within ${timeout}s"
    fi
    grep -q 'address already in use' "$work/kube-apiserver.log" || {
      show_log "$work/kube-apiserver.log"
      die "kube-apiserver exited during startup"
    }
    say "kube-apiserver lost a race for its port (attempt $attempt); trying another port"
  done
  show_log "$work/kube-apiserver.log"
  die "kube-apiserver could not bind a free port"
}

write_kubeconfig() {
  local b64=(base64 -w0)
  cat >"$work/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: modelgate-test
  cluster:
    server: https://$address:$api_port
    certificate-authority-data: $("${b64[@]}" "$pki/ca.crt")
users:
- name: modelgate-test-admin
  user:
    client-certificate-data: $("${b64[@]}" "$pki/admin.crt")
    client-key-data: $("${b64[@]}" "$pki/admin.key")
contexts:
- name: modelgate-test
  context:
    cluster: modelgate-test
    user: modelgate-test-admin
    namespace: default
current-context: modelgate-test
EOF
}

# Polls /readyz until it answers "ok"; false if the apiserver exited.
wait_ready() {
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    if exited "$apiserver_pid"; then
      wait "$apiserver_pid" 2>/dev/null || true
      apiserver_pid=""
      return 1
    fi
    if [[ "$("$bin/kubectl" --kubeconfig="$work/kubeconfig" --request-timeout=2s get --raw=/readyz 2>/dev/null)" == ok ]]; then
      return 0
    fi
    sleep 0.25
  done
  return 1
}

# --- run --------------------------------------------------------------------

started=$SECONDS
start_etcd
start_apiserver
say "etcd on 127.0.0.1:$etcd_port, kube-apiserver on https://$address:$api_port: ready in $((SECONDS - started))s ($work)"

export KUBECONFIG="$work/kubeconfig"
export MODELGATE_CONTROLPLANE_DIR="$work"
export PATH="$bin:$PATH"
export MODELGATE_TEST_CLUSTER=local

run_command "$work/command.pid" "$@"
