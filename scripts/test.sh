#!/usr/bin/env bash
# Every test stackwatch has: the static checks (type check, ESLint, Prettier, shellcheck), unit tests, and
# integration tests against the real local stack (Kafka, Elasticsearch, Alertmanager, the pager webhook, Zabbix
# with MariaDB replication, Ceph, and a live OpenStack Zed), which it starts if needed and stops afterwards — only
# the services it started itself. Extra arguments go to vitest (e.g. --project unit, a file name).
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
# rabbitmq: a node of the tests' own, which the AMQP files stop and start (never the host's, which the cloud uses).
for svc in webhook alertmanager kafka elasticsearch kafka-secure elasticsearch-secure rabbitmq; do
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
  # The background jobs first (the AMQP files and the unit tests; the cloud's start or its tests), if the run ends
  # before them.
  if [ -n "${side_job-}" ]; then
    pkill -TERM -P "$side_job" 2>/dev/null || true
    kill "$side_job" 2>/dev/null || true
  fi
  if [ -n "${os_job-}" ]; then
    pkill -TERM -P "$os_job" 2>/dev/null || true
    kill "$os_job" 2>/dev/null || true
  fi
  for svc in ${extra[@]+"${extra[@]}"}; do "scripts/$svc.sh" stop || true; done
  [ ${#started[@]} -eq 0 ] || scripts/stack.sh stop "${started[@]}"
}
trap stop_started EXIT
# The live OpenStack (scripts/openstack.sh) and its tests: part of every full run; STACKWATCH_TEST_OPENSTACK=0 leaves
# them out. A run of chosen tests (arguments) starts the cloud only when asked (npm run test:openstack).
if [ $# -eq 0 ]; then with_openstack=${STACKWATCH_TEST_OPENSTACK:-1}; else with_openstack=${STACKWATCH_TEST_OPENSTACK:-0}; fi
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

results=.stack/test-results
mkdir -p "$results"
rm -f "$results"/*.json "$checks_dir"/*-tests.log
vitest() { # NAME ARGS...: one vitest run, its JSON report in $results/NAME.json
  local name=$1
  shift
  npx vitest run --reporter=default --reporter=json --outputFile="$results/$name.json" "$@"
}

# The cloud (scripts/openstack.sh: ~1.5 min with its databases in place, ~3-5 min from empty ones, most of it
# Python importing) starts once the other services are up and the checks have passed, in the background at nice
# 10: it takes mostly the CPU the integration tests leave idle (they wait on services and timers). Its processes
# get normal priority again once it is up (its tests measure it). On a fresh machine its Debian packages are
# installed first, here too in the background (about 3 min; nothing else installs anything meanwhile: every
# other install is done before the tests start).
# shellcheck disable=SC2317 # (run in the background below)
start_cloud() {
  if [[ " ${extra[*]-} " == *" openstack "* ]]; then
    if ! nice -n 10 scripts/openstack.sh install >.stack/checks/openstack-install.log 2>&1; then
      echo "test: scripts/openstack.sh install FAILED:"
      tail -n 40 .stack/checks/openstack-install.log | sed 's/^/  /'
      return 1
    fi
    tail -n 1 .stack/checks/openstack-install.log
    # nova-compute with heartbeats on and a short threshold: the OpenStack tests' baseline (openstack-live.test.ts).
    if ! SW_START_TIMEOUT=${SW_START_TIMEOUT:-900} SW_OS_AMQP_HEARTBEAT=10 nice -n 10 scripts/openstack.sh start \
      >.stack/checks/openstack-start.log 2>&1; then
      echo "test: scripts/openstack.sh start FAILED:"
      tail -n 40 .stack/checks/openstack-start.log | sed 's/^/  /'
      return 1
    fi
    tail -n 2 .stack/checks/openstack-start.log
  fi
  # Normal priority again for the cloud's processes, their children (uwsgi's workers) and every thread of each
  # (Linux keeps a nice value per thread).
  local pids pid task
  pids=$(cat .stack/openstack/run/*.pid 2>/dev/null || true)
  for pid in $pids; do pids="$pids $(pgrep -P "$pid" || true)"; done
  for pid in $pids; do
    for task in /proc/"$pid"/task/*; do renice -n 0 -p "${task##*/}" >/dev/null 2>&1 || true; done
  done
}

