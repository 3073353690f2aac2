#!/usr/bin/env bash
# CI: the README's first command, as a new user runs it. bin/demo on this clone (its own
# PostgreSQL in var/pg, the development cloud, worker + beat, runserver), checked over HTTP by
# .ci/demo_check.py; then stopped, started again and checked that the data stayed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PORT="${DEMO_PORT:-18000}" DEVCLOUD_PORT="${DEMO_DEVCLOUD_PORT:-18775}"
export TEACHCLOUD_DEMO_PG_PORT="${DEMO_PG_PORT:-55439}"
BASE="http://127.0.0.1:${PORT}"
LOG=test-artifacts/demo
mkdir -p "$LOG"
if [ -e var ] && [ "${CI:-}" != true ]; then
  echo "this stage starts the demo from scratch: move var/ (your demo's data) away first" >&2; exit 1
fi
rm -rf var  # a fresh clone has none

demo_pid=""
stop_demo() {
  [ -n "$demo_pid" ] || return 0
  kill -TERM "$demo_pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 1; done
  kill -KILL "$demo_pid" 2>/dev/null || true
  wait "$demo_pid" 2>/dev/null || true
  demo_pid=""
}
trap 'stop_demo; bin/demo-db stop || true' EXIT

answers() { .venv/bin/python -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$1" 2>/dev/null; }

start_demo() {  # start_demo <log name>
  setsid bin/demo >"$LOG/$1.log" 2>&1 &
  demo_pid=$!
  for _ in $(seq 1 600); do
    if answers "$BASE/accounts/login/"; then return 0; fi
    kill -0 "$demo_pid" 2>/dev/null || { tail -50 "$LOG/$1.log"; echo "bin/demo exited" >&2; exit 1; }
    sleep 1
  done
  tail -50 "$LOG/$1.log"
  echo "the demo portal did not answer in 10 minutes" >&2
  exit 1
}

on_failure() { tail -40 "$LOG"/*.log var/log/*.log 2>/dev/null || true; }

echo "--- first start"
start_demo first
.venv/bin/python .ci/demo_check.py "$BASE" first || { on_failure; exit 1; }
stop_demo
bin/demo-db status && { echo "bin/demo left its PostgreSQL running after it stopped" >&2; exit 1; }

echo "--- second start (data kept)"
start_demo again
.venv/bin/python .ci/demo_check.py "$BASE" again || { on_failure; exit 1; }
stop_demo
grep -iE "database is locked|no such function" var/log/*.log "$LOG"/*.log && {
  echo "the demo logged a database error" >&2; exit 1; }
echo "demo: green"
