"""The Content-Security-Policy in a real browser (issue 12.12). Every browser test fails on a
violation (tests/browser/conftest.py, new_context); these make sure the watch itself sees one, and
visit the pages the journeys do not: two-factor set-up (its QR code is a data: image), Swagger UI
and the admin."""

import time

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from teachcloud.testing.factories import PASSWORD, make_world
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def wait_for(violations: list[str], count: int, page) -> None:
    deadline = time.monotonic() + 5
    while len(violations) < count and time.monotonic() < deadline:
        page.wait_for_timeout(50)


def test_an_inline_script_or_style_in_a_portal_page_is_blocked_and_reported(
    page, live_server, csp_violations
):
    page.goto(live_server.url + reverse("account_login"))
    page.evaluate(
        """() => {
            const script = document.createElement("script");
            script.textContent = "window.inlineRan = true;";
            document.body.appendChild(script);
            document.querySelector("main").setAttribute("style", "color: red");
        }"""
    )
    wait_for(csp_violations, 2, page)
    assert page.evaluate("() => window.inlineRan === undefined")
    assert page.evaluate("() => getComputedStyle(document.querySelector('main')).color") != (
        "rgb(255, 0, 0)"
    )
    events = [v for v in csp_violations if not v.startswith("console:")]
    assert any(v.startswith("script-src-elem blocked inline") for v in events), csp_violations
    assert any(v.startswith("style-src-attr blocked inline") for v in events), csp_violations
    # What the portal does itself is allowed: Bootstrap's dropdown and htmx loaded and ran.
    assert page.evaluate("() => !!(window.bootstrap && window.htmx)")
    csp_violations.clear()  # seen; the fixture would fail the test on them


def test_two_factor_set_up_shows_its_qr_code(page, live_server):
    make_world()
    sign_in(page, live_server.url, "project_admin")
    page.goto(live_server.url + reverse("mfa_activate_totp"))
    if "/reauthenticate/" in page.url:  # allauth asks for the password again first
        page.fill("input[name=password]", PASSWORD)
        page.get_by_role("button", name="Confirm").click()
    qr = page.locator("img.totp-qr")
    expect(qr).to_be_visible()
    assert qr.get_attribute("src").startswith("data:image/svg+xml")
    assert qr.evaluate("(img) => img.complete && img.naturalWidth > 0")


def test_swagger_ui_renders_the_api(page, live_server):
    page.goto(live_server.url + reverse("api-docs"))
    expect(page.locator(".opblock").first).to_be_visible()
    expect(page.locator("#swagger-ui")).to_contain_text("/api/v1/domains/")
    page.locator(".opblock-summary").first.click()
    expect(page.locator(".opblock-body").first).to_be_visible()


def test_the_admin_works_for_platform_staff(page, live_server):
    world = make_world()
    sign_in(page, live_server.url, "platform")
    page.goto(live_server.url + reverse("admin:index"))
    expect(page.locator("#site-name")).to_be_visible()
    events = reverse("admin:tenancy_auditevent_changelist")
    page.goto(f"{live_server.url}{events}?action__exact=domain_role.appoint")
    page.locator("#result_list tbody tr a").first.click()
    expect(page.locator("body")).to_contain_text("domain_role.appoint")
    page.goto(live_server.url + reverse("admin:tenancy_domain_change", args=[world.domain.pk]))
    expect(page.locator("input[name=name]")).to_have_value(world.domain.name)
