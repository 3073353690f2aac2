#!/usr/bin/env bash
# CI stage: production as requirements.txt installs it (issue 11).
#
# A fresh virtualenv from requirements.txt alone (no dev requirements) runs TeachCloud under
# teachcloud.settings.production against real services on loopback: its own PostgreSQL 15
# (password authentication), Redis (broker and cache, with a password), an SMTP server (aiosmtpd,
# writing a Maildir) and the development cloud. Then migrate, collectstatic, check --deploy,
# seed_demo; gunicorn, a Celery worker and Celery beat as separate processes; and a round trip
# through each of them (.ci/production_client.py, on the fresh virtualenv's packages only):
# a portal login and an API token, a student's VM built by the worker until ACTIVE, emails
# arriving at the SMTP server, beat's hourly billing task sent as beat sends it, its charges
# posted and `billing_check` clean. Exits non-zero on any failure, printing every log; always
# stops what it started.
#
# The SMTP server and the development cloud are test doubles, not part of the product: they run
# from the dev virtualenv (.venv), which has aiosmtpd.
source "$(dirname "$0")/../bin/_env.sh"
ensure_deb /usr/lib/postgresql/15/bin/initdb postgresql-15
ensure_deb redis-server redis-server
ensure_venv requirements-dev.txt

PG_BIN=/usr/lib/postgresql/15/bin
DEV_PY="$ROOT/.venv/bin/python"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tc-production-XXXXXX")"
chmod 755 "$WORK"
LOGS="$WORK/logs"
mkdir -p "$LOGS"
VENV="$WORK/venv"
PGDIR="$WORK/pg"
unset PYTHONPATH PIP_REQUIRE_VIRTUALENV

