#!/usr/bin/env bash
# Every test stackwatch has: the static checks (type check, ESLint, Prettier, shellcheck), unit tests, and
# integration tests against the real local stack (Kafka, Elasticsearch, Alertmanager, the pager webhook, Zabbix
# with MariaDB replication, Ceph), which it starts if needed and stops afterwards — only the services it started
# itself. Extra arguments go to vitest (e.g. --project unit, a file name).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -d node_modules ] || npm ci --no-audit --no-fund

# The static checks need no service: they run in the background while the services start, each into its own log
# with its time, and the tests wait for them (a failed one ends the run, with its output, before any test). Their
# commands are package.json's scripts (typecheck, lint, format:check); their caches live in .stack/cache/, which
# `npm ci` keeps.
checks_dir=.stack/checks
mkdir -p "$checks_dir" .stack/cache
check_names=()
check_pids=()
start_check() {
  local name=$1
  shift
  (
    start=$(date +%s%N)
    rc=0
    "$@" >"$checks_dir/$name.log" 2>&1 || rc=$?
    echo $((($(date +%s%N) - start) / 1000000)) >"$checks_dir/$name.ms"
    exit "$rc"
  ) &
  check_names+=("$name")
  check_pids+=($!)
}
start_check tsc npm run --silent typecheck
start_check eslint npm run --silent lint
start_check prettier npm run --silent format:check

# What tests use besides the services (promtool, shellcheck, oslo.messaging): installed now if missing, waiting for
# another apt-get's lock, never from inside a test.
scripts/test-deps.sh install
if [ -x scripts/shellcheck.sh ]; then
  start_check shellcheck scripts/shellcheck.sh
else
  echo "test: scripts/shellcheck.sh does not exist: shell scripts not linted"
fi

started=()
for svc in webhook alertmanager kafka elasticsearch kafka-secure elasticsearch-secure; do
  scripts/stack.sh status "$svc" >/dev/null 2>&1 || started+=("$svc")
done
# The collectors' real servers, each with its own script: Zabbix 6.0 with a MariaDB primary/replica pair, a
# one-host Ceph cluster, and the live OpenStack. Started here if down, stopped afterwards if started here.
extra=()
for svc in zabbix ceph; do
  "scripts/$svc.sh" status >/dev/null 2>&1 || extra+=("$svc")
