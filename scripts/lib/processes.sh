# shellcheck shell=bash
# Shared by scripts/lib/service.sh (the service lifecycle of stack.sh, zabbix.sh and ceph.sh) and by
# scripts/test-deps.sh (sourced, not run): logging, time, process identity (a PID is ours only while its command
# line carries our marker), stopping by PID, and apt-get installs that never start packaged daemons. The
# sourcing script sets LOG_TAG, LOG_DIR, RUN_DIR and STOP_TIMEOUT first.

log() { printf '%s: %s\n' "$LOG_TAG" "$*" >&2; }
die() { log "$*"; exit 1; }

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
since() { # since START_MS -> "7.2s"
  local d=$(( $(now_ms) - $1 ))
  printf '%d.%ds' $(( d / 1000 )) $(( d % 1000 / 100 ))
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

is_running() { # PID: alive and not a zombie
  local pid=$1 stat
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

pid_matches() { # PID MARKER: running and its command line (or executable) contains MARKER
  is_running "$1" || return 1
  local cmdline exe
  cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$2"* ]] && return 0
  exe=$(readlink "/proc/$1/exe" 2>/dev/null) || return 1
  [[ $exe == *"$2"* ]]
}

show_log_tail() { # FILE [LINES]
  local file=$1 n=${2:-30}
  [[ -f $file ]] || return 0
  log "last $n lines of $file:"
  tail -n "$n" "$file" | sed 's/^/    /' >&2
}

terminate() { # PID...: SIGTERM, wait up to STOP_TIMEOUT, then SIGKILL
  local pid deadline
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  deadline=$(( $(now_ms) + STOP_TIMEOUT * 1000 ))
  for pid in "$@"; do
    while is_running "$pid" && (( $(now_ms) < deadline )); do sleep 0.2; done
    if is_running "$pid"; then
      log "pid $pid still running after ${STOP_TIMEOUT}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while is_running "$pid"; do sleep 0.1; done
    fi
  done
}

packages_missing() { # PACKAGE...: those dpkg does not have installed, one a line
  local p
  for p in "$@"; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || echo "$p"
  done
}

APT_UPDATED=0
apt_install() { # LOGNAME PACKAGE...: apt-get install --no-install-recommends, output in $LOG_DIR/LOGNAME
  local logname=$1; shift
  (( EUID == 0 )) || die "need root to apt-get install $* (or install it yourself)"
  # (-o DPkg::Lock::Timeout: wait for another installer's dpkg lock instead of failing at once)
  if (( APT_UPDATED == 0 )); then
    log "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null
    APT_UPDATED=1
  fi
  # Keep maintainer scripts from starting packaged daemons (a system alertmanager on :9093, zabbix-server,
  # ceph): policy-rc.d exit 101, only if none exists already (a container image often has one; leave it be).
  local policy=/usr/sbin/policy-rc.d made_policy=0 rc=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# temporary, from stackwatch scripts/%s.sh\nexit 101\n' "$LOG_TAG" >"$policy"
    chmod 755 "$policy"
    made_policy=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "$@" \
    >"$LOG_DIR/$logname" 2>&1 || rc=$?
  if (( made_policy )); then rm -f "$policy"; fi
  if (( rc != 0 )); then show_log_tail "$LOG_DIR/$logname"; die "apt-get install $* failed"; fi
}

take_lock() { # NAME: one run of the script at a time (lock file $RUN_DIR/NAME on fd 9, which launch keeps from
  # the daemons it starts); a second run waits for the first
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  exec 9>"$RUN_DIR/$1"
  if ! flock -n 9; then
    log "another $LOG_TAG.sh is running; waiting for it"
    flock -w 900 9 || die "timed out waiting for the lock $RUN_DIR/$1"
  fi
}

# read_pid FILE MARKER: print the PID if that process is still ours, else drop the stale file and fail.
read_pid() {
  local file=$1 marker=$2 pid
  [[ -f $file ]] || return 1
  pid=$(tr -dc '0-9' <"$file")
  if [[ -n $pid ]] && pid_matches "$pid" "$marker"; then
    echo "$pid"
    return 0
  fi
  rm -f "$file"
  log "removed stale pid file $(basename "$file") (pid ${pid:-?} is gone)"
  return 1
}

# launch LOGFILE CMD...: start CMD detached (own session, no stdin, output to LOGFILE), PID in LAUNCHED_PID.
# fd 9 (our lock) is not passed on.
launch() {
  local logfile=$1; shift
  if [[ -f $logfile ]]; then mv -f "$logfile" "$logfile.1"; fi
  printf '=== %s %s.sh: %s\n' "$(date -Is)" "$LOG_TAG" "$*" >"$logfile"
  setsid nohup "$@" >>"$logfile" 2>&1 </dev/null 9>&- &
  # shellcheck disable=SC2034 # (read by the sourcing script)
  LAUNCHED_PID=$!
}
