# Process handling shared by tests/controlplane/run.sh and tests/node/{run,node}.sh, which
# source it (they define `say`). Every process is stopped by the pid its starter recorded.
# shellcheck shell=bash

# exited PID: true once PID is gone or has exited but is not yet reaped (Z).
exited() {
  [[ ! -e "/proc/$1" ]] || [[ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" == Z ]]
}

# stop_pid PID NAME [SECONDS]: stops a process this script started: SIGTERM, up to SECONDS
# (default 15) to exit, then SIGKILL. An empty PID is a no-op.
stop_pid() {
  local pid="$1" name="$2" patience="${3:-15}" i
  [[ -n "$pid" ]] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < patience * 10; i++)); do
    if exited "$pid"; then
      wait "$pid" 2>/dev/null || true
      return 0
    fi
    sleep 0.1
  done
  say "$name (pid $pid) ignored SIGTERM for ${patience}s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# stop_watchdog PID: a watchdog ignores SIGTERM (see the scripts); its parent, done cleaning
# up itself, ends it with SIGKILL.
stop_watchdog() {
  [[ -n "$1" ]] || return 0
  kill -KILL "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# run_command PIDFILE COMMAND...: runs COMMAND, records its pid in $command_pid (for the
# caller's traps) and in PIDFILE (for its watchdog), and exits with COMMAND's status.
# COMMAND runs in the background so that a SIGTERM to the script is handled at once rather
# than after COMMAND ends; `env --default-signal` undoes the SIGINT/SIGQUIT immunity bash
# gives background jobs, so Ctrl-C reaches it.
run_command() {
  local pidfile="$1" status
  shift
  env --default-signal=INT,QUIT -- "$@" <&0 &
  command_pid=$!
  [[ -z "$pidfile" ]] || echo "$command_pid" >"$pidfile"
  set +e
  wait "$command_pid"
  status=$?
  set -e
  command_pid=""
  exit "$status"
}
