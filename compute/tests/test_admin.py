"""The Django admin of compute: credentials with a write-only password stored encrypted and a
connection test, the catalogue synced from the cloud and offered to chosen domains/projects,
the capacity page, servers stopped and deleted through the services, unknown servers adopted or
deleted; finance staff read-only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accounts.models import PlatformRole
from billing.services import allocation_set, target_of
from compute import selectors, services
from compute.models import CloudCredential, Flavor, Image, Server, UnknownServer
from compute.tests.support import (
    FAST,
    allocate,
    eventually,
    flavor,
    image,
    mirror_catalogue,
    set_limit,
)
from teachcloud.testing.factories import UserFactory
from tenancy.models import AuditEvent

PASSWORD = "s3rvice-Account-pw"


@pytest.fixture
def w(world, settings):
    for name, value in FAST.items():
        setattr(settings, name, value)
    return world


@pytest.fixture
def staff(client, w):
    client.force_login(w.platform)
    return client


@pytest.fixture
def finance(client, w):
    user = UserFactory(
        home_domain=None, id_number="", platform_role=PlatformRole.FINANCE, is_staff=True
    )
    client.force_login(user)
    return client


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def changelist(model: str) -> str:
    return reverse(f"admin:compute_{model}_changelist")


def action(client, model: str, name: str, pks: list[int]):
    return client.post(
        changelist(model),
        {"action": name, "_selected_action": [str(pk) for pk in pks]},
        follow=True,
    )


def page_messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# -- Credentials ------------------------------------------------------------------------------


def devcloud_credential_values(devcloud) -> dict[str, str]:
    """Keystone of the running development cloud, as platform staff would type it."""
    auth = devcloud.connect_kwargs()["auth"]
    return {
        "name": "lab-cloud",
        "auth_url": auth["auth_url"],
        "username": auth["username"],
        "project_name": auth["project_name"],
        "user_domain_name": auth.get("user_domain_name", "Default"),
        "project_domain_name": auth.get("project_domain_name", "Default"),
        "region_name": "RegionOne",
        "verify_tls": "on",
        "simulated": "on",
    }


def test_credential_password_is_write_only_and_encrypted_at_rest(staff, devcloud):
    from compute.secrets import decrypt

    values = devcloud_credential_values(devcloud)
    response = staff.post(
        reverse("admin:compute_cloudcredential_add"),
        values | {"password": devcloud.connect_kwargs()["auth"]["password"]},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    credential = CloudCredential.objects.get()
    assert credential.password_encrypted
    assert devcloud.connect_kwargs()["auth"]["password"] not in credential.password_encrypted
    assert decrypt(credential.password_encrypted) == devcloud.connect_kwargs()["auth"]["password"]
    event = AuditEvent.objects.get(action="compute.credential_save")
    assert devcloud.connect_kwargs()["auth"]["password"] not in str(event.after)

    change = reverse("admin:compute_cloudcredential_change", args=[credential.pk])
    html = staff.get(change).content.decode()
    assert devcloud.connect_kwargs()["auth"]["password"] not in html
    assert credential.password_encrypted not in html
    # Saving without a password keeps the stored one.
    stored = credential.password_encrypted
    response = staff.post(change, values | {"name": "lab-cloud-2", "password": ""})
    assert response.status_code == 302
    credential.refresh_from_db()
    assert credential.name == "lab-cloud-2" and credential.password_encrypted == stored

    tested = action(staff, "cloudcredential", "test_connection", [credential.pk])
    assert any("8 flavors" in m for m in page_messages(tested)), page_messages(tested)


def test_a_new_credential_needs_a_password_and_one_is_active(staff, devcloud):
    values = devcloud_credential_values(devcloud)
    response = staff.post(reverse("admin:compute_cloudcredential_add"), values)
    assert response.status_code == 200 and not CloudCredential.objects.exists()
    assert "password" in response.content.decode().lower()

    for name in ("first", "second"):
        staff.post(
            reverse("admin:compute_cloudcredential_add"),
            values | {"name": name, "password": PASSWORD, "active": "on"},
        )
    assert list(CloudCredential.objects.filter(active=True).values_list("name", flat=True)) == [
        "second"
    ]


def test_a_wrong_password_fails_the_connection_test_in_plain_words(staff, devcloud):
    values = devcloud_credential_values(devcloud)
    staff.post(
        reverse("admin:compute_cloudcredential_add"), values | {"password": "wrong-password"}
    )
    credential = CloudCredential.objects.get()
    tested = action(staff, "cloudcredential", "test_connection", [credential.pk])
    [text] = [m for m in page_messages(tested) if m.startswith("lab-cloud: ")]
    assert "8 flavors" not in text, text


# -- Catalogue --------------------------------------------------------------------------------


def test_catalogue_sync_button_and_offering(staff, w):
    assert not Flavor.objects.exists()
    response = staff.post(reverse("admin:compute_flavor_sync"), follow=True)
    assert response.status_code == 200
    assert Flavor.objects.count() == 8 and Image.objects.count() == 4
    assert any("flavors: new 8" in m for m in page_messages(response)), page_messages(response)
    page = staff.get(changelist("flavor")).content.decode()
    assert "m1.small" in page and "everybody" in page

    # Offer a flavor to the other domain only: the member's project no longer sees it.
    tiny = flavor("m1.tiny")
    change = reverse("admin:compute_flavor_change", args=[tiny.pk])
    response = staff.post(change, {"enabled": "on", "domains": [w.other_domain.pk]})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert tiny not in selectors.flavors_for(w.project)
    assert tiny in selectors.flavors_for(w.other_project)
    assert AuditEvent.objects.filter(action="compute.flavor_update").exists()

    withdrawn = action(staff, "flavor", "withdraw", [flavor("m1.small").pk])
    assert withdrawn.status_code == 200
    assert flavor("m1.small") not in selectors.flavors_for(w.project)
    action(staff, "flavor", "offer", [flavor("m1.small").pk])
    assert flavor("m1.small") in selectors.flavors_for(w.project)
    # The action variant of the sync works on images too.
    synced = action(staff, "image", "sync_catalogue", [image().pk])
    assert any("no change" in m for m in page_messages(synced))


# -- Capacity ---------------------------------------------------------------------------------


def test_capacity_page_shows_hypervisors_and_allocated_vs_held(staff, w, run, settings):
    mirror_catalogue()
    allocate(w, domain_alloc=(40, 160, 2000))
    set_limit(w, w.member, (4, 16, 200))
    with run():
        services.server_create(
            actor=w.member, project=w.project, name="cap", flavor=flavor("m1.medium"), image=image()
        )
    response = staff.get(reverse("admin:compute_server_capacity"))
    assert response.status_code == 200
    report = response.context["report"]
    [host] = report["hypervisors"]
    assert host["name"] == "devcloud-compute-1"
    assert (host["vcpus"], host["ram_gib"], host["disk_gib"]) == (64, 256.0, 2048)
    assert host["vcpus_used"] >= 2
    rows = {row["resource"]: row for row in report["resources"]}
    assert rows["vcpus"] | {"allocated_percent": 0, "held_percent": 0} == {
        "resource": "vcpus",
        "label": "vCPUs",
        "cloud_total": 64,
        "capacity": 1000,
        "sellable": 1000,
        "allocated": 40,
        "held": 2,
        "allocated_percent": 0,
        "held_percent": 0,
    }
    assert rows["ram_gib"]["allocated"] == 160 and rows["ram_gib"]["held"] == 4
    assert rows["disk_gib"]["held"] == 40
    html = response.content.decode()
    assert "devcloud-compute-1" in html


def test_capacity_page_survives_a_cloud_failure(staff, w, devcloud):
    devcloud.fail("GET", r"/os-hypervisors", status=500, times=10)
    response = staff.get(reverse("admin:compute_server_capacity"))
    assert response.status_code == 200
    assert response.context["report"]["cloud_error"]
    assert response.context["report"]["hypervisors"] == []


# -- Servers ----------------------------------------------------------------------------------


def test_server_admin_is_read_only_and_stops_and_deletes_through_services(staff, w, run, devcloud):
    mirror_catalogue()
    allocate(w)
    set_limit(w, w.member, (4, 16, 200))
    with run():
        a = services.server_create(
            actor=w.member, project=w.project, name="a", flavor=flavor("m1.tiny"), image=image()
        )
        b = services.server_create(
            actor=w.member, project=w.project, name="b", flavor=flavor("m1.tiny"), image=image()
        )
    page = staff.get(changelist("server")).content.decode()
    assert ">a<" in page and ">b<" in page
    assert staff.get(reverse("admin:compute_server_add")).status_code == 403
    with run():
        stopped = action(staff, "server", "stop_servers", [a.pk])
    assert any("1 servers are stopping" in m for m in page_messages(stopped))
    assert Server.objects.get(pk=a.pk).status == "stopped"
    with run():
        action(staff, "server", "delete_servers", [a.pk, b.pk])
    assert set(Server.objects.values_list("status", flat=True)) == {"deleted"}
    assert devcloud.servers() == []
    # A refusal is a message per server, not an error page.
    refused = action(staff, "server", "stop_servers", [a.pk])
    assert refused.status_code == 200
    assert any(m.startswith("a: ") for m in page_messages(refused))


def test_finance_staff_see_servers_read_only_and_nothing_of_the_cloud(finance, w):
    response = finance.get(changelist("server"))
    assert response.status_code == 200
    assert "stop_servers" not in response.content.decode()
    for model in ("cloudcredential", "flavor", "image", "unknownserver"):
        assert finance.get(changelist(model)).status_code == 403, model
    assert finance.get(reverse("admin:compute_server_capacity")).status_code == 403


# -- Unknown servers --------------------------------------------------------------------------


def test_unknown_servers_are_adopted_or_deleted(staff, w, devcloud, run, settings):
    from compute.sync import sync_run

    mirror_catalogue()
    allocate(w)
    set_limit(w, w.member, (4, 16, 200))
    with run():  # the project's Keystone project exists once a server was built
        first = services.server_create(
            actor=w.member, project=w.project, name="seed", flavor=flavor("m1.tiny"), image=image()
        )
    cloud_project = Server.objects.get(pk=first.pk).project.cloud.cloud_id
    named = devcloud.create_server_behind_back(
        project_id=cloud_project,
        name="found",
        metadata={
            "teachcloud_owner": str(w.member.pk),
            "teachcloud_owner_name": w.member.username,
            "teachcloud_project": w.project.code,
        },
    )
    stray = devcloud.create_server_behind_back(project_id=cloud_project, name="stray")
    sync_run(apply=True, orphans="report")
    found = UnknownServer.objects.get(name="found")
    lost = UnknownServer.objects.get(name="stray")
    page = staff.get(changelist("unknownserver")).content.decode()
    assert "found" in page and w.member.username in page

    with run():
        action(staff, "unknownserver", "adopt", [found.pk])
    adopted = Server.objects.get(cloud_id=named["id"])
    assert adopted.owner == w.member and adopted.holding is not None
    with run():
        deleted = action(staff, "unknownserver", "delete_in_cloud", [lost.pk])
    assert any("1 servers deleted" in m for m in page_messages(deleted)), page_messages(deleted)
    eventually(lambda: stray["id"] not in {s["id"] for s in devcloud.servers()})
    assert UnknownServer.objects.get(pk=lost.pk).resolution == "deleted"


def test_compute_allocation_numbers_helper_is_consistent(w):
    """The capacity page's `allocated` is the sum of the open domain allocations."""
    from compute.platform import capacity_report

    allocate(w, domain_alloc=(10, 20, 30), project_alloc=(1, 1, 1))
    allocation_set(
        actor=w.platform, target=target_of(domain=w.other_domain), vcpus=5, ram_gib=6, disk_gib=7
    )
    report = capacity_report(actor=w.platform)
    assert {r["resource"]: r["allocated"] for r in report["resources"]} == {
        "vcpus": 15,
        "ram_gib": 26,
        "disk_gib": 37,
    }