# The cloud's start, then its tests, in the background: beside the integration tests (which mostly wait on services
# and timers, as these wait on the cloud's: RPC timeouts, heartbeats, restarts), so that neither waits for the
# other. Their output is printed at the end, in one piece.
os_job=""
if [ "$with_openstack" = 1 ]; then
  (
    start_cloud || exit 1
    [ $# -gt 0 ] || vitest openstack --project openstack
  ) >.stack/checks/openstack-tests.log 2>&1 &
  os_job=$!
fi
# Waits for the background job of the cloud; its status.
os_job_done() {
  [ -n "$os_job" ] || return 0
  local status=0
  wait "$os_job" || status=$?
  os_job=""
  return "$status"
}

rc=0
if [ $# -gt 0 ]; then
  # Arguments (a project, a file name): one run, as asked (once the cloud is up, when it is asked for).
  if ! os_job_done; then
    cat .stack/checks/openstack-tests.log
    exit 1
  fi
  vitest run "$@" || rc=$?
else
  # The integration files run as two jobs side by side on the shared stack, the OpenStack tests beside them from the
  # moment the cloud is up (three vitest runs; their files share no topic, index or pager host: harness.ts):
  # 1. in the foreground, one after another, every file but the AMQP files (about 21 min: the run's critical path);
  # 2. in the background, from the start: the AMQP files, those that stop and start RabbitMQ (they call
  #    rabbitOutage(: picked by what they do, not by their name). Their outages are of the tests' own node
  #    (scripts/stack.sh's rabbitmq), not the host's that the cloud's services use, so they need not wait for the
  #    cloud's tests (they did, when they faulted the host's node: processor-handover's 45 s outage broke the drift
  #    test's nova-compute restart in a CI run; 6.7 min more at the end of every run). Then the unit tests (CPU
  #    only), two files at a time (one per core; they share nothing), at nice 5: they take mostly the CPU the
  #    integration tests leave idle while waiting on services and timers. (Run in the foreground while the cloud's
  #    tests were finishing, they added 4.8 min to a CI-like run. At nice 10 they ran 35-60 times slower than on a
  #    quiet machine, so a test that keeps its worker's event loop for 1-2 s kept it past vitest's fixed minute, and
  #    vitest failed the run with every test passed: "Timeout calling onTaskUpdate", CI on d6f7170. Those blocks:
  #    test/event-loop-watch.ts.)
  # The background job's output and the cloud's are printed after the foreground's, each in one piece.
  others=()
  amqp=()
  for f in test/integration/*.test.ts; do
    case $f in
      */openstack-live.test.ts) ;;
      *) if grep -q 'rabbitOutage(' "$f"; then amqp+=("$f"); else others+=("$f"); fi ;;
    esac
  done
  (
    side_rc=0
    vitest integration-amqp --project integration "${amqp[@]}" >.stack/checks/amqp-tests.log 2>&1 || side_rc=1
    renice -n 5 "$BASHPID" >/dev/null
    vitest unit --project unit --fileParallelism --maxWorkers=2 --minWorkers=1 >.stack/checks/unit-tests.log 2>&1 || side_rc=1
    exit "$side_rc"
  ) &
  side_job=$!
  vitest integration --project integration "${others[@]}" 2>&1 | tee .stack/checks/integration-tests.log || rc=1
  if [ "$with_openstack" = 1 ]; then
    os_job_done || rc=1
    echo "test: the OpenStack tests (run beside the integration tests; their output):"
    cat .stack/checks/openstack-tests.log
  fi
  wait "$side_job" || rc=1
  side_job=""
  echo "test: the AMQP files (run beside the other integration files; their output):"
  cat .stack/checks/amqp-tests.log
  echo "test: the unit tests (run after the AMQP files, at nice 5; their output):"
  cat .stack/checks/unit-tests.log
fi

# One plain closing line that any CI reads: "N passed, N failed", over every run above; then each failed test by
# file and name, with the first line of its error (a CI that keeps only the tail of the output still shows which).
# shellcheck disable=SC2016 # (JavaScript's template literals, not the shell's)
node -e '
  const fs = require("fs");
  const path = require("path");
  let passed = 0, failed = 0, skipped = 0, files = 0;
  const failures = [];
  for (const f of fs.readdirSync(process.argv[1]).filter((f) => f.endsWith(".json"))) {
    const r = JSON.parse(fs.readFileSync(`${process.argv[1]}/${f}`, "utf8"));
    passed += r.numPassedTests; failed += r.numFailedTests || r.numFailedTestSuites || 0; skipped += r.numPendingTests + r.numTodoTests;
    files++;
    for (const suite of r.testResults ?? []) {
      const file = path.relative(process.cwd(), suite.name ?? "?");
      const tests = (suite.assertionResults ?? []).filter((t) => t.status === "failed");
      for (const t of tests) failures.push(`${file} > ${t.fullName ?? t.title}: ${String(t.failureMessages?.[0] ?? "").split("\n")[0].slice(0, 300)}`);
      if (!tests.length && suite.status === "failed") failures.push(`${file}: ${String(suite.message ?? "").split("\n")[0].slice(0, 300)}`);
    }
  }
  if (!files) { console.log("tests: no test report was written"); process.exit(1); }
  // Errors outside any test (vitest'"'"'s "Unhandled Errors": the run fails, every test passed or not), from the runs'"'"' logs.
  const errors = [];
  for (const log of process.argv.slice(2).filter((f) => fs.existsSync(f))) {
    const lines = fs.readFileSync(log, "utf8").replace(/\x1b\[[0-9;]*m/g, "").split("\n");
    lines.forEach((l, i) => {
      if (/^ *Unhandled (Error|Rejection) *$/.test(l.replace(/⎯/g, ""))) errors.push(`${path.basename(log)}: ${(lines.slice(i + 1).find((x) => x.trim()) ?? "").trim().slice(0, 300)}`);
    });
  }
  console.log(`tests: ${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : "") + (errors.length ? `, ${errors.length} error${errors.length === 1 ? "" : "s"} outside tests` : ""));
  for (const line of failures) console.log(`  failed: ${line}`);
  for (const line of errors) console.log(`  error: ${line}`);
' "$results" .stack/checks/integration-tests.log .stack/checks/amqp-tests.log .stack/checks/unit-tests.log .stack/checks/openstack-tests.log || rc=1
exit "$rc"
