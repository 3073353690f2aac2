"""The compute pages of the portal through the Django test client: who sees which page, the
create form that only offers fitting flavors (the others disabled with the reason), creating and
acting on VMs against the development cloud, the polled detail page, the domain overview, the
navigation and the "simulated cloud" badge, and a project's course end date in its settings."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from compute import services
from compute.models import Flavor, Server
from compute.tests.support import FAST, allocate, flavor, image, mirror_catalogue, set_limit
from tenancy.models import Project

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def w(world, settings):
    for name, value in FAST.items():
        setattr(settings, name, value)
    mirror_catalogue()
    allocate(world)
    set_limit(world, world.member, (4, 16, 200))
    return world


@pytest.fixture
def login(client):
    def _login(user):
        client.force_login(user)
        return client

    return _login


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def built(w, run, *, user=None, name="lab-1", flavor_name="m1.small") -> Server:
    """A server created through the service and built in the development cloud."""
    with run():
        server = services.server_create(
            actor=user or w.member,
            project=w.project,
            name=name,
            flavor=flavor(flavor_name),
            image=image(),
        )
    server.refresh_from_db()
    assert server.status == "active", server.fault
    return server


def flavor_inputs(html: str) -> dict[str, bool]:
    """flavor id → enabled, from the radio buttons of the create form."""
    inputs = re.findall(r'<input[^>]*name="flavor"[^>]*>', html)
    return {re.search(r'value="(\d+)"', i).group(1): "disabled" not in i for i in inputs}


# -- Who sees which page ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "page", "status"),
    [
        ("member", "my", 200),
        ("project_admin", "my", 200),
        ("platform", "my", 200),
        ("member", "project", 200),
        ("project_assistant", "project", 200),
        ("domain_admin", "project", 200),
        ("other_admin", "project", 404),
        ("member", "create", 200),
        ("project_admin", "create", 200),
        ("domain_admin", "create", 403),
        ("other_admin", "create", 404),
        ("domain_admin", "domain", 200),
        ("domain_assistant", "domain", 200),
        ("project_admin", "domain", 403),
        ("member", "domain", 403),
        ("other_admin", "domain", 404),
        ("project_admin", "settings", 200),
        ("project_assistant", "settings", 200),
        ("member", "settings", 403),
        ("other_admin", "settings", 404),
    ],
)
def test_who_sees_which_page(w, login, who, page, status):
    urls = {
        "my": reverse("portal:my_servers"),
        "project": reverse("portal:project_servers", args=[w.project.pk]),
        "create": reverse("portal:server_create", args=[w.project.pk]),
        "domain": reverse("portal:domain_servers", args=[w.domain.pk]),
        "settings": reverse("portal:project_settings", args=[w.project.pk]),
    }
    assert login(getattr(w, who)).get(urls[page]).status_code == status


def test_server_pages_are_scoped(w, run, login):
    server = built(w, run)
    detail = reverse("portal:server_detail", args=[server.pk])
    for who, status in [
        ("member", 200),
        ("project_admin", 200),
        ("domain_assistant", 200),
        ("platform", 200),
        ("other_admin", 404),
        ("outsider", 404),
    ]:
        assert login(getattr(w, who)).get(detail).status_code == status, who
    # An action the viewer may not do: 403 (visible) or 404 (foreign).
    assert (
        login(w.project_admin)
        .post(reverse("portal:server_action", args=[server.pk, "reboot"]))
        .status_code
        == 403
    )
    assert (
        login(w.other_admin)
        .post(reverse("portal:server_action", args=[server.pk, "stop"]))
        .status_code
        == 404
    )


# -- The create form --------------------------------------------------------------------------


def test_create_form_offers_only_fitting_flavors_and_shows_what_remains(w, run, login):
    set_limit(w, w.member, (3, 8, 200))
    built(w, run, flavor_name="c2.medium")  # holds 2 vCPU / 4 GiB / 20 GiB
    response = login(w.member).get(reverse("portal:server_create", args=[w.project.pk]))
    html = response.content.decode()
    offered = flavor_inputs(html)
    for f in Flavor.objects.all():
        fits = f.vcpus <= 1 and f.ram_gib <= 4 and f.disk_gib <= 180
        assert offered[str(f.pk)] is fits, f.name
    assert offered[str(flavor("c1.small").pk)] is True  # the SPEC's 1 vCPU / 4 GiB
    assert offered[str(flavor("c2.medium").pk)] is False  # the SPEC's refused 2 vCPU / 4 GiB
    assert "needs 2 vCPU, 1 left of your limit" in html
    # What remains, as bars: held / limit and what is left.
    assert re.search(r"<strong>2</strong> / 3 in use · 1 left", html), html
    assert re.search(r"<strong>4</strong> / 8 in use · 4 left", html)


def test_create_form_without_a_limit_explains_and_offers_nothing(w, login):
    response = login(w.project_admin).get(reverse("portal:server_create", args=[w.project.pk]))
    html = response.content.decode()
    assert "You have no limit in this project yet" in html
    assert set(flavor_inputs(html).values()) == {False}
    assert "you have no limit in this project yet" in html


def test_creating_a_vm_in_the_portal(w, run, login, devcloud):
    client = login(w.member)
    url = reverse("portal:server_create", args=[w.project.pk])
    payload = {"name": "portal-vm", "flavor": flavor("m1.small").pk, "image": image().pk}
    with run():
        response = client.post(url, payload)
    server = Server.objects.get(name="portal-vm")
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:server_detail", args=[server.pk])
    server.refresh_from_db()
    assert server.status == "active" and server.owner == w.member
    assert len(devcloud.servers()) == 1

    page = client.get(response["Location"]).content.decode()
    assert "portal-vm" in page and "Active" in page
    for ip in server.ip_list:
        assert ip in page

    # A name already used is refused on the form, in plain words; nothing is created.
    again = client.post(url, payload)
    assert again.status_code == 200
    assert Server.objects.count() == 1
    assert "alert-danger" in again.content.decode()


def test_a_refused_create_shows_the_numbers(w, run, login):
    set_limit(w, w.member, (1, 16, 200))
    built(w, run)
    response = login(w.member).post(
        reverse("portal:server_create", args=[w.project.pk]),
        {"name": "second", "flavor": flavor("m1.small").pk, "image": image().pk},
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "alert-danger" in html and "vCPU" in html
    assert not Server.objects.filter(name="second").exists()


def test_a_refused_create_names_the_resources_in_words_once(w, run, login):
    """The refusal lists each resource over the limit once, by its name, not by a field key."""
    set_limit(w, w.member, (1, 16, 200))
    built(w, run)
    response = login(w.member).post(
        reverse("portal:server_create", args=[w.project.pk]),
        {"name": "second", "flavor": flavor("m1.small").pk, "image": image().pk},
    )
    html = response.content.decode()
    assert "Your limit in this project would be exceeded (vCPU: 1 held + 1 asked &gt; 1)" in html
    assert html.count("1 held + 1 asked") == 1
    assert "vcpus:" not in html


# -- Acting on a VM ---------------------------------------------------------------------------


def test_stop_start_and_delete_from_the_portal(w, run, login, devcloud):
    server = built(w, run)
    client = login(w.member)
    page = client.get(reverse("portal:server_detail", args=[server.pk])).content.decode()
    assert "data-confirm" in page  # stop and delete ask first

    with run():
        response = client.post(reverse("portal:server_action", args=[server.pk, "stop"]))
    assert response.status_code == 302
    server.refresh_from_db()
    assert server.status == "stopped"
    assert [s["status"] for s in devcloud.servers()] == ["SHUTOFF"]

    with run():
        client.post(reverse("portal:server_action", args=[server.pk, "start"]))
    server.refresh_from_db()
    assert server.status == "active"

    listing = reverse("portal:project_servers", args=[w.project.pk])
    with run():
        response = client.post(
            reverse("portal:server_action", args=[server.pk, "delete"]), {"next": listing}
        )
    assert response["Location"] == listing
    server.refresh_from_db()
    assert server.status == "deleted"
    assert devcloud.servers() == []
    messages = [str(m) for m in response.wsgi_request._messages]
    assert any("deleted" in m for m in messages), messages


def test_a_refused_action_is_a_message(w, run, login):
    server = built(w, run)
    client = login(w.member)
    response = client.post(reverse("portal:server_action", args=[server.pk, "start"]), follow=True)
    assert response.status_code == 200
    assert "alert-danger" in response.content.decode()


def test_project_staff_stop_a_members_vm(w, run, login):
    server = built(w, run)
    client = login(w.project_assistant)
    page = client.get(reverse("portal:project_servers", args=[w.project.pk])).content.decode()
    assert f'id="server-{server.pk}"' in page
    assert w.member.username in page  # the owner column
    assert reverse("portal:server_action", args=[server.pk, "stop"]) in page
    assert reverse("portal:server_console", args=[server.pk]) not in page  # owner only
    with run():
        client.post(reverse("portal:server_action", args=[server.pk, "stop"]))
    server.refresh_from_db()
    assert server.status == "stopped"


def test_console_redirects_to_novnc(w, run, login):
    server = built(w, run)
    response = login(w.member).get(reverse("portal:server_console", args=[server.pk]))
    assert response.status_code == 302 and "vnc" in response["Location"]
    assert (
        login(w.project_admin).get(reverse("portal:server_console", args=[server.pk])).status_code
        == 403
    )


def test_rename(w, run, login):
    server = built(w, run)
    with run():
        login(w.member).post(reverse("portal:server_rename", args=[server.pk]), {"name": "新名字"})
    server.refresh_from_db()
    assert server.name == "新名字"


def test_detail_polls_while_the_cloud_works(w, login):
    server = services.server_create(
        actor=w.member, project=w.project, name="slow", flavor=flavor("m1.tiny"), image=image()
    )  # the build task is not run: the server stays building
    client = login(w.member)
    url = reverse("portal:server_detail", args=[server.pk])
    page = client.get(url).content.decode()
    assert 'hx-trigger="every 2s"' in page and "Building" in page
    partial = client.get(url, **HTMX).content.decode()
    assert partial.lstrip().startswith('<div id="server-state"') and "<html" not in partial


def test_my_vms_lists_each_project_with_its_room(w, run, login):
    server = built(w, run)
    page = login(w.member).get(reverse("portal:my_servers")).content.decode()
    assert server.name in page and w.project.name in page
    assert "<strong>1</strong> / 4 in use" in page
    assert reverse("portal:server_create", args=[w.project.pk]) in page


# -- Domain overview --------------------------------------------------------------------------


def test_domain_overview_shows_held_against_allocation(w, run, login):
    built(w, run, flavor_name="m1.medium")
    page = login(w.domain_admin).get(reverse("portal:domain_servers", args=[w.domain.pk]))
    html = page.content.decode()
    assert w.project.name in html
    row = html[html.index(f'id="overview-{w.project.pk}"') :]
    assert "<strong>2</strong> / 16" in row  # vCPU held / allocated
    assert "<strong>4</strong> / 64" in row


# -- Navigation and the simulated-cloud badge -------------------------------------------------


def test_navigation_and_simulated_badge(w, login):
    member_page = login(w.member).get(reverse("portal:dashboard")).content.decode()
    assert reverse("portal:my_servers") in member_page
    assert 'id="simulated-cloud"' in member_page
    staff_page = login(w.project_admin).get(reverse("portal:dashboard")).content.decode()
    assert reverse("portal:project_servers", args=[w.project.pk]) in staff_page
    domain_page = login(w.domain_admin).get(reverse("portal:dashboard")).content.decode()
    assert reverse("portal:domain_servers", args=[w.domain.pk]) in domain_page


# -- Project settings: the course end date ----------------------------------------------------


def test_project_settings_set_the_end_date_with_the_rule_explained(w, login):
    client = login(w.project_admin)
    url = reverse("portal:project_settings", args=[w.project.pk])
    page = client.get(url).content.decode()
    assert "30 days after the end date" in page
    day = timezone.localdate() + timedelta(days=20)
    response = client.post(
        url,
        {
            "name": w.project.name,
            "code": w.project.code,
            "description": "",
            "end_date": day.isoformat(),
        },
    )
    assert response.status_code == 302
    assert Project.objects.get(pk=w.project.pk).end_date == day
    page = client.get(url).content.decode()
    assert (day - timedelta(days=7)).isoformat() in page  # the reminder date

    past = client.post(
        url,
        {
            "name": w.project.name,
            "code": w.project.code,
            "end_date": (timezone.localdate() - timedelta(days=1)).isoformat(),
        },
    )
    assert past.status_code == 200
    assert "cannot lie in the past" in past.content.decode()
    assert Project.objects.get(pk=w.project.pk).end_date == day


# -- Demo data --------------------------------------------------------------------------------


def _seed() -> str:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_seed_demo_gives_students_vms_when_a_cloud_answers(login):
    _seed()
    servers = Server.objects.select_related("owner", "project", "flavor")
    assert servers.count() == 4  # two students of each school's first course
    assert {s.flavor.name for s in servers} == {"c1.small"}
    assert all(s.owner.memberships.filter(project=s.project, role="member") for s in servers)
    _seed()
    assert Server.objects.count() == 4
    student = servers.first().owner
    page = login(student).get(reverse("portal:my_servers")).content.decode()
    assert servers.first().name in page


@pytest.mark.django_db
def test_seed_demo_does_not_fail_without_a_cloud(devcloud):
    devcloud.fail("GET", r".*", status=503, times=1000)
    output = _seed()
    assert "No cloud answered" in output
    assert not Server.objects.exists()


# -- In a real browser ------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_student_creates_a_vm_in_a_browser_and_watches_it_become_active(live_server, settings):
    """Headless Chromium: the create form, then the VM's page polling (htmx) until the cloud
    reports it active."""
    from teachcloud.testing.browser import ARTIFACTS, chromium, settle, watch_csp
    from teachcloud.testing.factories import PASSWORD, make_world

    world = make_world()
    for name, value in FAST.items():
        setattr(settings, name, value)
    settings.TEACHCLOUD_COMPUTE_BUILD_WAIT = 0  # the request returns while the cloud builds
    mirror_catalogue()
    allocate(world)
    set_limit(world, world.member, (3, 8, 200))
    base = live_server.url
    with chromium() as browser:
        context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
        violations: list[str] = []
        watch_csp(context, violations)
        page = context.new_page()
        page.set_default_timeout(15000)
        try:
            page.goto(base + reverse("account_login"))
            page.fill("input[name=login]", "member")
            page.fill("input[name=password]", PASSWORD)
            page.locator("form button[type=submit]").last.click()
            page.wait_for_load_state("networkidle")
            page.goto(base + reverse("portal:server_create", args=[world.project.pk]))
            assert page.locator(f"#flavor-{flavor('c4.xlarge').pk}").is_disabled()
            page.fill("input[name=name]", "browser-vm")
            page.check(f"#flavor-{flavor('c1.small').pk}")
            page.locator("#server-create-form button[type=submit]").click()
            page.wait_for_load_state("networkidle")
            server = Server.objects.get(name="browser-vm")
            assert page.url.endswith(reverse("portal:server_detail", args=[server.pk]))
            assert "Building" in page.inner_text("#server-state")
            services.server_build(server_id=server.pk)  # the cloud finishes (the worker's job)
            page.wait_for_function(
                "() => document.querySelector('#server-state').innerText.includes('Active')"
            )
            assert not page.locator("#server-state[hx-trigger]").count()  # polling stopped
            settle(context)
            assert violations == []  # the Content-Security-Policy held on every page
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "compute-browser-failure.png"), full_page=True)
            raise
        finally:
            context.close()
