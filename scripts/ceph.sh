#!/usr/bin/env bash
# A real one-host Ceph cluster for stackwatch's integration tests: Debian's Ceph (16.2
# in bookworm), 1 mon, 1 mgr and 3 OSDs on memstore, on loopback, cephx on, as root, no
# systemd, set up the way Ceph's vstart.sh does it. Everything lives under
# $STACKWATCH_HOME/ceph (never /etc/ceph or /var/lib/ceph). Run with --help.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HELPERS=$SCRIPT_DIR/ceph

LOG_TAG=ceph
# shellcheck source=lib/service.sh
source "$SCRIPT_DIR/lib/service.sh"
CEPH_DIR=$STACKWATCH_HOME/ceph

CONF=$CEPH_DIR/ceph.conf
ADMIN_KEYRING=$CEPH_DIR/keyring
CLUSTER_LOG=$LOG_DIR/ceph-cluster.log
AUDIT_LOG=$LOG_DIR/ceph-audit.log

MON_PORT=${SW_CEPH_MON_PORT:-29330}       # msgr2
MON_V1_PORT=${SW_CEPH_MON_V1_PORT:-29331} # legacy msgr1
BIND_PORT_MIN=${SW_CEPH_PORT_MIN:-29340}  # mgr and OSDs (4 ports per OSD, 1 for the mgr)
BIND_PORT_MAX=${SW_CEPH_PORT_MAX:-29399}
NUM_OSDS=${SW_CEPH_OSDS:-3}
OSD_BYTES=${SW_CEPH_OSD_BYTES:-1073741824} # memstore capacity per OSD (RAM, used on demand)
POOL=${SW_CEPH_POOL:-volumes}
POOL_PGS=8
SETTLE_TIMEOUT=${SW_CEPH_SETTLE_TIMEOUT:-30}
MON_ID=a
MGR_ID=x
PACKAGES=(ceph-mon ceph-mgr ceph-osd ceph-common)

usage() {
  cat <<EOF
usage: scripts/ceph.sh COMMAND [ARG | DAEMON...]

A real one-host Ceph cluster (Debian's Ceph 16.2: 1 mon, 1 mgr, $NUM_OSDS OSDs on memstore,
pool "$POOL" of size 3 with a little data in it) on 127.0.0.1, cephx on, for integration
tests that need genuine health faults. memstore keeps the data in RAM, so a stopped
cluster is not restarted but created anew (about 20 s).

commands:
  install      apt-get install ${PACKAGES[*]} (idempotent; quick when installed)
  start        leave our cluster alone if it runs and settles to HEALTH_OK within
               \$SW_CEPH_SETTLE_TIMEOUT s; otherwise stop what is left of it, wipe
               \$STACKWATCH_HOME/ceph and create a fresh one; wait for HEALTH_OK with all
               PGs active+clean (exit 1 with the log tail if not within \$SW_START_TIMEOUT s)
  stop         stop only the daemons this script started, by recorded PID (SIGTERM,
               then SIGKILL after \$SW_STOP_TIMEOUT s)
  status       one line per daemon (name, up/down, pid) and the cluster's health
               (exit 0 if every daemon runs and the cluster is settled, 3 otherwise)
  start|stop|status DAEMON...  the same for the daemons named (mon.$MON_ID, mgr.$MGR_ID, osd.N)
               only: start one again on its old data and wait until the cluster sees it
  kill-osd N   SIGKILL osd.N (a genuine fault: OSD_DOWN within ~1 s, PG_DEGRADED a few s later)
  start-osd N  start osd.N again and wait until it is up (it rejoins empty and recovers
               from its peers: HEALTH_OK some 10 s later)
  kill-mgr, start-mgr  the same for the mgr (MGR_DOWN is raised about 30 s after the kill)
  kill-mon, start-mon  the same for the mon (meanwhile every ceph command fails after
               its --connect-timeout)
  env          print STACKWATCH_CEPH_* variables: eval "\$(scripts/ceph.sh env)"

environment (defaults):
  STACKWATCH_HOME=$STACKWATCH_HOME
  SW_CEPH_MON_PORT=29330 SW_CEPH_MON_V1_PORT=29331
  SW_CEPH_PORT_MIN=29340 SW_CEPH_PORT_MAX=29399 (ports of the mgr and OSDs)
  SW_CEPH_OSDS=3 SW_CEPH_OSD_BYTES=1073741824 SW_CEPH_POOL=volumes
  SW_START_TIMEOUT=120 SW_CEPH_SETTLE_TIMEOUT=30 SW_STOP_TIMEOUT=30

files: \$STACKWATCH_HOME/ceph/{ceph.conf,keyring,<daemon data>},
       \$STACKWATCH_HOME/log/ceph-<daemon>.log, \$STACKWATCH_HOME/log/ceph-cluster.log
       (the cluster log: "Health check failed/cleared" lines), \$STACKWATCH_HOME/log/ceph-audit.log,
       \$STACKWATCH_HOME/run/ceph-<daemon>.pid
EOF
}



