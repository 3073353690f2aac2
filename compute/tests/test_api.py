"""The compute API under /api/v1/: the catalogue with `fits`, servers and every action against
the development cloud over real HTTP, refusals as {code, detail}, the overview of a domain and a
member's room, the SPEC example, and the course end date on projects."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from billing import enforcement
from billing import services as billing_services
from billing.models import Holding
from compute import services
from compute.models import Flavor, Server
from compute.tests.support import FAST, allocate, flavor, image, mirror_catalogue, set_limit
from teachcloud.testing.factories import api_token
from tenancy.models import AuditEvent
from tenancy.services import membership_add

API = "/api/v1"


def client_for(user=None) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


@pytest.fixture
def w(world, settings):
    """The world with the cloud's catalogue, allocations (project 16 vCPU / 64 GiB / 1000 GiB)
    and the member's limit of 4 vCPU / 16 GiB / 200 GiB (each test starts on a fresh cloud)."""
    for name, value in FAST.items():
        setattr(settings, name, value)
    mirror_catalogue()
    allocate(world)
    set_limit(world, world.member, (4, 16, 200))
    return world


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """`with run(): client.post(...)`: the request, then the Celery tasks it sent (eager), as
    after a real commit."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def create(w, run, *, user=None, name="lab-1", flavor_name="m1.small", project=None) -> dict:
    with run():
        response = client_for(user or w.member).post(
            f"{API}/servers/",
            {
                "project": (project or w.project).pk,
                "name": name,
                "flavor": flavor(flavor_name).pk,
                "image": image().pk,
            },
            format="json",
        )
    assert response.status_code == 202, response.content
    return response.json()


def show(user, pk) -> dict:
    response = client_for(user).get(f"{API}/servers/{pk}/")
    assert response.status_code == 200, response.content
    return response.json()


# -- Catalogue --------------------------------------------------------------------------------


def test_flavors_of_a_project_say_whether_they_fit(w, run):
    create(w, run, flavor_name="m1.medium")  # holds 2 vCPU / 4 GiB / 40 GiB of 4 / 16 / 200
    response = client_for(w.member).get(f"{API}/flavors/?project={w.project.pk}&size=100")
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.json()["results"]}
    assert set(rows) == set(Flavor.objects.values_list("name", flat=True))
    for row in rows.values():
        expected = row["vcpus"] <= 2 and row["ram_gib"] <= 12 and row["disk_gib"] <= 160
        assert row["fits"] is expected, row
    assert rows["m1.medium"] | {"id": 0} == {
        "id": 0,
        "name": "m1.medium",
        "vcpus": 2,
        "ram_gib": 4,
        "disk_gib": 40,
        "ram_mib": 4096,
        "fits": True,
    }
    assert rows["m1.large"]["fits"] is False  # 4 vCPU > 2 left

    # Not a member: the project's flavors without `fits`; no project: `fits` is null too.
    staff = client_for(w.domain_admin).get(f"{API}/flavors/?project={w.project.pk}").json()
    assert {row["fits"] for row in staff["results"]} == {None}
    plain = client_for(w.member).get(f"{API}/flavors/").json()
    assert {row["fits"] for row in plain["results"]} == {None}


def test_catalogue_restrictions_scope_the_lists(w):
    tiny = flavor("m1.tiny")
    tiny.domains.set([w.other_domain])
    ubuntu = image("ubuntu-24.04")
    ubuntu.projects.set([w.other_project])
    image("debian-12").__class__.objects.filter(name="debian-12").update(enabled=False)

    def names(user, path):
        response = client_for(user).get(f"{API}/{path}")
        assert response.status_code == 200, response.content
        return {row["name"] for row in response.json()["results"]}

    assert "m1.tiny" not in names(w.member, "flavors/")
    assert "m1.tiny" not in names(w.member, f"flavors/?project={w.project.pk}")
    assert "m1.tiny" in names(w.other_admin, f"flavors/?project={w.other_project.pk}")
    assert "m1.tiny" in names(w.platform, "flavors/")
    assert "ubuntu-24.04" not in names(w.member, "images/")
    assert "ubuntu-24.04" in names(w.other_admin, "images/")
    assert "debian-12" not in names(w.platform, "images/")  # not offered: nobody sees it
    assert names(w.member, f"images/?project={w.project.pk}") == {"cirros-0.6", "rocky-9"}


def test_catalogue_filter_errors_are_400(w):
    for path in (
        f"flavors/?project={w.other_project.pk}",
        "flavors/?project=abc",
        "images/?project=0",
    ):
        response = client_for(w.member).get(f"{API}/{path}")
        assert response.status_code == 400, path
        body = response.json()
        assert body["code"] == "invalid" and "project" in body["fields"], body


# -- Servers: the lifecycle -------------------------------------------------------------------


def test_create_builds_in_the_cloud_and_every_action_works(w, run, devcloud):
    body = create(w, run)
    assert body["status"] in ("building", "active")
    assert body["owner"] == w.member.pk and body["project"] == w.project.pk
    assert (body["vcpus"], body["ram_gib"], body["disk_gib"]) == (1, 2, 20)
    pk = body["id"]
    server = show(w.member, pk)
    assert server["status"] == "active", server
    assert server["task"] == "" and server["fault"] == ""
    [ips] = server["addresses"].values()
    assert ips and all(ip.startswith("10.") for ip in ips)
    cloud = {s["id"]: s for s in devcloud.servers()}
    row = Server.objects.get(pk=pk)
    assert cloud[row.cloud_id]["status"] == "ACTIVE"

    client = client_for(w.member)
    with run():
        response = client.post(f"{API}/servers/{pk}/stop/", format="json")
    assert response.status_code == 202 and response.json()["task"] == "stopping"
    assert show(w.member, pk)["status"] == "stopped"
    assert show(w.member, pk)["stop_cause"] == "user"

    with run():
        response = client.post(f"{API}/servers/{pk}/start/")
    assert response.status_code == 202 and response.json()["task"] == "starting"
    assert show(w.member, pk)["status"] == "active"

    with run():
        response = client.post(f"{API}/servers/{pk}/reboot/", {"hard": True}, format="json")
    assert response.status_code == 202 and response.json()["task"] == "rebooting"
    assert show(w.member, pk)["status"] == "active"

    with run():
        response = client.patch(f"{API}/servers/{pk}/", {"name": "实验-2"}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "实验-2"
    assert {s["name"] for s in devcloud.servers()} == {"实验-2"}

    response = client.get(f"{API}/servers/{pk}/console/")
    assert response.status_code == 200
    assert "vnc" in response.json()["url"]

    holding = Holding.objects.get(pk=Server.objects.get(pk=pk).holding_id)
    assert holding.end is None
    with run():
        response = client.delete(f"{API}/servers/{pk}/")
    assert response.status_code == 202 and response.json()["task"] == "deleting"
    deleted = show(w.member, pk)
    assert deleted["status"] == "deleted" and deleted["deleted_at"]
    holding.refresh_from_db()
    assert holding.end is not None
    assert devcloud.servers() == []
    # Deleted servers leave the list unless asked for.
    assert client.get(f"{API}/servers/").json()["count"] == 0
    assert client.get(f"{API}/servers/?status=deleted").json()["count"] == 1


def test_actions_in_the_wrong_state_are_409(w, run):
    pk = create(w, run)["id"]
    client = client_for(w.member)
    response = client.post(f"{API}/servers/{pk}/start/")
    assert response.status_code == 409 and response.json()["code"] == "server_busy"
    with run():
        client.post(f"{API}/servers/{pk}/stop/")
    response = client.get(f"{API}/servers/{pk}/console/")
    assert response.status_code == 409
    assert response.json()["code"] == "server_not_running"


def test_spec_example_through_the_api(w, run):
    """SPEC Compute 3: limit 3 vCPU / 8 GiB, holding 2 / 4: 2 / 4 refused, 1 / 4 created."""
    set_limit(w, w.member, (3, 8, 200))
    create(w, run, name="first", flavor_name="c2.medium")  # 2 vCPU / 4 GiB / 20 GiB
    client = client_for(w.member)
    room = client.get(f"{API}/compute/room/?project={w.project.pk}").json()
    assert room == {
        "project": w.project.pk,
        "limit": {"vcpus": 3, "ram_gib": 8, "disk_gib": 200},
        "held": {"vcpus": 2, "ram_gib": 4, "disk_gib": 20},
        "remaining": {"vcpus": 1, "ram_gib": 4, "disk_gib": 180},
        "project_remaining": {"vcpus": 14, "ram_gib": 60, "disk_gib": 980},
    }
    refused = client.post(
        f"{API}/servers/",
        {
            "project": w.project.pk,
            "name": "second",
            "flavor": flavor("c2.medium").pk,
            "image": image().pk,
        },
        format="json",
    )
    assert refused.status_code == 409
    body = refused.json()
    assert body["code"] == "over_member_limit"
    assert "3" in body["detail"] and "vCPU" in body["detail"], body
    assert Server.objects.filter(name="second").count() == 0
    fits = create(w, run, name="second", flavor_name="c1.small")  # 1 vCPU / 4 GiB / 20 GiB
    assert show(w.member, fits["id"])["status"] == "active"
    room = client.get(f"{API}/compute/room/?project={w.project.pk}").json()
    assert room["held"] == {"vcpus": 3, "ram_gib": 8, "disk_gib": 40}
    assert room["remaining"] == {"vcpus": 0, "ram_gib": 0, "disk_gib": 160}


def test_create_refusals_are_code_and_detail(w, run):
    client = client_for(w.member)

    def post(**changes):
        payload = {
            "project": w.project.pk,
            "name": "ok-name",
            "flavor": flavor("m1.small").pk,
            "image": image().pk,
        } | changes
        return client.post(f"{API}/servers/", payload, format="json")

    missing = client.post(f"{API}/servers/", {"project": w.project.pk}, format="json")
    assert missing.status_code == 400
    assert missing.json()["code"] == "invalid"
    assert set(missing.json()["fields"]) == {"name", "flavor", "image"}

    foreign = post(project=w.other_project.pk)
    assert foreign.status_code == 400 and "project" in foreign.json()["fields"]

    wrong_type = post(flavor="m1.small")
    assert wrong_type.status_code == 400 and "flavor" in wrong_type.json()["fields"]

    bad_name = post(name="has space")
    assert bad_name.status_code == 400 and bad_name.json()["code"] == "invalid_name"

    restricted = flavor("m1.tiny")
    restricted.projects.set([w.other_project])
    not_allowed = post(flavor=restricted.pk)
    assert not_allowed.status_code == 400, not_allowed.content
    assert not_allowed.json()["code"] == "invalid"  # not among the flavors the member sees

    big = post(flavor=flavor("m1.large").pk, name="big")  # 4 vCPU / 8 GiB / 80 GiB: fits
    assert big.status_code == 202
    over = post(name="more")
    assert over.status_code == 409 and over.json()["code"] == "over_member_limit"

    billing_services.wallet_open(project=w.project)
    enforcement.tenant_lock(actor=w.domain_admin, project=w.project, reason="unpaid")
    locked = post(name="locked")
    assert locked.status_code == 409 and locked.json()["code"] == "tenant_locked"
    assert Server.objects.count() == 1


def test_a_member_without_a_limit_is_told_to_ask(w):
    response = client_for(w.project_assistant).post(
        f"{API}/servers/",
        {
            "project": w.project.pk,
            "name": "x",
            "flavor": flavor("m1.tiny").pk,
            "image": image().pk,
        },
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["code"] == "no_limit"


# -- Who sees and does what -------------------------------------------------------------------


def test_staff_see_every_server_of_their_projects_and_members_their_own(w, run):
    classmate = membership_add(
        actor=w.platform, project=w.project, user=w.outsider, role="member"
    ).user
    set_limit(w, classmate, (2, 8, 100))
    mine = create(w, run, name="mine")["id"]
    theirs = create(w, run, user=classmate, name="theirs")["id"]

    def listed(user, query=""):
        response = client_for(user).get(f"{API}/servers/{query}")
        assert response.status_code == 200
        return {row["id"] for row in response.json()["results"]}

    assert listed(w.member) == {mine}
    assert listed(classmate) == {theirs}
    for staff in (w.project_admin, w.project_assistant, w.domain_admin, w.platform):
        assert listed(staff) == {mine, theirs}
    assert listed(w.other_admin) == set()
    assert listed(w.project_admin, f"?owner={classmate.pk}") == {theirs}
    assert listed(w.project_admin, f"?project={w.other_project.pk}") == set()
    assert listed(w.project_admin, "?status=active") == {mine, theirs}
    assert listed(w.project_admin, "?status=stopped") == set()

    assert client_for(w.member).get(f"{API}/servers/{theirs}/").status_code == 404
    assert client_for(w.other_admin).get(f"{API}/servers/{mine}/").status_code == 404
    # Staff stop and delete a member's server, but neither start, reboot nor open its console.
    admin = client_for(w.project_admin)
    assert admin.post(f"{API}/servers/{mine}/reboot/").status_code == 403
    assert admin.get(f"{API}/servers/{mine}/console/").status_code == 403
    denied = admin.patch(f"{API}/servers/{mine}/", {"name": "x"}, format="json")
    assert denied.status_code == 403 and denied.json()["code"] == "permission_denied"
    with run():
        assert admin.post(f"{API}/servers/{mine}/stop/").status_code == 202
    assert show(w.member, mine)["status"] == "stopped"
    with run():
        assert admin.delete(f"{API}/servers/{theirs}/").status_code == 202
    assert show(classmate, theirs)["status"] == "deleted"
    assert AuditEvent.objects.filter(actor=w.project_admin, target_id=str(theirs)).exists()


def test_list_filters_are_validated(w):
    client = client_for(w.member)
    for query in ("?status=running", "?owner=x", "?project=-1", "?size=0"):
        response = client.get(f"{API}/servers/{query}")
        assert response.status_code == 400, query
        assert response.json()["code"] == "invalid"


def test_server_list_has_a_constant_number_of_queries(w):
    project_server = services.server_create  # reservations only: no cloud needed for a list
    set_limit(w, w.member, (16, 64, 1000))

    def make(n):
        for i in range(n):
            project_server(
                actor=w.member,
                project=w.project,
                name=f"vm-{Server.objects.count()}-{i}",
                flavor=flavor("m1.tiny"),
                image=image(),
            )

    client = client_for(w.member)
    make(1)
    client.get(f"{API}/servers/")  # warm-up (token, roles)
    with CaptureQueriesContext(connection) as one:
        assert client.get(f"{API}/servers/").json()["count"] == 1
    make(6)
    with CaptureQueriesContext(connection) as seven:
        assert client.get(f"{API}/servers/").json()["count"] == 7
    assert len(seven) == len(one), [q["sql"] for q in seven.captured_queries]
    assert len(one) <= 8


# -- Overview and room ------------------------------------------------------------------------


def test_domain_overview_counts_servers_and_holdings(w, run):
    create(w, run, name="a", flavor_name="m1.medium")
    b = create(w, run, name="b", flavor_name="m1.tiny")["id"]
    with run():
        client_for(w.member).post(f"{API}/servers/{b}/stop/")
    for user in (w.domain_admin, w.domain_assistant, w.platform):
        response = client_for(user).get(f"{API}/compute/overview/?domain={w.domain.pk}")
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["domain"] == w.domain.pk
        [row] = body["projects"]
        assert row == {
            "project": w.project.pk,
            "name": w.project.name,
            "code": w.project.code,
            "status": "active",
            "end_date": None,
            "servers": {"building": 0, "active": 1, "stopped": 1, "error": 0},
            "held": {"vcpus": 3, "ram_gib": 5, "disk_gib": 41},
            "allocation": {"vcpus": 16, "ram_gib": 64, "disk_gib": 1000},
        }
    denied = client_for(w.project_admin).get(f"{API}/compute/overview/?domain={w.domain.pk}")
    assert denied.status_code == 403
    assert client_for(w.member).get(f"{API}/compute/overview/").status_code == 400


def test_room_answers_a_member_without_limit_with_null(w):
    response = client_for(w.project_admin).get(f"{API}/compute/room/?project={w.project.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body["limit"] is None
    assert body["remaining"] == {"vcpus": 0, "ram_gib": 0, "disk_gib": 0}
    denied = client_for(w.domain_admin).get(f"{API}/compute/room/?project={w.project.pk}")
    assert denied.status_code == 403


# -- Course end date on projects (SPEC Allocations 7) -----------------------------------------


def test_project_end_date_is_set_moved_and_cleared_through_patch(world):
    url = f"{API}/projects/{world.project.pk}/"
    client = client_for(world.project_admin)
    day = timezone.localdate() + timedelta(days=40)
    response = client.patch(url, {"end_date": day.isoformat()}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["end_date"] == day.isoformat()
    event = AuditEvent.objects.filter(action="project.update").latest("pk")
    assert event.before["end_date"] is None and event.after["end_date"] == day.isoformat()

    # A rename keeps the date; a past date is refused with the field named.
    assert client.patch(url, {"name": "Renamed"}, format="json").json()["end_date"] == (
        day.isoformat()
    )
    past = client.patch(
        url, {"end_date": (timezone.localdate() - timedelta(days=1)).isoformat()}, format="json"
    )
    assert past.status_code == 400
    assert past.json()["code"] == "end_date_in_past" and "end_date" in past.json()["fields"]
    cleared = client.patch(url, {"end_date": None}, format="json")
    assert cleared.status_code == 200 and cleared.json()["end_date"] is None
    assert client_for(world.member).patch(url, {"end_date": None}, format="json").status_code == (
        403
    )
