# shellcheck shell=bash
# Shared by cluster/slurm/* and cluster/hosts/*: the private state directory,
# one-line failures, and daemons tracked by pid file (never by process name).
# Sourced; defines functions only, plus RT_STATE.

# Everything these scripts create lives under RT_STATE: configs, keys, sockets,
# pid files, logs, spool. Override with RT_CLUSTER_STATE (tests use their build dir).
RT_STATE=${RT_CLUSTER_STATE:-/tmp/ringtrain-cluster-$(id -u)}

rt_die() {
  echo "$RT_TOOL: $*" >&2
  exit 1
}

rt_need_root() {
  [ "$(id -u)" -eq 0 ] || rt_die "needs root (daemons as root / network namespaces); run with sudo"
}

# rt_pid_alive PIDFILE EXE: true when PIDFILE names a live process whose
# executable is EXE (guards against a recycled pid). Prints the pid.
rt_pid_alive() {
  local pidfile=$1 exe=$2 pid
  [ -s "$pidfile" ] || return 1
  pid=$(tr -dc '0-9' <"$pidfile")
  [ -n "$pid" ] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$exe")" ] || return 1
  echo "$pid"
}

# rt_stop "PIDFILE EXE NAME"...: SIGTERM every listed process that is alive (by
# pid file, checked against EXE), all at once; wait up to 10 s for all of them,
# then SIGKILL what is left. Removes the pid files. Prints how many it stopped.
rt_stop() {
  local spec f pids=() names=() pid i n=0
  for spec in "$@"; do
    read -r -a f <<<"$spec"
    if pid=$(rt_pid_alive "${f[0]}" "${f[1]}"); then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
      names+=("${f[2]}")
    fi
  done
  for ((i = 0; i < 200; i++)); do
    n=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && n=$((n + 1)); done
    [ "$n" -gt 0 ] || break
    sleep 0.05
  done
  for i in "${!pids[@]}"; do
    if kill -0 "${pids[i]}" 2>/dev/null; then
      echo "$RT_TOOL: ${names[i]} (pid ${pids[i]}) ignored SIGTERM for 10 s; sending SIGKILL" >&2
      kill -KILL "${pids[i]}" 2>/dev/null || true
    fi
  done
  for spec in "$@"; do
    read -r -a f <<<"$spec"
    case ${f[0]} in "$RT_STATE"/*) rm -f "${f[0]}" ;; esac # only our own pid files
  done
  echo "${#pids[@]}"
}

# rt_wait_for SECONDS CMD...: poll CMD every 50 ms until it succeeds.
rt_wait_for() {
  local limit=$1 deadline
  shift
  deadline=$(($(date +%s%N) + limit * 1000000000))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s%N)" -lt "$deadline" ] || return 1
    sleep 0.05
  done
}

# rt_port_free PORT: nothing listens on TCP PORT (any address).
rt_port_free() {
  ! ss -Htln "sport = :$1" 2>/dev/null | grep -q .
}