# ---------------------------------------------------------------- daemons: the services' hooks (scripts/lib/service.sh)

# Daemon names are Ceph's: mon.a, mgr.x, osd.0 ... osd.N-1.
all_daemons() {
  local i
  echo "mon.$MON_ID"
  echo "mgr.$MGR_ID"
  for (( i=0; i<NUM_OSDS; i++ )); do echo "osd.$i"; done
}
mapfile -t SERVICES < <(all_daemons)
SERVICE_LOCK=.ceph.lock
SERVICE_FOREIGN=refuse
SERVICE_NAME_WIDTH=7
SERVICE_FILE_PREFIX=ceph- # $RUN_DIR/ceph-<daemon>.pid, $LOG_DIR/ceph-<daemon>.log

# The command line of a daemon we start; its tail doubles as the marker that guards
# against signalling an unrelated process that inherited a recycled PID.
daemon_args() { # NAME -> "--conf CONF --id ID"
  printf '%s\n' --conf "$CONF" --id "${1#*.}"
}
svc_marker() { echo "--conf $CONF --id ${1#*.} "; }
daemon_pid() { # the first pid, without a pipe into head (whose early exit is a SIGPIPE under pipefail)
  local pids
  mapfile -t pids < <(service_pids "$1")
  echo "${pids[0]-}"
}

# The daemon runs in the foreground with its log on stderr, captured in $LOG_DIR/ceph-NAME.log.
launch_daemon() { # NAME
  local args
  mapfile -t args < <(daemon_args "$1")
  launch "$(service_log "$1")" "ceph-${1%%.*}" -d "${args[@]}"
}
svc_launch() { launch_daemon "$1"; }

# json_true EXPR: evaluate a Python expression over the JSON on stdin (as d)
json_true() {
  python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if eval(sys.argv[1]) else 1)' "$1" 2>/dev/null
}
# svc_ready NAME: the cluster sees the daemon (what starting one daemon waits for). A daemon is up while its
# process runs (svc_alive); the status line of the cluster says the rest.
svc_ready() {
  case $1 in
    mon.*) cephc mon stat >/dev/null 2>&1 ;;
    mgr.*) cephc mgr stat -f json 2>/dev/null | json_true 'd["available"]' ;;
    osd.*) cephc osd dump -f json 2>/dev/null |
      json_true "any(o['osd'] == ${1#osd.} and o['up'] == 1 for o in d['osds'])" ;;
  esac
}
svc_alive() { return 0; }

# ---------------------------------------------------------------- cluster probes

cephc() { # the admin CLI against our cluster, bounded in time
  timeout 60 ceph --conf "$CONF" --keyring "$ADMIN_KEYRING" --connect-timeout 5 "$@"
}

