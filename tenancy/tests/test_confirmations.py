"""Every destructive action of the portal asks first, with one mechanism: `data-confirm` on the
form, or on the destructive submit button of a form that also approves (static/js/portal.js).

The pages are rendered as the role that sees the action, with the objects present; each form
that posts to a destructive endpoint (or whose button rejects, denies or deactivates) must carry
the question, and every destructive endpoint listed here must actually be found on its page."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlparse

import pytest
from django.urls import Resolver404, resolve, reverse

from accounts import services as account_services
from billing import services as billing_services
from billing.models import Wallet
from billing.requests import allocation_request_create
from compute.tests.support import FAST, allocate, flavor, image, mirror_catalogue, set_limit

pytestmark = pytest.mark.django_db

# url name (or url name:action) → what it destroys, ends or refuses
DESTRUCTIVE_ENDPOINTS = {
    "server_action:stop": "stops a VM",
    "server_action:delete": "deletes a VM and its disk",
    "membership_remove": "removes a member from a project",
    "domain_role_remove": "withdraws a domain appointment",
    "billing_wallet_lock": "locks a tenant and stops its VMs",
    "enrollment_code_deactivate": "kills a join link",
}
DESTRUCTIVE_DECISIONS = {"reject", "deny"}  # the refusing button of an approve/refuse form


@dataclass
class Form:
    attrs: dict[str, str]
    buttons: list[dict[str, str]] = field(default_factory=list)
    inputs: list[dict[str, str]] = field(default_factory=list)


class FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.hx_confirm = 0
        self._open: Form | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if "hx-confirm" in values:
            self.hx_confirm += 1
        if tag == "form":
            self._open = Form(values)
            self.forms.append(self._open)
        elif self._open is not None and tag == "button":
            self._open.buttons.append(values)
        elif self._open is not None and tag == "input":
            self._open.inputs.append(values)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None


def endpoint(form: Form) -> str | None:
    action = form.attrs.get("action")
    if not action:
        return None
    try:
        match = resolve(urlparse(action).path)
    except Resolver404:
        return None
    if match.url_name == "server_action":
        return f"server_action:{match.kwargs['action']}"
    return match.url_name


def destructive_parts(html: str) -> list[tuple[str, bool]]:
    """(what, asks first) for every destructive form or button of the page."""
    parser = FormParser()
    parser.feed(html)
    assert parser.hx_confirm == 0, "one mechanism: data-confirm, not hx-confirm"
    found = []
    for form in parser.forms:
        if form.attrs.get("method", "get").lower() != "post":
            continue
        asks = bool(form.attrs.get("data-confirm"))
        name = endpoint(form)
        if name in DESTRUCTIVE_ENDPOINTS:
            found.append((name, asks))
        for button in form.buttons:
            if button.get("value") in DESTRUCTIVE_DECISIONS:
                found.append(
                    (f"{name}:{button['value']}", asks or bool(button.get("data-confirm")))
                )
        if any(i.get("name") == "active" and i.get("value") == "0" for i in form.inputs):
            found.append(("user_deactivate", asks))
    return found


@pytest.fixture
def w(world, settings, django_capture_on_commit_callbacks):
    """The world with wallets, a running VM of the member, a pending recharge request and
    allocation request of the project admin, an enrollment code and a pending enrollment."""
    from compute import services as compute_services

    for name, value in FAST.items():
        setattr(settings, name, value)
    for domain in (world.domain, world.other_domain):
        billing_services.wallet_open(domain=domain)
    for project in (world.project, world.other_project):
        billing_services.wallet_open(project=project)
    mirror_catalogue()
    allocate(world)
    set_limit(world, world.member, (4, 16, 200))
    with django_capture_on_commit_callbacks(execute=True):
        server = compute_services.server_create(
            actor=world.member,
            project=world.project,
            name="lab-1",
            flavor=flavor("m1.small"),
            image=image(),
        )
    server.refresh_from_db()
    assert server.status == "active", server.fault
    world.server = server
    billing_services.recharge_request_create(
        actor=world.project_admin,
        wallet=Wallet.objects.get(project=world.project),
        amount="20",
        method="cash",
    )
    allocation_request_create(
        actor=world.project_admin,
        project=world.project,
        vcpus=64,
        ram_gib=128,
        disk_gib=1000,
        justification="A bigger lab",
    )
    code = account_services.enrollment_code_create(actor=world.project_admin, project=world.project)
    account_services.enrollment_redeem(
        code=code.code,
        real_name="New Student",
        id_number="20269999",
        email="new.student@example.edu",
        password="a-Long-Enough-Password-7",
    )
    return world


# page, role → the destructive parts that must be on it
PAGES = [
    ("project_servers", "project", "project_admin", {"server_action:stop", "server_action:delete"}),
    ("server_detail", "server", "member", {"server_action:stop", "server_action:delete"}),
    ("my_servers", None, "member", {"server_action:stop", "server_action:delete"}),
    ("project_detail", "project", "project_admin", {"membership_remove"}),
    ("domain_detail", "domain", "domain_admin", {"domain_role_remove"}),
    (
        "project_billing",
        "project",
        "domain_admin",
        {"billing_wallet_lock", "billing_recharge_request_decide:reject"},
    ),
    ("domain_billing", "domain", "domain_admin", {"billing_allocation_request_decide:deny"}),
    (
        "project_enrollment",
        "project",
        "project_admin",
        {"enrollment_code_deactivate", "enrollment_decide:reject"},
    ),
    ("user_detail", "member", "domain_admin", {"user_deactivate"}),
]


@pytest.mark.parametrize(("page", "target", "role", "expected"), PAGES)
def test_destructive_actions_ask_first(w, client, page, target, role, expected):
    args = [] if target is None else [getattr(w, target).pk]
    client.force_login(getattr(w, role))
    response = client.get(reverse(f"portal:{page}", args=args))
    assert response.status_code == 200, page
    parts = destructive_parts(response.content.decode())
    assert expected <= {what for what, _asks in parts}, parts
    assert [what for what, asks in parts if not asks] == [], page


def test_the_confirmation_script_reads_forms_and_buttons():
    """portal.js asks the question of the submit button first, then of the form."""
    from pathlib import Path

    from django.conf import settings

    script = (Path(settings.BASE_DIR) / "static" / "js" / "portal.js").read_text()
    assert "event.submitter" in script and "dataset.confirm" in script
    assert "window.confirm(question)" in script
