#!/usr/bin/env bash
# Lints every shell script of the repository with shellcheck: the files under scripts/ that end in .sh or start
# with a sh/bash shebang, and CI's entry point .ci/run. Sourced files are followed (-x) from the sourcing
# script's directory, so `# shellcheck source=lib/service.sh` resolves as `source "$SCRIPT_DIR/lib/service.sh"`
# does. Zero warnings is the bar: a finding is fixed, or disabled on its line with the reason beside it.
#   scripts/shellcheck.sh          lint them all (exit 1 on any finding, 2 without shellcheck)
#   scripts/shellcheck.sh --list   print the files it lints, one a line
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

shell_scripts() {
  local f first
  while IFS= read -r f; do
    first=""
    IFS= read -r first <"$f" || true
    if [[ $f == *.sh || $first =~ ^#!.*[/[:space:]](ba)?sh([[:space:]]|$) ]]; then echo "$f"; fi
  done < <(find scripts -type f -not -path '*/node_modules/*' | LC_ALL=C sort)
  echo .ci/run
}

case ${1:-} in
  --list) shell_scripts; exit 0 ;;
  -h|--help) sed -n '2,7s/^# \{0,1\}//p' "$0"; exit 0 ;;
  "") ;;
  *) echo "usage: scripts/shellcheck.sh [--list]" >&2; exit 2 ;;
esac

if ! command -v shellcheck >/dev/null 2>&1; then
  echo "shellcheck: not installed; run: sudo scripts/test-deps.sh install" >&2
  exit 2
fi
mapfile -t files < <(shell_scripts)
shellcheck -x --source-path=SCRIPTDIR "${files[@]}"
echo "shellcheck: ${#files[@]} scripts, no findings ($(shellcheck --version | sed -n 's/^version: //p'))"
