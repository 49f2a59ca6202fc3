#!/usr/bin/env bash
# Installs the real OpenStack messaging client (Debian's oslo.messaging + oslo.log, with kombu/amqp) that
# scripts/amqp-harness/harness.py runs on. Idempotent: does nothing when Debian's python3 already imports them.
# Needs root (apt-get). Debian's /usr/bin/python3 is used on purpose: a pyenv python3 first on PATH cannot see
# Debian's python3-* packages.
set -euo pipefail

PY=/usr/bin/python3
start=$(date +%s.%N)
elapsed() { awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

if [ -x "$PY" ] && "$PY" -c 'import oslo_messaging, oslo_log' >/dev/null 2>&1; then
  echo "amqp-harness: oslo.messaging and oslo.log already installed ($(elapsed) s)"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "amqp-harness: installing python3-oslo.messaging needs root (apt-get); run: sudo $0" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
pkgs=(python3 python3-oslo.messaging python3-oslo.log)
# A machine whose package lists were never fetched (fresh container) does not know the packages yet.
# (-o DPkg::Lock::Timeout: wait for another installer's dpkg lock instead of failing at once)
if ! apt-cache show python3-oslo.messaging >/dev/null 2>&1; then
  apt-get -o DPkg::Lock::Timeout=300 update -qq
fi
apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null

"$PY" -c 'import oslo_messaging, oslo_log' || {
  echo "amqp-harness: installed ${pkgs[*]} but $PY still cannot import oslo_messaging, oslo_log" >&2
  exit 1
}
echo "amqp-harness: installed ${pkgs[*]} in $(elapsed) s ($(dpkg-query -W -f='${Package} ${Version}, ' python3-oslo.messaging python3-oslo.log python3-kombu | sed 's/, $//'))"