done
# shellcheck disable=SC2317 # (run by the EXIT trap)
stop_started() {
  for svc in ${extra[@]+"${extra[@]}"}; do "scripts/$svc.sh" stop || true; done
  [ ${#started[@]} -eq 0 ] || scripts/stack.sh stop "${started[@]}"
}
trap stop_started EXIT
# The live OpenStack and its tests: only with STACKWATCH_TEST_OPENSTACK=1 (npm run test:openstack, or
# STACKWATCH_TEST_OPENSTACK=1 npm test for everything). Not yet by default: its drift test failed twice in a row on a
# cloud whose databases had seen earlier runs (issue 13 is open for it and for the 30-minute budget).
openstack_pid=""
with_openstack=${STACKWATCH_TEST_OPENSTACK:-0}
if [ "$with_openstack" = 1 ] && ! scripts/openstack.sh status >/dev/null 2>&1; then extra+=(openstack); fi
[ ${#started[@]} -eq 0 ] || scripts/stack.sh start "${started[@]}"
for svc in ${extra[@]+"${extra[@]}"}; do [ "$svc" = openstack ] || "scripts/$svc.sh" start; done
checks_failed=0
for i in "${!check_pids[@]}"; do
  name=${check_names[$i]}
  if wait "${check_pids[$i]}"; then
    echo "test: $name passed ($(cat "$checks_dir/$name.ms") ms)"
  else
    echo "test: $name FAILED ($(cat "$checks_dir/$name.ms" 2>/dev/null || echo '?') ms):"
    sed 's/^/  /' "$checks_dir/$name.log"
    checks_failed=1
  fi
done
[ "$checks_failed" -eq 0 ] || exit 1

# The cloud (scripts/openstack.sh: ~1.5 min with its databases in place, ~3-5 min from empty ones, most of it
# Python importing) starts now, once the other services are up and the checks have passed, in the background at
# nice 10: it takes mostly the CPU the integration tests leave idle (they wait on services and timers), and its
# processes get normal priority again once it is up. The OpenStack tests run last and wait for it.
if [[ " ${extra[*]-} " == *" openstack "* ]]; then
  # nova-compute with heartbeats on and a short threshold: the OpenStack tests' baseline (openstack-live.test.ts).
  SW_START_TIMEOUT=${SW_START_TIMEOUT:-900} SW_OS_AMQP_HEARTBEAT=10 nice -n 10 scripts/openstack.sh start \
    >.stack/checks/openstack-start.log 2>&1 &
  openstack_pid=$!
fi

# Waits for the cloud's background start; 0 when it is up.
openstack_ready() {
  [ -n "$openstack_pid" ] || return 0
  local rc=0
  wait "$openstack_pid" || rc=$?
  openstack_pid=""
  if [ "$rc" -ne 0 ]; then
    echo "test: scripts/openstack.sh start FAILED:"
    tail -n 40 .stack/checks/openstack-start.log | sed 's/^/  /'
    return 1
  fi
  tail -n 2 .stack/checks/openstack-start.log
  # Normal priority again for the cloud's processes, their children (uwsgi's workers) and every thread of each
  # (Linux keeps a nice value per thread): its tests measure it.
  local pids pid task
  pids=$(cat .stack/openstack/run/*.pid 2>/dev/null || true)
  for pid in $pids; do pids="$pids $(pgrep -P "$pid" || true)"; done
  for pid in $pids; do
    for task in /proc/"$pid"/task/*; do renice -n 0 -p "${task##*/}" >/dev/null 2>&1 || true; done
  done
}

results=.stack/test-results
mkdir -p "$results"
rm -f "$results"/*.json
vitest() { # NAME ARGS...: one vitest run, its JSON report in $results/NAME.json
  local name=$1
  shift
  npx vitest run --reporter=default --reporter=json --outputFile="$results/$name.json" "$@"
}
rc=0
if [ $# -gt 0 ]; then
  # Arguments (a project, a file name): one run, as asked.
  openstack_ready || exit 1
  vitest run "$@" || rc=$?
else
  # 1. The integration tests, one file after another on the shared stack (the cloud starts meanwhile).
  vitest integration --project integration || rc=$?
  # 2. The unit tests (CPU only) beside the OpenStack tests (mostly waiting on the cloud's own timers: RPC
  #    timeouts, heartbeats, restarts), so that neither waits for the other.
  if [ "$with_openstack" = 1 ]; then
    if openstack_ready; then
      vitest openstack --project openstack >.stack/checks/openstack-tests.log 2>&1 &
      os_tests=$!
      vitest unit --project unit || rc=$?
      wait "$os_tests" || rc=$?
      echo "test: the OpenStack tests (run beside the unit tests; their output):"
      cat .stack/checks/openstack-tests.log
    else
      rc=1
      vitest unit --project unit || rc=$?
    fi
  else
    vitest unit --project unit || rc=$?
  fi
fi

# One plain closing line that any CI reads: "N passed, N failed", over every run above.
# shellcheck disable=SC2016 # (JavaScript's template literals, not the shell's)
node -e '
  const fs = require("fs");
  let passed = 0, failed = 0, skipped = 0, files = 0;
  for (const f of fs.readdirSync(process.argv[1]).filter((f) => f.endsWith(".json"))) {
    const r = JSON.parse(fs.readFileSync(`${process.argv[1]}/${f}`, "utf8"));
    passed += r.numPassedTests; failed += r.numFailedTests || r.numFailedTestSuites || 0; skipped += r.numPendingTests + r.numTodoTests;
    files++;
  }
  if (!files) { console.log("tests: no test report was written"); process.exit(1); }
  console.log(`tests: ${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
' "$results" || rc=1
exit "$rc"
