import pytest

from teachcloud.testing.browser import ARTIFACTS, chromium, settle, watch_csp


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
def csp_violations() -> list[str]:
    """The Content-Security-Policy violations of every page the test opened (issue 12.12)."""
    return []


@pytest.fixture
def new_context(browser, csp_violations):
    """Open a browser context whose pages report their CSP violations. A test that needs a second
    user's browser takes one from here, not from `browser`. After the test, any violation in any
    page of these contexts fails it: the portal keeps to its policy with no inline script or
    style and no eval."""
    contexts = []

    def new(**options):
        context = browser.new_context(**{"locale": "en-US", **options})
        watch_csp(context, csp_violations)
        contexts.append(context)
        return context

    yield new
    try:
        for context in contexts:
            settle(context)
        assert not csp_violations, "Content-Security-Policy violations:\n" + "\n".join(
            csp_violations
        )
    finally:
        for context in contexts:
            context.close()


@pytest.fixture
def page(new_context, request, settings):
    """A page of a fresh context (see new_context: a CSP violation fails the test)."""
    settings.LANGUAGE_CODE = "en"
    context = new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15000)
    yield page
    if request.node.stash.get("failed", False):
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)


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
