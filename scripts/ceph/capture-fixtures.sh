#!/usr/bin/env bash
# Captures real Ceph CLI output for stackwatch's unit tests from the cluster that
# scripts/ceph.sh runs, through healthy -> OSD killed -> OSD back -> mgr killed -> mon
# killed. Writes into test/fixtures/ceph-live/ (or the directory given) and prints the
# timings it saw; test/fixtures/ceph-live/README.md describes the files.
#   bash scripts/ceph/capture-fixtures.sh [OUTDIR]
# Recreates the cluster first; takes about 2 minutes; leaves it running and healthy.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
CEPH_SH=$REPO_DIR/scripts/ceph.sh
OUT=${1:-$REPO_DIR/test/fixtures/ceph-live}
OSD=1 # the OSD that gets killed

log() { printf 'capture: %s\n' "$*" >&2; printf '%s\n' "$*" >>"$OUT/capture.log"; }
die() { log "FAILED: $*"; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
ms_since() { echo $(( $(now_ms) - $1 )); }

# a fresh cluster, so that the cluster log holds this run alone
"$CEPH_SH" stop
"$CEPH_SH" start
eval "$("$CEPH_SH" env)"
read -r -a CEPH <<<"$STACKWATCH_CEPH_COMMAND"

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/*.stdout "$OUT"/*.stderr "$OUT"/*.combined \
  "$OUT"/*.exit-code "$OUT"/*.log
log "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $("${CEPH[@]}" --version)"

checks() { # `status` or `health` JSON on stdin -> its check codes, sorted
  python3 -c '
import json, sys
d = json.load(sys.stdin)
print(" ".join(sorted(d.get("health", d)["checks"])))'
}
health_checks() { "${CEPH[@]}" health -f json 2>/dev/null | checks; }

# capture STATE: the three JSON documents (raw stdout, leading newline and all) plus the
# plain `ceph health detail` text; stderr must stay empty and every exit code 0.
capture() {
  local state=$1 cmd words file err
  for cmd in status "health detail" df; do
    read -r -a words <<<"$cmd"
    file=$OUT/$state.${cmd// /-}.json
    err=$("${CEPH[@]}" "${words[@]}" -f json 2>&1 >"$file") || die "ceph $cmd -f json failed in state $state: $err"
    [[ -z $err ]] || die "ceph $cmd -f json wrote to stderr in state $state: $err"
  done
  "${CEPH[@]}" health detail >"$OUT/$state.health-detail.txt"
  log "$state: status checks [$(checks <"$OUT/$state.status.json")]," \
    "health detail checks [$(checks <"$OUT/$state.health-detail.json")]"
}
expect_checks() { # STATE "CODES": both JSON captures carry exactly these checks
  local state=$1 want=$2 f got
  for f in status health-detail; do
    got=$(checks <"$OUT/$state.$f.json")
    [[ $got == "$want" ]] || die "$state.$f.json has checks [$got], expected [$want]"
  done
}
wait_for() { # DESCRIPTION TIMEOUT_S COMMAND...: poll every 0.1 s
  local what=$1 timeout=$2 t0; shift 2
  t0=$(now_ms)
  until "$@"; do
    (( $(ms_since "$t0") < timeout * 1000 )) || die "no $what after ${timeout}s"
    sleep 0.1
  done
}
has_check() { [[ " $(health_checks) " == *" $1 "* ]]; }
lacks_check() { ! has_check "$1"; }
settled() { "$CEPH_SH" status >/dev/null 2>&1; }
all_pgs_active() {
  "${CEPH[@]}" status -f json 2>/dev/null | python3 -c '
import json, sys
states = json.load(sys.stdin)["pgmap"]["pgs_by_state"]
sys.exit(0 if states and all(s["state_name"].startswith("active") for s in states) else 1)'
}

# ---- healthy
capture healthy
expect_checks healthy ""

# ---- osd.1 SIGKILLed: OSD_DOWN at once, PG_DEGRADED a few seconds later
t_kill=$(now_ms)
"$CEPH_SH" kill-osd "$OSD"
wait_for OSD_DOWN 30 has_check OSD_DOWN
log "OSD_DOWN seen $(ms_since "$t_kill") ms after the kill"
capture osd-down
expect_checks osd-down "OSD_DOWN"
wait_for PG_DEGRADED 60 has_check PG_DEGRADED
log "PG_DEGRADED seen $(ms_since "$t_kill") ms after the kill"
# PG_DEGRADED comes while some PGs still peer; capture once they all are active again
# (active+undersized+degraded and active+undersized), so the three files agree
wait_for "all PGs active (peering over)" 30 all_pgs_active
capture osd-down-pg-degraded
expect_checks osd-down-pg-degraded "OSD_DOWN PG_DEGRADED"

# ---- osd.1 started again: OSD_DOWN clears as it boots, PG_DEGRADED once recovered
t_start=$(now_ms)
"$CEPH_SH" start-osd "$OSD"
wait_for "OSD_DOWN clearing" 60 lacks_check OSD_DOWN
log "OSD_DOWN cleared $(ms_since "$t_start") ms after start-osd began"
capture osd-restarted
wait_for "PG_DEGRADED clearing" 60 lacks_check PG_DEGRADED
log "PG_DEGRADED cleared $(ms_since "$t_start") ms after start-osd began"
wait_for "HEALTH_OK with all PGs active+clean" 60 settled
log "HEALTH_OK with all PGs active+clean $(ms_since "$t_start") ms after start-osd began"
capture recovered
expect_checks recovered ""

# ---- mgr SIGKILLed: MGR_DOWN once the mon's beacon grace (30 s) runs out; `ceph df`
# keeps answering from the mon's last PG stats
t_kill=$(now_ms)
"$CEPH_SH" kill-mgr
wait_for MGR_DOWN 90 has_check MGR_DOWN
log "MGR_DOWN seen $(ms_since "$t_kill") ms after the kill"
capture mgr-down
expect_checks mgr-down "MGR_DOWN"
"$CEPH_SH" start-mgr
wait_for "HEALTH_OK after the mgr restart" 60 settled
log "HEALTH_OK again $(ms_since "$t_kill") ms after the mgr kill"

# ---- a warning line before the JSON: two CLI processes configured with one client
# admin socket path (a [client] "admin socket" without \$pid, a common slip); the second
# cannot bind it and says so on stderr, then prints its JSON on stdout as usual.
conf2=$(dirname "$STACKWATCH_CEPH_CONF")/ceph-shared-client-asok.conf
cp "$STACKWATCH_CEPH_CONF" "$conf2"
printf '\n[client]\nadmin socket = %s/run/client-shared.asok\n' "$(dirname "$STACKWATCH_CEPH_CONF")" >>"$conf2"
CEPH2=(ceph --conf "$conf2" --keyring "$STACKWATCH_CEPH_KEYRING" --connect-timeout 5)
"${CEPH2[@]}" -w >/dev/null 2>&1 &
watcher=$!
wait_for "admin socket of the watcher" 15 test -S "$(dirname "$STACKWATCH_CEPH_CONF")/run/client-shared.asok"
rc=0
"${CEPH2[@]}" status -f json >"$OUT/warning-line.status.stdout" 2>"$OUT/warning-line.status.stderr" || rc=$?
echo "$rc" >"$OUT/warning-line.status.exit-code"
rc=0
"${CEPH2[@]}" status -f json >"$OUT/warning-line.status.combined" 2>&1 || rc=$?
kill "$watcher"
wait "$watcher" 2>/dev/null || true
rm -f "$conf2"
[[ -s $OUT/warning-line.status.stderr ]] || die "no warning on stderr with a shared client admin socket"
log "warning-line: exit code $(<"$OUT/warning-line.status.exit-code"), stderr: $(head -c 200 "$OUT/warning-line.status.stderr")"

# ---- mon SIGKILLed: every command fails after --connect-timeout
"$CEPH_SH" kill-mon
for cmd in status "health detail" df; do
  read -r -a words <<<"$cmd"
  base=$OUT/mon-down.${cmd// /-}
  t0=$(now_ms) rc=0
  "${CEPH[@]}" "${words[@]}" -f json >"$base.stdout" 2>"$base.stderr" || rc=$?
  echo "$rc" >"$base.exit-code"
  log "mon-down: ceph $cmd -f json --connect-timeout 5: exit code $rc after $(ms_since "$t0") ms," \
    "stdout $(wc -c <"$base.stdout") bytes, stderr: $(tr '\n' '|' <"$base.stderr")"
done
"$CEPH_SH" start-mon
wait_for "HEALTH_OK after the mon restart" 60 settled

# ---- the cluster log of the whole run, as the mon wrote it (the "Health check ..." lines)
cp "$STACKWATCH_CEPH_CLUSTER_LOG" "$OUT/cluster.log"
chmod 644 "$OUT"/*
log "done: $(find "$OUT" -type f | wc -l) files in $OUT"
