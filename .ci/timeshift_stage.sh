#!/usr/bin/env bash
# Time bombs (issue 11): the date-sensitive tests once more with the clock of the WHOLE process
# tree moved ahead by Debian's libfaketime — pytest, the PostgreSQL server the test settings
# start (teachcloud/testing/pgcluster.py: initdb/pg_ctl through runuser, which keeps LD_PRELOAD
# and FAKETIME), the development cloud and any helper process:
#   1. 14 months ahead, the clock ticking;
#   2. from a couple of minutes before an Asia/Shanghai month end at least 14 months ahead, so
#      the run crosses a local midnight that is also the 1st of a month;
#   3. the same before a Shanghai year end.
# The instants are computed from the real date. A test that only passes on the date it was
# written, or not across a month end, fails here. The plugin teachcloud/testing/timeshift.py
# checks that Python and PostgreSQL both read the moved clock and that runs 2 and 3 crossed
# their instant.
#
# Usage: .ci/timeshift_stage.sh [run ...]   (runs: ahead, month-end, year-end; default all)
#   TIMESHIFT_LEAD_SECONDS  how long before the month/year end runs 2 and 3 start (default 150)
#   TIMESHIFT_TIMEOUT       seconds each run may take before it is killed (default 1200)
#   TIMESHIFT_TESTS         the test paths and pytest selection options (default: the list below)
#   extra pytest arguments: TIMESHIFT_PYTEST_ARGS (e.g. "-x -k fees")
#
# libfaketime notes (0.9.10, Debian bookworm):
# - Relative offsets (FAKETIME="+<seconds>") rather than an absolute start ("@2028-…"): with
#   "@" every newly executed process starts its own clock at that instant, so the PostgreSQL
#   server (started seconds after pytest) would run behind it. FAKETIME_DONT_RESET=1 carries
#   the clock on through libfaketime's shared memory, but that segment is private to its
#   creator (root) and the server runs as `postgres`, which starts from the instant again. An
#   offset computed from the target instant gives every process the same clock.
# - DONT_FAKE_MONOTONIC / FAKETIME_DONT_FAKE_MONOTONIC must stay unset: with it libfaketime's
#   clock_nanosleep() rejects the absolute deadlines Python's time.sleep() passes (EINVAL).
# - A signal handler that interrupts a blocking call libfaketime wraps (epoll_wait, poll, …)
#   reads the real clock, so PostgreSQL's own timers (deadlock_timeout, statement_timeout) do
#   not fire: a deadlock hangs instead of failing. Tests that need the deadlock detector
#   (tenancy/tests/test_concurrency.py) are not in the subset, and every run has a timeout.
source "$(dirname "$0")/../bin/_env.sh"
ensure_deb faketime faketime
ensure_deb /usr/lib/postgresql/15/bin/initdb postgresql-15
ensure_deb msgfmt gettext
ensure_deb /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc fonts-wqy-zenhei  # statement PDFs
ensure_venv requirements-dev.txt

LIBFAKETIME="$(dpkg -L libfaketime 2>/dev/null | grep -m1 '/libfaketime\.so\.1$' || true)"
[ -n "$LIBFAKETIME" ] && [ -e "$LIBFAKETIME" ] || { echo "libfaketime.so.1 not found" >&2; exit 1; }

# What depends on the date: charging and fees, enforcement (locks, budgets, low balance, purge
# reminders at 30/7/1 days, purge after 18 months, anonymisation), statements and reports
# (periods in local dates, last month, charts over 30 days), course end (also as the sync sees
# it), assistant and enrollment-code expiry. Integration tests (Redis, SMTP, Chromium),
# tests/browser and the webhook formats and address guard stay with the normal suite.
DEFAULT_TESTS=(
  billing/tests
  reports/tests
  compute/tests/test_course.py
  compute/tests/test_enforcement.py
  compute/tests/test_reservation.py
  compute/tests/test_review_fixes.py
  tenancy/tests/test_services.py
  tenancy/tests/test_permissions.py
  tenancy/tests/test_views.py
  accounts/tests/test_services.py
  accounts/tests/test_views.py
  accounts/tests/test_roster_resume.py
  --ignore=billing/tests/test_webhooks.py
  --ignore=billing/tests/test_webhook_guard.py
)
if [ -n "${TIMESHIFT_TESTS:-}" ]; then read -r -a TESTS <<< "$TIMESHIFT_TESTS"; else TESTS=("${DEFAULT_TESTS[@]}"); fi
read -r -a EXTRA <<< "${TIMESHIFT_PYTEST_ARGS:-}"
LEAD="${TIMESHIFT_LEAD_SECONDS:-150}"
RUN_TIMEOUT="${TIMESHIFT_TIMEOUT:-1200}"

