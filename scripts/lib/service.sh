# shellcheck shell=bash
# The one service lifecycle of scripts/stack.sh, scripts/zabbix.sh and scripts/ceph.sh (sourced, not run):
# install, start, stop, status and the command line `SCRIPT install|start|stop|status|env [SERVICE...]`.
# A service is a name plus hooks, shell functions the sourcing script defines:
#
#   svc_marker SVC        (required) a string in the command line of a process we started: a PID recorded in a
#                         pid file is ours only while it carries it (a recycled PID is never signalled)
#   svc_ready SVC         (required) succeeds once the service answers: what start waits for
#   launch_<id>           (required to start; <id> is SVC with '-' and '.' as '_') starts the process with
#                         `launch` (processes.sh), which sets LAUNCHED_PID; the library writes the pid file.
#                         Or svc_launch SVC, when the script starts all its services one way.
#   svc_alive SVC         what status calls up (default: svc_ready)
#   svc_ports SVC         the ports it binds, which must be free before a launch (default: none)
#   svc_url SVC           its address, shown in messages and status (default: none)
#   svc_timeout SVC       seconds start waits for svc_ready (default: $START_TIMEOUT)
#   svc_pidfiles SVC      its pid files, main first (default: $RUN_DIR/<SERVICE_FILE_PREFIX><svc>.pid)
#   svc_status_detail SVC PID  what status prints after the PID (default: svc_url)
#   install_<id>          installs what it needs (default: nothing to install)
#   before_start_<id>, after_start_<id>  steps around its start (also run when it was up already)
#
# and these settings: SERVICES (the services a bare command acts on, in start order; stop goes in reverse),
# SERVICES_OPTIONAL (started only when named; a bare stop stops those of ours that run), SERVICE_ALIASES
# (other names), SERVICE_LOCK (one run at a time), SERVICE_FOREIGN (what start does when the service answers but
# is not ours: "leave" it alone and call it up, or "refuse" to start over it), SERVICE_NAME_WIDTH (status column),
# SERVICE_FILE_PREFIX (before <svc> in the pid and log file names). The script may replace a whole command with
# install_all / start_all / stop_all / status_all SVC... (the defaults are service_<command>_all), adds commands
# of its own as cmd_<name> (dashes as '_'), and defines usage and print_env. Set LOG_TAG first; REPO_DIR,
# STACKWATCH_HOME, RUN_DIR, LOG_DIR, START_TIMEOUT and STOP_TIMEOUT are set here.

