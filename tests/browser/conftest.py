import pytest

from teachcloud.testing.browser import ARTIFACTS, chromium


@pytest.fixture(scope="session")
def browser():
    with chromium() as browser:
        yield browser


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash.setdefault("failed", report.failed)
        item.stash["failed"] = report.failed


@pytest.fixture
def page(browser, request, settings):
    settings.LANGUAGE_CODE = "en"
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    if request.node.stash.get("failed", False):
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def sign_in(page, base: str, username: str, password: str | None = None) -> None:
    """Sign in through the login form (the factories' password unless told)."""
    from django.urls import reverse

    from teachcloud.testing.factories import PASSWORD

    page.goto(base + reverse("account_login"))
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", password or PASSWORD)
    page.locator("form button[type=submit]").last.click()
    page.wait_for_load_state("networkidle")
    assert "/accounts/login/" not in page.url, f"{username} could not sign in"