# Instants (epoch seconds), from the real date. GNU date; Asia/Shanghai has no DST.
AHEAD="$(date -d '+14 months' +%s)"
MONTH_AHEAD="$(TZ=Asia/Shanghai date -d "@$AHEAD" +%Y-%m-01)"
MONTH_END="$(TZ=Asia/Shanghai date -d "$MONTH_AHEAD +1 month" +%s)"     # 00:00 on the next 1st
YEAR_END="$(TZ=Asia/Shanghai date -d "$(( $(TZ=Asia/Shanghai date -d "@$AHEAD" +%Y) + 1 ))-01-01" +%s)"

shanghai() { TZ=Asia/Shanghai date -d "@$1" '+%Y-%m-%d %H:%M:%S %Z'; }

mkdir -p test-artifacts
# The runs' throw-away PostgreSQL clusters live here (pgcluster uses TMPDIR), so that a run
# killed by its timeout leaves no server behind: they are stopped and removed at the end.
STAGE_TMP="$(mktemp -d "${TMPDIR:-/tmp}/tc-timeshift.XXXXXX")"
chmod 755 "$STAGE_TMP"  # the server runs as the postgres user when we are root
cleanup() {
  local data
  for data in "$STAGE_TMP"/teachcloud-pg-*/data; do
    [ -d "$data" ] || continue
    if [ "$(id -u)" = 0 ]; then
      runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D "$data" -m immediate stop >/dev/null 2>&1 || true
    else
      /usr/lib/postgresql/15/bin/pg_ctl -D "$data" -m immediate stop >/dev/null 2>&1 || true
    fi
  done
  rm -rf "$STAGE_TMP"
}
trap cleanup EXIT

run() {  # run <name> <fake start epoch> [<epoch the run must cross>]
  local name="$1" start="$2" cross="${3:-}"
  local offset=$(( start - $(date +%s) ))
  echo
  echo "--- timeshift run '$name': clock from $(shanghai "$start") (offset +${offset}s)${cross:+, crossing $(shanghai "$cross")}"
  # timeout runs on the real clock; everything it starts on the moved one. --ds: importing the
  # plugin imports the teachcloud package (its Celery app defaults DJANGO_SETTINGS_MODULE to the
  # local settings) before pytest-django reads pyproject.toml.
  set +e
  timeout --kill-after=30 "$RUN_TIMEOUT" \
    env PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" TMPDIR="$STAGE_TMP" LD_PRELOAD="$LIBFAKETIME${LD_PRELOAD:+:$LD_PRELOAD}" \
      FAKETIME="+$offset" TEACHCLOUD_TIMESHIFT_START="$start" TEACHCLOUD_TIMESHIFT_CROSS="$cross" \
    .venv/bin/pytest -p no:cacheprovider -p teachcloud.testing.timeshift \
      --ds=teachcloud.settings.test -m "not integration" \
      -o console_output_style=count -q "${EXTRA[@]}" "${TESTS[@]}" \
    2>&1 | tee "test-artifacts/timeshift-$name.log"
  local rc="${PIPESTATUS[0]}"
  set -e
  [ "$rc" != 124 ] && [ "$rc" != 137 ] || echo "timeshift run '$name' killed after ${RUN_TIMEOUT}s (a hang)"
  return "$rc"
}

RUNS=("$@")
[ "${#RUNS[@]}" -gt 0 ] || RUNS=(ahead month-end year-end)
failed=()
for name in "${RUNS[@]}"; do
  case "$name" in
    ahead) run ahead "$AHEAD" || failed+=("$name") ;;
    month-end) run month-end "$(( MONTH_END - LEAD ))" "$MONTH_END" || failed+=("$name") ;;
    year-end) run year-end "$(( YEAR_END - LEAD ))" "$YEAR_END" || failed+=("$name") ;;
    *) echo "unknown run: $name (ahead, month-end, year-end)" >&2; exit 2 ;;
  esac
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "timeshift stage FAILED: ${failed[*]} (logs: test-artifacts/timeshift-*.log)"
  exit 1
fi
echo "timeshift stage: all runs green"