# cluster_settled: HEALTH_OK, all OSDs up and in, all PGs active+clean. The summary
# line goes to STATE_LINE.
STATE_LINE=""
cluster_settled() {
  local json rc=0
  json=$(timeout 15 ceph --conf "$CONF" --keyring "$ADMIN_KEYRING" --connect-timeout 5 \
    status -f json 2>/dev/null) || { STATE_LINE="mon not answering"; return 1; }
  STATE_LINE=$(python3 "$HELPERS/state.py" "$NUM_OSDS" <<<"$json") || rc=$?
  return "$rc"
}

wait_settled() { # T0 TIMEOUT_S: until settled, or fail (a daemon exiting fails at once)
  local t0=$1 timeout=$2 name last=""
  while :; do
    if cluster_settled; then return 0; fi
    if [[ $STATE_LINE != "$last" ]]; then log "  $(since "$t0"): $STATE_LINE"; last=$STATE_LINE; fi
    for name in "${SERVICES[@]}"; do
      if [[ -z $(daemon_pid "$name") ]]; then
        show_log_tail "$(service_log "$name")"
        log "ceph-$name exited (log: $(service_log "$name"))"
        return 1
      fi
    done
    if (( $(now_ms) >= t0 + timeout * 1000 )); then
      log "not settled after ${timeout}s: $STATE_LINE"
      return 1
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------- install

ceph_installed() {
  local p
  for p in ceph-mon ceph-mgr ceph-osd ceph monmaptool ceph-authtool rados python3; do
    command -v "$p" >/dev/null 2>&1 || return 1
  done
}

ceph_install() {
  ceph_installed && return 0
  local t0; t0=$(now_ms)
  apt_install apt-ceph.log "${PACKAGES[@]}"
  ceph_installed || die "installed ${PACKAGES[*]} but a command is still missing"
  log "ceph installed in $(since "$t0") ($(ceph --version))"
}

# ---------------------------------------------------------------- create

write_conf() { # FSID
  # \$cluster, \$name, \$id are Ceph's own metavariables, expanded by each daemon.
  cat >"$CONF" <<EOF
# generated by scripts/ceph.sh: one-host test cluster, everything under $CEPH_DIR
[global]
fsid = $1
mon host = [v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]
public addr = 127.0.0.1
ms bind ipv4 = true
ms bind ipv6 = false
ms bind port min = $BIND_PORT_MIN
ms bind port max = $BIND_PORT_MAX
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $ADMIN_KEYRING
run dir = $CEPH_DIR/run
crash dir = $CEPH_DIR/crash
# three replicas on one host: replicate across OSDs, not hosts
osd pool default size = 3
osd pool default min size = 2
osd pool default pg num = $POOL_PGS
osd pool default pgp num = $POOL_PGS
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
# one OSD's report is enough to mark a peer down (the default wants two hosts)
mon osd reporter subtree level = osd
mon osd min down reporters = 1
# a busy shared disk must not raise MON_DISK_LOW
mon data avail warn = 2
mon data avail crit = 1
mon allow pool delete = true
# MGR_DOWN is otherwise not raised while the cluster is younger than 120 s (and a mgr
# lost then stays unreported until the mgrmap changes again)
mon mgr mkfs grace = 0
# warnings that would always stand on a test cluster
auth allow insecure global id reclaim = false
mon warn on insecure global id reclaim = false
mon warn on insecure global id reclaim allowed = false
# the cluster log ("Health check failed/cleared" lines) and the audit log, as on a real cluster
mon cluster log file = cluster=$CLUSTER_LOG audit=$AUDIT_LOG
osd objectstore = memstore
memstore device bytes = $OSD_BYTES

# The admin sockets are for the daemons only: CLI calls running side by side would
# fight over one client socket path and print bind errors on stderr.
[mon]
mon data = $CEPH_DIR/\$name
admin socket = $CEPH_DIR/run/\$cluster-\$name.asok

[mgr]
mgr data = $CEPH_DIR/\$name
keyring = $CEPH_DIR/\$name/keyring
admin socket = $CEPH_DIR/run/\$cluster-\$name.asok

[osd]
osd data = $CEPH_DIR/\$name
keyring = $CEPH_DIR/\$name/keyring
admin socket = $CEPH_DIR/run/\$cluster-\$name.asok
EOF
}

wait_mon() { # T0: until the mon answers
  local t0=$1
  while ! cephc mon stat >/dev/null 2>&1; do
    if [[ -z $(daemon_pid "mon.$MON_ID") ]]; then
      show_log_tail "$(service_log "mon.$MON_ID")"
      die "ceph-mon exited during startup"
    fi
    (( $(now_ms) < t0 + START_TIMEOUT * 1000 )) || die "ceph-mon not answering after ${START_TIMEOUT}s"
    sleep 0.3
  done
}

create_osd() { # ID
  local want=$1 uuid key id dir
  uuid=$(cat /proc/sys/kernel/random/uuid)
  key=$(ceph-authtool --gen-print-key)
  id=$(printf '{"cephx_secret": "%s"}' "$key" | cephc osd new "$uuid" -i -)
  [[ $id == "$want" ]] || die "ceph osd new gave id '$id', expected $want"
  dir=$CEPH_DIR/osd.$id
  mkdir -p "$dir"
  (umask 077; printf '[osd.%s]\n\tkey = %s\n' "$id" "$key" >"$dir/keyring")
  if ! ceph-osd --conf "$CONF" --id "$id" --mkfs --osd-uuid "$uuid" \
    >"$LOG_DIR/ceph-osd.$id-mkfs.log" 2>&1; then
    show_log_tail "$LOG_DIR/ceph-osd.$id-mkfs.log"
    die "ceph-osd --mkfs failed for osd.$id"
  fi
  service_launch "osd.$id"
}

create_cluster() {
  local fsid t0 i
  t0=$(now_ms)
  for i in "$MON_PORT" "$MON_V1_PORT"; do
    if port_open "$i"; then die "port $i is in use by a process that is not our ceph-mon; free it or set SW_CEPH_MON_PORT/SW_CEPH_MON_V1_PORT"; fi
  done
  rm -rf "$CEPH_DIR"
  mkdir -p "$CEPH_DIR/run" "$CEPH_DIR/crash" "$CEPH_DIR/mon.$MON_ID" "$CEPH_DIR/mgr.$MGR_ID"
  rm -f "$CLUSTER_LOG" "$AUDIT_LOG"
  fsid=$(cat /proc/sys/kernel/random/uuid)
  write_conf "$fsid"
  log "creating cluster $fsid in $CEPH_DIR"

  # mon: keyring with mon. and client.admin, monmap with v2+v1 addresses, mkfs, start
  local mkfs_log=$LOG_DIR/ceph-mon.$MON_ID-mkfs.log
  ceph-authtool --create-keyring "$CEPH_DIR/mon-bootstrap.keyring" --gen-key -n mon. \
    --cap mon 'allow *' >/dev/null
  ceph-authtool --create-keyring "$ADMIN_KEYRING" --gen-key -n client.admin \
    --cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *' >/dev/null
  ceph-authtool "$CEPH_DIR/mon-bootstrap.keyring" --import-keyring "$ADMIN_KEYRING" >/dev/null
  monmaptool --create --fsid "$fsid" --enable-all-features \
    --addv "$MON_ID" "[v2:127.0.0.1:$MON_PORT,v1:127.0.0.1:$MON_V1_PORT]" \
    "$CEPH_DIR/monmap" >/dev/null
  if ! ceph-mon --conf "$CONF" --id "$MON_ID" --mkfs --monmap "$CEPH_DIR/monmap" \
    --keyring "$CEPH_DIR/mon-bootstrap.keyring" >"$mkfs_log" 2>&1; then
    show_log_tail "$mkfs_log"
    die "ceph-mon --mkfs failed"
  fi
  service_launch "mon.$MON_ID"
  wait_mon "$t0"
  log "  $(since "$t0"): mon.$MON_ID up (v2 127.0.0.1:$MON_PORT, v1 :$MON_V1_PORT)"

  # mgr
  cephc auth get-or-create "mgr.$MGR_ID" mon 'allow profile mgr' osd 'allow *' \
    mds 'allow *' -o "$CEPH_DIR/mgr.$MGR_ID/keyring" >/dev/null 2>&1 ||
    die "ceph auth get-or-create mgr.$MGR_ID failed"
  service_launch "mgr.$MGR_ID"

  # OSDs: ceph osd new + ceph-osd --mkfs + start
  for (( i=0; i<NUM_OSDS; i++ )); do create_osd "$i"; done
  log "  $(since "$t0"): mgr.$MGR_ID and $NUM_OSDS OSDs started"

  # one replicated pool with a little data, so `ceph df` shows stored bytes
  cephc osd pool create "$POOL" "$POOL_PGS" "$POOL_PGS" replicated >/dev/null 2>&1 ||
    die "ceph osd pool create $POOL failed"
  cephc osd pool application enable "$POOL" rbd >/dev/null 2>&1 ||
    die "ceph osd pool application enable $POOL rbd failed"
  local obj=$CEPH_DIR/seed.bin
  head -c 65536 /dev/urandom >"$obj"
  for i in 1 2 3 4; do
    timeout 60 rados --conf "$CONF" --keyring "$ADMIN_KEYRING" -p "$POOL" put "seed-$i" "$obj" ||
      die "rados put seed-$i failed"
  done
  rm -f "$obj"
  log "  $(since "$t0"): pool $POOL (size 3, $POOL_PGS PGs) with 4 objects of 64 KiB"

  wait_settled "$t0" "$START_TIMEOUT" || die "cluster did not settle (logs: $LOG_DIR/ceph-*.log)"
}

# ---------------------------------------------------------------- commands

running_daemons() { # prints "NAME PID" of our daemons still running
  local name pid
  for name in "${SERVICES[@]}"; do
    pid=$(daemon_pid "$name")
    if [[ -n $pid ]]; then echo "$name $pid"; fi
  done
  return 0
}

install_all() {
  ceph_install
  log "installed: $(ceph --version)"
}

# start_all [DAEMON...]: the whole cluster, made anew unless ours runs and settles (a memstore cluster cannot be
# restarted: its data was in RAM); or, when daemons are named, those daemons again on their old data.
start_all() {
  local t0 running name
  t0=$(now_ms)
  ceph_install
  if (( SERVICE_NAMED )); then
    for name in "$@"; do
      [[ -d $CEPH_DIR/$name ]] || die "$name was never created: run scripts/ceph.sh start"
      # An OSD needs no --mkfs: memstore reloads the (empty) store saved at mkfs time and
      # the OSD backfills from its peers; the mon's store is on disk.
      service_start "$name"
    done
    return 0
  fi
  mapfile -t running < <(running_daemons)
  if (( ${#running[@]} == ${#SERVICES[@]} )); then
    if wait_settled "$t0" "$SETTLE_TIMEOUT" 2>/dev/null; then
      log "already running and healthy: $STATE_LINE"
      return 0
    fi
    log "running but not healthy ($STATE_LINE): recreating it"
  elif (( ${#running[@]} > 0 )); then
    log "only ${#running[@]} of ${#SERVICES[@]} daemons running: recreating the cluster"
  fi
  stop_cluster quiet
  t0=$(now_ms) # the time reported counts creation alone; install reports its own
  # a half-made cluster is of no use: stop whatever was started if creation fails
  trap 'log "start failed; stopping the daemons started so far"; stop_cluster quiet' EXIT
  create_cluster
  trap - EXIT
  log "cluster ready in $(since "$t0"): $STATE_LINE"
}

stop_all() {
  if (( SERVICE_NAMED )); then service_stop_all "$@"; else stop_cluster; fi
}

stop_cluster() { # [quiet]: every daemon of ours, the OSDs and mgr first, so the mon stays to hear them go
  local quiet=${1:-} t0 names=() pids=() others=() running=() line mon_pid=""
  t0=$(now_ms)
  mapfile -t running < <(running_daemons)
  for line in ${running[@]+"${running[@]}"}; do
    names+=("${line% *}")
    pids+=("${line#* }")
    if [[ $line == mon.* ]]; then mon_pid=${line#* }; else others+=("${line#* }"); fi
  done
  if (( ${#pids[@]} == 0 )); then
    [[ -n $quiet ]] || log "not running"
    return 0
  fi
  (( ${#others[@]} == 0 )) || terminate "${others[@]}"
  [[ -z $mon_pid ]] || terminate "$mon_pid"
  for line in "${names[@]}"; do service_forget "$line"; done
  [[ -n $quiet ]] || log "stopped ${names[*]} (pid ${pids[*]}) in $(since "$t0")"
}

status_all() { # the daemons' lines, then the cluster's
  service_status_all "$@"
  if [[ ! -f $CONF ]] || ! command -v ceph >/dev/null 2>&1; then
    printf 'cluster  not created\n'
    SERVICE_STATUS_RC=3
  elif [[ -z $(daemon_pid "mon.$MON_ID") ]]; then
    printf 'cluster  down (mon.%s not running)\n' "$MON_ID"
    SERVICE_STATUS_RC=3
  else
    cluster_settled || SERVICE_STATUS_RC=3
    printf 'cluster  %s\n' "$STATE_LINE"
  fi
}

daemon_arg() { # COMMAND ARG -> the daemon name kill-/start- acts on
  case $1 in
    *-osd)
      if [[ ! ${2:-} =~ ^[0-9]+$ ]] || (( $2 >= NUM_OSDS )); then
        die "usage: scripts/ceph.sh $1 N (0..$(( NUM_OSDS - 1 )))"
      fi
      echo "osd.$2" ;;
    *-mon) echo "mon.$MON_ID" ;;
    *-mgr) echo "mgr.$MGR_ID" ;;
  esac
}

kill_daemon() { # NAME: SIGKILL, a crash as far as the cluster can tell
  local name=$1 pid
  pid=$(daemon_pid "$name")
  [[ -n $pid ]] || die "$name is not running (not started by ceph.sh, or already dead)"
  kill -KILL "$pid"
  while is_running "$pid"; do sleep 0.05; done
  service_forget "$name"
  log "$name killed (SIGKILL, pid $pid)"
}

# kill-osd N, kill-mon, kill-mgr; start-osd N, start-mon, start-mgr (start-* is `start DAEMON`)
cmd_kill_osd() { local name; name=$(daemon_arg kill-osd "${1:-}"); take_lock "$SERVICE_LOCK"; kill_daemon "$name"; }
cmd_kill_mon() { take_lock "$SERVICE_LOCK"; kill_daemon "mon.$MON_ID"; }
cmd_kill_mgr() { take_lock "$SERVICE_LOCK"; kill_daemon "mgr.$MGR_ID"; }
cmd_start_osd() { local name; name=$(daemon_arg start-osd "${1:-}"); service_main start "$name"; }
cmd_start_mon() { service_main start "mon.$MON_ID"; }
cmd_start_mgr() { service_main start "mgr.$MGR_ID"; }

print_env() {
  cat <<EOF
STACKWATCH_CEPH_CONF=$CONF
STACKWATCH_CEPH_KEYRING=$ADMIN_KEYRING
STACKWATCH_CEPH_COMMAND="ceph --conf $CONF --keyring $ADMIN_KEYRING --connect-timeout 5"
STACKWATCH_CEPH_CLUSTER_LOG=$CLUSTER_LOG
EOF
}

service_main "$@"
