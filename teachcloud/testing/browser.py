"""Headless Chromium (Debian's /usr/bin/chromium) driven by Playwright, for browser tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent.parent / "test-artifacts"


def chromium_path() -> str:
    found = (
        os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    )
    if not found:
        message = "Chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


@contextmanager
def chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    # Playwright's sync API runs an event loop in this thread; the test's ORM calls are safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


# Reports every Content-Security-Policy violation of every page of a context to the test: the
# browser fires `securitypolicyviolation` for each blocked inline script, style attribute, eval
# or foreign source; htmx fires `htmx:evalDisallowedError` when a template asks it to evaluate
# code (hx-on, js: values, trigger filters), which the portal's config forbids. An init script
# is added through the DevTools protocol, outside the page's policy, so it is not blocked itself.
_CSP_WATCH = """
(() => {
  const report = (text) => {
    if (window.__teachcloudViolation) { window.__teachcloudViolation(text).catch(() => {}); }
  };
  document.addEventListener("securitypolicyviolation", (e) => {
    report(`${e.effectiveDirective} blocked ${e.blockedURI || "?"} on ${e.documentURI}` +
           ` (${e.sourceFile || "-"}:${e.lineNumber}) ${e.sample || ""}`);
  }, true);
  document.addEventListener("htmx:evalDisallowedError", (e) => {
    report(`htmx would evaluate code on ${document.location.href}: ${e.target.outerHTML}`);
  }, true);
})();
"""


def watch_csp(context, violations: list[str]) -> None:
    """Collect the CSP violations of every page of `context` into `violations` (the console's
    "Refused to …" lines as well as the DOM events)."""

    def on_console(message) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            violations.append(f"console: {message.text}")

    context.expose_function("__teachcloudViolation", lambda text: violations.append(text))
    context.add_init_script(_CSP_WATCH)
    context.on("console", on_console)


def settle(context) -> None:
    """Let pages deliver violations already fired (events are queued as tasks)."""
    from playwright.sync_api import Error

    for page in context.pages:
        # A page that is closing or navigating away has nothing left to report.
        with suppress(Error):
            page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 50))")
