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
# The live OpenStack (scripts/openstack.sh: ~1 min with its databases in place, ~3 min from empty ones) starts in
# the background beside the others, mostly waiting on its own services; the tests wait for it below.
# Only for the OpenStack tests (npm run test:openstack sets STACKWATCH_TEST_OPENSTACK=1).
openstack_pid=""
if [ "${STACKWATCH_TEST_OPENSTACK:-}" = 1 ] && ! scripts/openstack.sh status >/dev/null 2>&1; then
  extra+=(openstack)
  scripts/openstack.sh start >.stack/checks/openstack-start.log 2>&1 &
  openstack_pid=$!
fi
[ ${#started[@]} -eq 0 ] || scripts/stack.sh start "${started[@]}"
for svc in ${extra[@]+"${extra[@]}"}; do [ "$svc" = openstack ] || "scripts/$svc.sh" start; done
if [ -n "$openstack_pid" ]; then
  if wait "$openstack_pid"; then
    tail -n 2 .stack/checks/openstack-start.log
  else
    echo "test: scripts/openstack.sh start FAILED:"
    tail -n 40 .stack/checks/openstack-start.log | sed 's/^/  /'
    exit 1
  fi
fi

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

results=.stack/test-results.json
rc=0
npx vitest run --reporter=default --reporter=json --outputFile="$results" "$@" || rc=$?

# One plain closing line that any CI reads: "N passed, N failed".
# shellcheck disable=SC2016 # (JavaScript's template literals, not the shell's)
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
' "$results" || true
exit "$rc"