step() { echo "--- $* ($(date -u +%H:%M:%S))"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { "$DEV_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# wait_for <seconds> <what> <command...>: run the command every half second until it succeeds.
wait_for() {
  local seconds="$1" what="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$what did not come up within ${seconds}s"
    sleep 0.5
  done
}
listening() { "$DEV_PY" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' "$1"; }

declare -A PIDS=()
PG_STARTED=0
finish() {
  local rc=$?
  set +e
  if [ "$rc" != 0 ]; then
    echo
    echo "=== production stage FAILED (exit $rc); logs (the product's last):"
    local log lines
    for log in "$PGDIR/postgres.log" "$LOGS"/{initdb,redis,smtp,devcloud,migrate,collectstatic,seed_demo}.log \
      "$LOGS"/{gunicorn,worker,beat}.log; do
      [ -f "$log" ] || continue
      case "$(basename "$log")" in gunicorn.log | worker.log | beat.log) lines=300 ;; *) lines=30 ;; esac
      echo "----- $(basename "$log") (last $lines lines)"
      tail -n "$lines" "$log"
    done
  fi
  # Stop in reverse order of dependence: the product first, then the services it used.
  for name in beat worker gunicorn devcloud smtp redis; do
    local pid="${PIDS[$name]:-}"
    [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
  done
  for name in beat worker gunicorn devcloud smtp redis; do
    local pid="${PIDS[$name]:-}"
    [ -n "$pid" ] || continue
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  if [ "$PG_STARTED" = 1 ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop >/dev/null 2>&1
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

step "a fresh virtualenv from requirements.txt alone (hash-checking mode)"
"$(python311)" -m venv "$VENV"
venv_install "$VENV" "$ROOT/requirements.txt"
_pip "$VENV" check
"$VENV/bin/python" -c 'import kombu.transport.redis, celery, django, gunicorn, openstack, psycopg2, requests'
if "$VENV/bin/python" -c 'import aiosmtpd' 2>/dev/null || "$VENV/bin/python" -c 'import pytest' 2>/dev/null; then
  fail "the production virtualenv has development packages: it must come from requirements.txt alone"
fi
PY="$VENV/bin/python"

step "PostgreSQL 15 on 127.0.0.1 (password authentication)"
PG_PORT="$(free_port)"
PG_PASSWORD="$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
mkdir -p "$PGDIR"
[ "$(id -u)" = 0 ] && chown postgres: "$PGDIR"
as_postgres "$PG_BIN/initdb" -D "$PGDIR/data" -U postgres --auth-local=trust \
  --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-sync >"$LOGS/initdb.log"
PG_STARTED=1
as_postgres "$PG_BIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/postgres.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=$PGDIR -c fsync=off" \
  start >/dev/null
as_postgres "$PG_BIN/psql" -h "$PGDIR" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -q \
  -c "CREATE ROLE teachcloud LOGIN PASSWORD '$PG_PASSWORD'" \
  -c "CREATE DATABASE teachcloud OWNER teachcloud"

step "Redis on 127.0.0.1 (broker and cache, with a password)"
REDIS_PORT="$(free_port)"
REDIS_PASSWORD="$("$PY" -c 'import secrets; print(secrets.token_hex(16))')"
mkdir -p "$WORK/redis"
redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK/redis" --save '' \
  --appendonly no --requirepass "$REDIS_PASSWORD" >"$LOGS/redis.log" 2>&1 &
PIDS[redis]=$!
REDIS_URL="redis://:$REDIS_PASSWORD@127.0.0.1:$REDIS_PORT/0"
wait_for 20 "Redis" "$PY" -c 'import redis, sys; redis.Redis.from_url(sys.argv[1]).ping()' "$REDIS_URL"

step "SMTP server (aiosmtpd) on 127.0.0.1, delivering into a Maildir"
SMTP_PORT="$(free_port)"
MAILDIR="$WORK/maildir"
"$DEV_PY" -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" -c aiosmtpd.handlers.Mailbox "$MAILDIR" \
  >"$LOGS/smtp.log" 2>&1 &
PIDS[smtp]=$!
wait_for 20 "the SMTP server" listening "$SMTP_PORT"

step "development cloud (simulated OpenStack) on 127.0.0.1"
DEVCLOUD_PORT="$(free_port)"
"$DEV_PY" -m devcloud --host 127.0.0.1 --port "$DEVCLOUD_PORT" --state "$WORK/devcloud.json" \
  --delay 1 >"$LOGS/devcloud.log" 2>&1 &
PIDS[devcloud]=$!
wait_for 30 "the development cloud" "$DEV_PY" -c \
  'import sys, urllib.request; urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/_devcloud", timeout=1)' \
  "$DEVCLOUD_PORT"

WEB_PORT="$(free_port)"
export DJANGO_SETTINGS_MODULE=teachcloud.settings.production
DJANGO_SECRET_KEY="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(64))')"
export DJANGO_SECRET_KEY
export DATABASE_URL="postgres://teachcloud:$PG_PASSWORD@127.0.0.1:$PG_PORT/teachcloud"
export CELERY_BROKER_URL="$REDIS_URL"
export EMAIL_URL="smtp://127.0.0.1:$SMTP_PORT"
export DJANGO_ALLOWED_HOSTS=127.0.0.1
export TEACHCLOUD_BASE_URL="https://127.0.0.1:$WEB_PORT"
export DJANGO_MEDIA_ROOT="$WORK/media"
# The development cloud as openstack.connect() keyword arguments, as teachcloud/settings/local.py
# builds them for the demo.
TEACHCLOUD_CLOUD="$("$PY" - "$DEVCLOUD_PORT" <<'PY'
import json, sys
print(json.dumps({
    "auth_type": "password",
    "auth": {
        "auth_url": f"http://127.0.0.1:{sys.argv[1]}/identity/v3",
        "username": "admin",
        "password": "devcloud",
        "project_name": "admin",
        "user_domain_name": "Default",
        "project_domain_name": "Default",
    },
    "region_name": "RegionOne",
    "identity_api_version": "3",
}))
PY
)"
export TEACHCLOUD_CLOUD TEACHCLOUD_CLOUD_SIMULATED=true
DEMO_PASSWORD="$("$PY" -c 'import secrets; print("tc-" + secrets.token_urlsafe(12))')"
manage() { "$PY" manage.py "$@"; }

step "migrate, collectstatic, check --deploy (production settings, fresh virtualenv)"
manage migrate --noinput >"$LOGS/migrate.log"
manage collectstatic --noinput --clear >"$LOGS/collectstatic.log"
tail -n 1 "$LOGS/collectstatic.log"
manage check --deploy --fail-level WARNING

step "seed_demo (the catalogue and the seed's VMs from the development cloud; a low-balance email)"
manage seed_demo --password "$DEMO_PASSWORD" >"$LOGS/seed_demo.log"
grep -E '^(Domains|域)' "$LOGS/seed_demo.log" || tail -n 3 "$LOGS/seed_demo.log"
# Charging charges only complete clock hours: let the allocations the seed made have started
# three hours ago (everything moves together, so the allocation history stays consistent).
manage shell -v 0 -c '
from datetime import timedelta
from django.db.models import F
from billing.models import Allocation
shift = timedelta(hours=3)
moved = Allocation.objects.update(start=F("start") - shift, end=F("end") - shift)
print(f"{moved} allocations now started 3 hours earlier")
'

step "gunicorn, Celery worker and Celery beat (separate processes, fresh virtualenv)"
# gunicorn 27's control socket defaults to ~/.gunicorn/gunicorn.ctl, shared by every gunicorn of
# the user (the schemathesis stage's, a developer's): this one gets its own.
"$VENV/bin/gunicorn" teachcloud.wsgi:application --bind "127.0.0.1:$WEB_PORT" --workers 2 \
  --control-socket "$WORK/gunicorn.ctl" --access-logfile - --error-logfile - \
  >"$LOGS/gunicorn.log" 2>&1 &
PIDS[gunicorn]=$!
"$VENV/bin/celery" -A teachcloud worker --loglevel INFO --concurrency 2 \
  --hostname production-stage@ci >"$LOGS/worker.log" 2>&1 &
PIDS[worker]=$!
"$VENV/bin/celery" -A teachcloud beat --loglevel INFO --pidfile "$WORK/beat.pid" \
  >"$LOGS/beat.log" 2>&1 &
PIDS[beat]=$!
wait_for 60 "gunicorn" "$PY" -c \
  'import requests, sys; requests.get(sys.argv[1], headers={"X-Forwarded-Proto": "https"}, timeout=2).raise_for_status()' \
  "http://127.0.0.1:$WEB_PORT/accounts/login/"
wait_for 60 "the Celery worker" "$VENV/bin/celery" -A teachcloud inspect ping --timeout 2 \
  --destination production-stage@ci
# Beat has started when its log says so and it has written the schedule of teachcloud/celery.py
# into django-celery-beat's tables (the DatabaseScheduler).
beat_ready() {
  grep -q 'beat: Starting' "$LOGS/beat.log" && manage shell -v 0 -c '
from django_celery_beat.models import PeriodicTask
from teachcloud.celery import app
missing = set(app.conf.beat_schedule) - set(PeriodicTask.objects.values_list("name", flat=True))
raise SystemExit(1 if missing else 0)
'
}
wait_for 60 "Celery beat (its schedule in the database)" beat_ready
grep -m1 'beat: Starting' "$LOGS/beat.log"
for name in gunicorn worker beat; do
  kill -0 "${PIDS[$name]}" 2>/dev/null || fail "$name exited"
done

step "round trip: portal login, API token, a student's VM, email"
"$PY" .ci/production_client.py --base "http://127.0.0.1:$WEB_PORT" --maildir "$MAILDIR" \
  --password "$DEMO_PASSWORD"

step "the hourly charging task, sent as beat sends it, through Redis to the worker"
manage shell -v 0 -c '
import json
from django_celery_beat.models import PeriodicTask
from billing.models import Transaction
from teachcloud.celery import app
assert not Transaction.objects.filter(kind="resource_charge").exists(), "charges before the run"
entry = PeriodicTask.objects.get(name="billing-hourly")
assert entry.enabled and entry.crontab is not None, entry
result = app.send_task(
    entry.task,
    args=json.loads(entry.args or "[]"),
    kwargs=json.loads(entry.kwargs or "{}"),
    headers=json.loads(entry.headers or "{}"),
)
print(f"sent {entry.task} (beat entry {entry.name!r}, {entry.crontab}) as task {result.id}")
'
charges_posted() {
  manage shell -v 0 -c '
from billing.models import Transaction
n = Transaction.objects.filter(kind="resource_charge").count()
print(n)
raise SystemExit(0 if n else 1)
'
}
wait_for 120 "resource charges from the worker's billing run" charges_posted
grep -m1 -E 'Task billing\.tasks\.run_billing\[[^]]+\] succeeded' "$LOGS/worker.log" \
  || fail "the worker's log does not show billing.tasks.run_billing succeeding"
manage shell -v 0 -c '
from billing.models import ChargeLine, Transaction
charges = Transaction.objects.filter(kind="resource_charge")
hours = charges.values("period_start").distinct().count()
lines = ChargeLine.objects.filter(transaction__in=charges).count()
print(f"{charges.count()} resource_charge transactions over {hours} hours, {lines} charge lines")
'
manage billing_check

step "logs: no server error and no traceback"
if grep -n -E 'Traceback|Internal Server Error|CRITICAL' "$LOGS/gunicorn.log" "$LOGS/worker.log" "$LOGS/beat.log"; then
  fail "errors in the gunicorn/worker/beat logs"
fi
for name in gunicorn worker beat; do
  kill -0 "${PIDS[$name]}" 2>/dev/null || fail "$name exited"
done
echo "production stage: OK"
