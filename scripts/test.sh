#!/usr/bin/env bash
# Every test stackwatch has: type check, unit tests, and integration tests against the real local stack
# (Kafka, Elasticsearch, Alertmanager, the pager webhook, Zabbix with MariaDB replication, Ceph), which it starts
# if needed and stops afterwards — only the services it started itself. Extra arguments go to vitest (e.g. --project unit, a file name).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -d node_modules ] || npm ci --no-audit --no-fund
# What tests use besides the services (promtool, oslo.messaging): installed now if missing, waiting for another
# apt-get's lock, never from inside a test.
scripts/test-deps.sh install

started=()
for svc in webhook alertmanager kafka elasticsearch kafka-secure elasticsearch-secure; do
  scripts/stack.sh status "$svc" >/dev/null 2>&1 || started+=("$svc")
done
# The collectors' real servers, each with its own script: Zabbix 6.0 with a MariaDB primary/replica pair, and a
# one-host Ceph cluster. Started here if down, stopped afterwards if started here.
extra=()
for svc in zabbix ceph; do
  scripts/$svc.sh status >/dev/null 2>&1 || extra+=("$svc")
done
stop_started() {
  for svc in ${extra[@]+"${extra[@]}"}; do scripts/$svc.sh stop || true; done
  [ ${#started[@]} -eq 0 ] || scripts/stack.sh stop "${started[@]}"
}
trap stop_started EXIT
[ ${#started[@]} -eq 0 ] || scripts/stack.sh start "${started[@]}"
for svc in ${extra[@]+"${extra[@]}"}; do scripts/$svc.sh start; done

echo "test: type check (tsc --noEmit)"
npx tsc --noEmit

mkdir -p .stack
results=.stack/test-results.json
rc=0
npx vitest run --reporter=default --reporter=json --outputFile="$results" "$@" || rc=$?

# One plain closing line that any CI reads: "N passed, N failed".
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const skipped = r.numPendingTests + r.numTodoTests;
  console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (skipped ? `, ${skipped} skipped` : ""));
' "$results" || true
exit "$rc"