REPO_DIR=$(cd "${BASH_SOURCE[0]%/*}/../.." && pwd)
STACKWATCH_HOME=${STACKWATCH_HOME:-$REPO_DIR/.stack}
case $STACKWATCH_HOME in /*) ;; *) STACKWATCH_HOME=$PWD/$STACKWATCH_HOME ;; esac
RUN_DIR=$STACKWATCH_HOME/run
LOG_DIR=$STACKWATCH_HOME/log
START_TIMEOUT=${SW_START_TIMEOUT:-120}
STOP_TIMEOUT=${SW_STOP_TIMEOUT:-30}

# shellcheck source=processes.sh
source "${BASH_SOURCE[0]%/*}/processes.sh"

SERVICES=()
SERVICES_OPTIONAL=()
declare -A SERVICE_ALIASES=()
SERVICE_LOCK=.lock
SERVICE_FOREIGN=refuse
SERVICE_NAME_WIDTH=13
SERVICE_FILE_PREFIX=""
SERVICE_FRESH=0       # 1 after service_start launched the service (0: it was running already)
SERVICE_NAMED=0       # 1 when the command line named services (0: the defaults)
SERVICE_STATUS_RC=0   # 3 after service_status found a service down
SERVICE_T0=0          # when the current command began (ms)

has_fn() { declare -F "$1" >/dev/null; }
service_id() { local id=${1//-/_}; echo "${id//./_}"; }
service_log() { echo "$LOG_DIR/$SERVICE_FILE_PREFIX$1.log"; }

service_pidfiles() {
  if has_fn svc_pidfiles; then svc_pidfiles "$1"; else echo "$RUN_DIR/$SERVICE_FILE_PREFIX$1.pid"; fi
}
service_url() { if has_fn svc_url; then svc_url "$1"; fi; }
service_ports() { if has_fn svc_ports; then svc_ports "$1"; fi; }
service_alive() { if has_fn svc_alive; then svc_alive "$1"; else svc_ready "$1"; fi; }
service_timeout() { if has_fn svc_timeout; then svc_timeout "$1"; else echo "$START_TIMEOUT"; fi; }
service_hook() { # HOOK SVC [ARG...]: run HOOK_<id> if the script defines it
  local fn; fn=$1_$(service_id "$2")
  if has_fn "$fn"; then shift 2; "$fn" "$@"; fi
}
with_url() { # SVC PID -> "pid PID, URL" (or "pid PID" when the service has no address)
  local url; url=$(service_url "$1")
  echo "pid $2${url:+, $url}"
}

# service_pids SVC: our live PIDs for SVC (main first), from its pid files; stale files are dropped.
service_pids() {
  local svc=$1 marker file pid seen=" "
  marker=$(svc_marker "$svc")
  while IFS= read -r file; do
    if pid=$(read_pid "$file" "$marker") && [[ $seen != *" $pid "* ]]; then
      echo "$pid"
      seen+="$pid "
    fi
  done < <(service_pidfiles "$svc")
  return 0
}

service_forget() { # SVC: remove its pid files
  local file
  while IFS= read -r file; do rm -f "$file"; done < <(service_pidfiles "$1")
}

# service_group SVC PID...: the other live processes of the PIDs' process groups that carry the marker (launch
# uses setsid, so a launched PID leads its group): children that outlive their parent on SIGTERM (php -S's
# workers) are stopped too, and nothing outside our own process groups is.
service_group() {
  local svc=$1 marker pid; shift
  marker=$(svc_marker "$svc")
  for pid in $(ps -e -o pid=,pgid= | awk -v leaders=" $* " 'index(leaders, " " $2 " ") && $1 != $2 { print $1 }'); do
    if [[ " $* " != *" $pid "* ]] && pid_matches "$pid" "$marker"; then echo "$pid"; fi
  done
}

service_install() { # SVC
  mkdir -p "$LOG_DIR" "$RUN_DIR"
  service_hook install "$1"
}

# service_launch SVC: start it (its launch hook) without waiting, and record its PID.
service_launch() {
  local svc=$1 fn file files
  fn=launch_$(service_id "$svc")
  mkdir -p "$LOG_DIR" "$RUN_DIR"
  LAUNCHED_PID=""
  if has_fn "$fn"; then
    "$fn"
  elif has_fn svc_launch; then
    svc_launch "$svc"
  else
    die "$svc: no $fn in $LOG_TAG.sh"
  fi
  [[ -n $LAUNCHED_PID ]] || die "$svc: its launch hook started nothing"
  # The first pid file, without a pipe: `service_pidfiles | head -n1` let head exit before the second echo, whose
  # SIGPIPE, with pipefail and set -e, ended the script silently (it happened to an Elasticsearch start).
  mapfile -t files < <(service_pidfiles "$svc")
  file=${files[0]}
  echo "$LAUNCHED_PID" >"$file"
}

service_wait_ready() { # SVC PID T0: until svc_ready; the log tail and exit 1 if it exits or times out
  local svc=$1 pid=$2 t0=$3 timeout deadline logfile
  timeout=$(service_timeout "$svc")
  deadline=$(( t0 + timeout * 1000 ))
  logfile=$(service_log "$svc")
  while :; do
    if svc_ready "$svc"; then
      log "$svc ready in $(since "$t0") ($(with_url "$svc" "$pid"))"
      return 0
    fi
    if ! is_running "$pid"; then
      show_log_tail "$logfile"
      service_forget "$svc"
      die "$svc exited during startup (log: $logfile)"
    fi
    if (( $(now_ms) >= deadline )); then
      show_log_tail "$logfile"
      log "$svc not ready after ${timeout}s; stopping it (pid $pid)"
      service_stop "$svc" quiet
      die "$svc failed to start (log: $logfile)"
    fi
    sleep 0.25
  done
}

# service_start SVC: idempotent. Ours and ready: left alone; ours and starting: waited for; answering but not
# ours: left alone (SERVICE_FOREIGN=leave) or refused; otherwise installed, launched and waited for.
service_start() {
  local svc=$1 t0 pids port
  t0=$(now_ms)
  SERVICE_FRESH=0
  mapfile -t pids < <(service_pids "$svc")
  if (( ${#pids[@]} > 0 )); then
    if svc_ready "$svc"; then
      log "$svc already running ($(with_url "$svc" "${pids[0]}"))"
      return 0
    fi
    log "$svc was started earlier (pid ${pids[0]}) but is not ready yet; waiting"
    service_wait_ready "$svc" "${pids[0]}" "$t0"
    return
  fi
  if [[ $SERVICE_FOREIGN == leave ]] && svc_ready "$svc"; then
    log "$svc already up on $(service_url "$svc") (not started by $LOG_TAG.sh; leaving it alone)"
    return 0
  fi
  for port in $(service_ports "$svc"); do
    if port_open "$port"; then
      if [[ $SERVICE_FOREIGN == leave ]]; then
        die "$svc: port $port is in use by another process that is not a ready $svc; free it or change the port (see --help)"
      fi
      die "$svc: port $port is in use by a process this script did not start; free it or change the port (see --help)"
    fi
  done
  service_install "$svc"
  t0=$(now_ms) # "ready in" counts the start alone; install reports its own time
  service_launch "$svc"
  # shellcheck disable=SC2034 # (read by the sourcing script's after_start hooks)
  SERVICE_FRESH=1
  service_wait_ready "$svc" "$LAUNCHED_PID" "$t0"
}

# service_stop SVC [quiet]: SIGTERM to our PIDs (then SIGKILL after STOP_TIMEOUT), then to what is left of
# their process groups; a service that is not ours is not touched.
service_stop() {
  local svc=$1 quiet=${2:-} t0 pids group=() rest=() p port marker
  t0=$(now_ms)
  mapfile -t pids < <(service_pids "$svc")
  if (( ${#pids[@]} == 0 )); then
    if [[ -z $quiet ]]; then
      port=$(service_ports "$svc")
      port=${port%% *}
      if [[ -n $port ]] && port_open "$port"; then
        log "$svc: not started by $LOG_TAG.sh (something else listens on port $port; not touching it)"
      else
        log "$svc: not running"
      fi
    fi
    return 0
  fi
  marker=$(svc_marker "$svc")
  mapfile -t group < <(service_group "$svc" "${pids[@]}")
  terminate "${pids[@]}"
  for p in "${group[@]}"; do if pid_matches "$p" "$marker"; then rest+=("$p"); fi; done
  if (( ${#rest[@]} > 0 )); then terminate "${rest[@]}"; fi
  service_forget "$svc"
  [[ -n $quiet ]] || log "$svc stopped (pid ${pids[*]}) in $(since "$t0")"
}

# service_status SVC: one line "name up|down pid=PID detail"; SERVICE_STATUS_RC=3 if it is down. A service
# that answers but is not ours is up with SERVICE_FOREIGN=leave, down with refuse.
service_status() {
  local svc=$1 pids pid state=down detail line
  mapfile -t pids < <(service_pids "$svc")
  pid=${pids[0]:--}
  if [[ $SERVICE_FOREIGN == leave || $pid != - ]] && service_alive "$svc"; then state=up; fi
  [[ $state == up ]] || SERVICE_STATUS_RC=3
  if has_fn svc_status_detail; then detail=$(svc_status_detail "$svc" "$pid"); else detail=$(service_url "$svc"); fi
  line=$(printf "%-${SERVICE_NAME_WIDTH}s %-4s pid=%-8s %s" "$svc" "$state" "$pid" "$detail")
  printf '%s\n' "${line%"${line##*[! ]}"}"
}

# ---------------------------------------------------------------- the commands' defaults

service_install_all() {
  local svc
  for svc in "$@"; do service_install "$svc"; done
  log "installed: $* (in $STACKWATCH_HOME)"
}
service_start_all() {
  local svc
  for svc in "$@"; do
    service_hook before_start "$svc"
    service_start "$svc"
    service_hook after_start "$svc"
  done
  log "started: $* in $(since "$SERVICE_T0")"
}
service_stop_all() {
  local names=("$@") i
  for (( i=${#names[@]}-1; i>=0; i-- )); do service_stop "${names[i]}"; done
}
service_status_all() {
  local svc
  for svc in "$@"; do service_status "$svc"; done
}

# service_main ACTION [SERVICE...]: the command line. Exit 2 on an unknown command or service; status exits 3
# when a listed service is down.
service_main() {
  local action=${1:-}
  [[ $# -gt 0 ]] && shift
  case $action in
    -h|--help|help) usage; return 0 ;;
    install|start|stop|status|env) ;;
    "") usage >&2; return 2 ;;
    *)
      if has_fn "cmd_${action//-/_}"; then "cmd_${action//-/_}" "$@"; return; fi
      log "unknown command: $action"; usage >&2; return 2 ;;
  esac

  local known=("${SERVICES[@]}" ${SERVICES_OPTIONAL[@]+"${SERVICES_OPTIONAL[@]}"}) selected=() want svc
  for want in "$@"; do
    case $want in
      -h|--help) usage; return 0 ;;
      all) selected+=("${SERVICES[@]}"); continue ;;
    esac
    if [[ -n $want ]]; then want=${SERVICE_ALIASES[$want]:-$want}; fi
    if [[ " ${known[*]} " != *" $want "* ]]; then
      log "unknown service: $want ($(printf '%s, ' "${known[@]}" | sed 's/, $//'))"
      return 2
    fi
    selected+=("$want")
  done
  if has_fn services_prepare; then services_prepare "$action"; fi
  SERVICE_NAMED=0
  if (( ${#selected[@]} > 0 )); then
    # shellcheck disable=SC2034 # (read by the sourcing script's <command>_all)
    SERVICE_NAMED=1
  else
    selected=("${SERVICES[@]}")
    # A bare "stop" also stops the optional services this script started (and says nothing about the others).
    if [[ $action == stop ]]; then
      for svc in ${SERVICES_OPTIONAL[@]+"${SERVICES_OPTIONAL[@]}"}; do
        [[ -z $(service_pids "$svc" 2>/dev/null) ]] || selected+=("$svc")
      done
    fi
  fi
  # canonical order, duplicates dropped
  local ordered=()
  for svc in "${known[@]}"; do
    [[ " ${selected[*]} " == *" $svc "* ]] && ordered+=("$svc")
  done

  SERVICE_T0=$(now_ms)
  case $action in
    env) print_env; return ;;
    status)
      SERVICE_STATUS_RC=0
      if has_fn status_all; then status_all "${ordered[@]}"; else service_status_all "${ordered[@]}"; fi
      return "$SERVICE_STATUS_RC"
      ;;
  esac
  take_lock "$SERVICE_LOCK"
  if has_fn "${action}_all"; then "${action}_all" "${ordered[@]}"; else "service_${action}_all" "${ordered[@]}"; fi
}
