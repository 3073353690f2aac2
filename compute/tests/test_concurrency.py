"""Two processes race for the last vCPU on PostgreSQL (SPEC Compute 2: the check and the
reservation are atomic): exactly one create wins, the other is refused with the numbers.

The test holds the project row locked while both `server_create` calls start in their own
processes, waits until PostgreSQL shows both waiting for that lock (so both have passed every
check made before the reservation), then lets them go at the same instant."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection, transaction

from billing.models import Holding
from compute.models import Server
from compute.services import server_create
from compute.tests.support import flavor, image, prepare, set_limit
from teachcloud.testing.factories import UserFactory, make_world
from tenancy.models import Project
from tenancy.services import membership_add

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)

CHILD = """
import json, sys
import django
django.setup()
from accounts.models import User
from compute.models import Flavor, Image, Server
from compute.services import server_create
from teachcloud.errors import ServiceError
from tenancy.models import Project

user_id, project_id, flavor_id, image_id, name = sys.argv[1:6]
try:
    server = server_create(
        actor=User.objects.get(pk=user_id),
        project=Project.objects.get(pk=project_id),
        name=name,
        flavor=Flavor.objects.get(pk=flavor_id),
        image=Image.objects.get(pk=image_id),
    )
except ServiceError as exc:
    print(json.dumps({"code": exc.code, "detail": exc.detail}))
else:
    print(json.dumps({"created": server.pk, "status": Server.objects.get(pk=server.pk).status}))
"""


def database_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def start_create(user, project, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            str(user.pk),
            str(project.pk),
            str(flavor("m1.tiny").pk),
            str(image().pk),
            name,
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "teachcloud.settings.test",
            "DATABASE_URL": database_url(),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def waiting_for_the_project_lock() -> int:
    with connection.cursor() as cursor:
        # Inside a transaction PostgreSQL keeps showing the same activity snapshot: drop it.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND pid <> pg_backend_pid() AND query ILIKE %s",
            ["%tenancy_project%FOR UPDATE%"],
        )
        return cursor.fetchone()[0]


def race(project: Project, contenders: list[tuple[object, str]]) -> list[dict]:
    """Start one create per (user, name) while the project row is locked; release it once all
    are queued on it; return what each process printed."""
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project.pk)
        procs = [start_create(user, project, name) for user, name in contenders]
        deadline = time.monotonic() + 60
        while waiting_for_the_project_lock() < len(procs):
            for proc in procs:
                assert proc.poll() is None, proc.communicate()
            if time.monotonic() > deadline:
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT pid, state, wait_event_type, wait_event, left(query, 300) "
                        "FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
                    )
                    activity = cursor.fetchall()
                for proc in procs:
                    proc.kill()
                activity = [activity, [proc.communicate() for proc in procs]]
                raise AssertionError(f"the creates never queued on the project row: {activity}")
            time.sleep(0.05)
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.fixture
def w(settings):
    # A transactional test starts from a flushed database: put back billing's seed rows.
    importlib.import_module("billing.migrations.0002_defaults").forwards(apps, None)
    return prepare(make_world(), settings)


def test_two_creates_race_for_the_members_last_vcpu(w):
    set_limit(w, w.member, (2, 16, 200))
    server_create(
        actor=w.member, project=w.project, name="first", flavor=flavor("m1.tiny"), image=image()
    )
    results = race(w.project, [(w.member, "left"), (w.member, "right")])

    created = [r for r in results if "created" in r]
    refused = [r for r in results if "code" in r]
    assert len(created) == 1 and len(refused) == 1, results
    assert refused[0]["code"] == "over_member_limit"
    assert "vCPU: 2 held + 1 asked > 2" in refused[0]["detail"]
    assert created[0]["status"] == "active"  # the winner was built in the cloud
    held = Holding.objects.filter(project=w.project, user=w.member, end__isnull=True)
    assert sorted(held.values_list("vcpus", flat=True)) == [1, 1]
    assert Server.objects.filter(project=w.project).count() == 2


def test_two_members_race_for_the_projects_last_vcpu(w):
    from billing.services import allocation_set, target_of

    allocation_set(
        actor=w.domain_admin, target=target_of(project=w.project), vcpus=2, ram_gib=64, disk_gib=500
    )
    server_create(
        actor=w.member, project=w.project, name="first", flavor=flavor("m1.tiny"), image=image()
    )
    rivals = []
    for n in range(2):
        user = UserFactory(home_domain=w.domain, username=f"rival{n}")
        membership_add(actor=w.project_admin, project=w.project, user=user)
        set_limit(w, user, (4, 16, 200))
        rivals.append(user)

    results = race(w.project, [(rivals[0], "mine"), (rivals[1], "mine")])

    created = [r for r in results if "created" in r]
    refused = [r for r in results if "code" in r]
    assert len(created) == 1 and len(refused) == 1, results
    assert refused[0]["code"] == "over_project_allocation"
    assert "vCPU: 2 held + 1 asked > 2" in refused[0]["detail"]
    open_vcpus = Holding.objects.filter(project=w.project, end__isnull=True)
    assert sum(open_vcpus.values_list("vcpus", flat=True)) == 2
