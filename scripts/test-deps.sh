#!/usr/bin/env bash
# What the tests need besides the services that scripts/stack.sh, zabbix.sh and ceph.sh install and start:
# promtool (Debian's prometheus package; the status-server test lints /metrics with it), shellcheck (Debian's
# package; scripts/shellcheck.sh lints the shell scripts with it) and Debian's oslo.messaging and oslo.log (the
# AMQP tests' real client, scripts/amqp-harness/install.sh). Installed here,
# before any test starts (scripts/test.sh, .ci/run), never from inside a test: an apt-get there fails at once
# when another one holds the dpkg lock, where apt_install (scripts/lib/processes.sh) waits for it. Idempotent:
# does nothing when all is there. Run with --help.
set -euo pipefail

SCRIPT_DIR=$(cd "${BASH_SOURCE[0]%/*}" && pwd)
REPO_DIR=${SCRIPT_DIR%/*}
STACKWATCH_HOME=${STACKWATCH_HOME:-$REPO_DIR/.stack}
case $STACKWATCH_HOME in /*) ;; *) STACKWATCH_HOME=$PWD/$STACKWATCH_HOME ;; esac
LOG_DIR=$STACKWATCH_HOME/log

LOG_TAG=test-deps
STOP_TIMEOUT=30
# shellcheck source=lib/processes.sh disable=SC2034 # (LOG_TAG, STOP_TIMEOUT: used by the library)
source "$SCRIPT_DIR/lib/processes.sh"

# (no external command before the check: `check` must work with any PATH, even one without coreutils)
usage() {
  cat <<EOF
usage: scripts/test-deps.sh [install|check]

  install  (default) install what the tests need and the machine lacks: promtool (Debian's
           prometheus package, with no daemon started), shellcheck (Debian's), oslo.messaging
           and oslo.log (Debian's, through scripts/amqp-harness/install.sh). Needs root when something is missing;
           waits for another apt-get's dpkg lock (up to 300 s) instead of failing.
  check    exit 1, naming what is missing and this script's install command, if anything is.
EOF
}

have_promtool() { command -v promtool >/dev/null 2>&1; }
have_shellcheck() { command -v shellcheck >/dev/null 2>&1; }
# (found, not imported: importing oslo.messaging takes seconds on a busy machine, and check runs in unit tests)
have_oslo() {
  [[ -x /usr/bin/python3 ]] && /usr/bin/python3 -c 'import importlib.util as u, sys
sys.exit(0 if u.find_spec("oslo_messaging") and u.find_spec("oslo_log") else 1)' >/dev/null 2>&1
}

missing() { # one line per missing tool: what it is and what it is for
  have_promtool || echo "promtool (Debian's prometheus package; the status-server test lints /metrics with it)"
  have_shellcheck || echo "shellcheck (Debian's shellcheck package; scripts/shellcheck.sh lints the shell scripts with it)"
  have_oslo || echo "oslo.messaging and oslo.log for /usr/bin/python3 (the AMQP tests' real client)"
}

cmd=${1:-install}
case $cmd in
  -h|--help|help) usage; exit 0 ;;
  check)
    gaps=$(missing)
    [[ -z $gaps ]] && exit 0
    while IFS= read -r gap; do log "missing: $gap"; done <<<"$gaps"
    log "install with: sudo scripts/test-deps.sh install (npm test and .ci/run run it before the tests)"
    exit 1
    ;;
  install)
    mkdir -p "$LOG_DIR"
    if ! have_promtool; then
      t0=$(now_ms)
      apt_install apt-test-deps.log prometheus
      have_promtool || die "prometheus installed but promtool is not on PATH (see $LOG_DIR/apt-test-deps.log)"
      log "promtool installed in $(since "$t0") ($(promtool --version 2>&1 | head -n1))"
    fi
    if ! have_shellcheck; then
      t0=$(now_ms)
      apt_install apt-test-deps.log shellcheck
      have_shellcheck || die "shellcheck installed but not on PATH (see $LOG_DIR/apt-test-deps.log)"
      log "shellcheck installed in $(since "$t0") ($(shellcheck --version | sed -n 's/^version: //p'))"
    fi
    # (its own script, also run on its own by the AMQP tests' harness: a no-op once installed)
    have_oslo || "$SCRIPT_DIR/amqp-harness/install.sh"
    ;;
  *) usage >&2; exit 2 ;;
esac
