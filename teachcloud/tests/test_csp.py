"""Content-Security-Policy (issue 12.12): every answer — portal page, API, Swagger UI — carries one
policy that forbids inline script, inline style and eval, and nothing we write needs them.

The browser tests (tests/browser) check that the pages keep to it: every journey fails on a CSP
violation. The scans here catch an inline script, style or event handler when it is written, in a
template or in HTML built by Python (format_html in the admin)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db

EXPECTED = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],
    "frame-src": ["'none'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
    "base-uri": ["'self'"],
    "object-src": ["'none'"],
}


def policy_of(response) -> dict[str, list[str]]:
    assert "Content-Security-Policy" in response, f"no CSP on {response.status_code} answer"
    policy: dict[str, list[str]] = {}
    for directive in response["Content-Security-Policy"].split(";"):
        name, *values = directive.split()
        assert name not in policy, f"{name} twice"
        policy[name] = values
    return policy


def assert_strict(response) -> None:
    policy = policy_of(response)
    assert policy == EXPECTED
    header = response["Content-Security-Policy"]
    for loophole in ("'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*", "http:"):
        assert loophole not in header.split(), loophole


def test_a_portal_page_sends_the_policy(client):
    response = client.get(reverse("account_login"))
    assert response.status_code == 200
    assert_strict(response)


def test_a_signed_in_portal_page_sends_the_policy(client, world):
    client.force_login(world.project_admin)
    response = client.get(reverse("portal:project_detail", args=[world.project.pk]))
    assert response.status_code == 200
    assert_strict(response)


def test_an_api_answer_sends_the_policy(world):
    client = Client()
    assert_strict(client.get("/api/v1/domains/"))  # 401, JSON
    client.force_login(world.platform)
    response = client.get("/api/v1/domains/")
    assert response.status_code == 200
    assert_strict(response)


def test_error_pages_send_the_policy(client):
    assert_strict(client.get("/no-such-page/"))


def test_the_admin_sends_the_policy(client, world):
    client.force_login(world.platform)
    response = client.get(reverse("admin:tenancy_domain_changelist"))
    assert response.status_code == 200
    assert_strict(response)
    assert not html_problems(response.content.decode())


def test_swagger_ui_keeps_to_the_same_policy(client):
    """drf-spectacular's page inlines its start script and a <style>; ours loads both from
    files, so /api/docs/ needs no exception."""
    response = client.get(reverse("api-docs"))
    assert response.status_code == 200
    assert_strict(response)
    page = response.content.decode()
    assert not html_problems(page), html_problems(page)
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert len(scripts) == 3, scripts
    start = client.get(scripts[-1].replace("&amp;", "&"))
    assert start.status_code == 200
    assert start["Content-Type"].startswith("application/javascript")
    assert b"SwaggerUIBundle(" in start.content


# -- Scans: what would break the policy, found where it is written --------------------------------

ROOT = Path(settings.BASE_DIR)
# Each: a pattern that a page keeping to the policy never contains, and why.
PROBLEMS = [
    (
        re.compile(
            r"<script\b(?![^>]*\bsrc=)(?![^>]*\btype=[\"']application/(?:ld\+)?json[\"'])[^>]*>",
            re.I,
        ),
        "inline <script> (move it to static/js; JSON data via json_script is fine)",
    ),
    (re.compile(r"<style\b", re.I), "<style> element (move it to static/css)"),
    (re.compile(r"<[^>]*\sstyle\s*=", re.I), "style attribute (use a class in static/css)"),
    (re.compile(r"<[^>]*\son[a-z]+\s*=", re.I), "on* event handler (listen in static/js)"),
    (re.compile(r"javascript:", re.I), "javascript: URL"),
    (re.compile(r"\shx-on(?::|-|\s*=)", re.I), "hx-on (htmx evaluates it as code)"),
    (re.compile(r"\shx-(?:vals|headers)\s*=\s*[\"']\s*(?:js|javascript):", re.I), "hx-* js:"),
    (re.compile(r"\shx-vars\s*=", re.I), "hx-vars (htmx evaluates it as code)"),
    (re.compile(r"\shx-trigger\s*=\s*[\"'][^\"']*\[", re.I), "hx-trigger filter (eval)"),
]


def html_problems(text: str) -> list[str]:
    found = []
    for pattern, why in PROBLEMS:
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"line {line}: {why}: {match.group(0)[:80]!r}")
    return found


@pytest.mark.parametrize(
    "snippet",
    [
        "<script>alert(1)</script>",
        '<script type="module">x()</script>',
        "<style>p{}</style>",
        '<div class="x" style="width: 4%">',
        '<button type="button" onclick="go()">',
        "<body onload='go()'>",
        '<a href="javascript:go()">',
        '<form hx-on::after-request="go()">',
        "<div hx-vals='js:{a: b()}'>",
        "<input hx-trigger=\"keyup[key=='Enter']\">",
    ],
)
def test_the_scan_finds_what_breaks_the_policy(snippet):
    assert html_problems(snippet)


@pytest.mark.parametrize(
    "snippet",
    [
        '<script src="/static/js/portal.js"></script>',
        '<script id="d" type="application/json">{"a": 1}</script>',
        '<div class="progress-bar bar-w-40" data-confirm="Delete it?">',
        '<div hx-get="/x/" hx-trigger="input delay:400ms, change">',
        '<body hx-headers=\'{"X-CSRFToken": "t"}\'>',
        "<p>Stopped on request</p>",
    ],
)
def test_the_scan_lets_what_keeps_to_the_policy_pass(snippet):
    assert not html_problems(snippet)


TEMPLATE_COMMENT = re.compile(r"\{#.*?#\}|\{% comment %\}.*?\{% endcomment %\}", re.S)


def test_no_template_needs_inline_script_style_or_eval():
    found = []
    for path in sorted((ROOT / "templates").rglob("*.html")):
        # Comments may name what they avoid; blanked, keeping their line breaks.
        text = TEMPLATE_COMMENT.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), path.read_text())
        found += [f"{path.relative_to(ROOT)} {p}" for p in html_problems(text)]
    assert not found, "\n".join(found)


FIRST_PARTY = ["accounts", "tenancy", "billing", "compute", "reports", "teachcloud"]
# A fragment spliced into a tag: format_html("<tr{}>", mark_safe(' style="…"')).
STYLE_FRAGMENT = re.compile(r"^\s+style\s*=", re.I)


def python_strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module, but not its docstrings (prose may name a <script>)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    ]


def test_no_html_built_in_python_needs_inline_script_style_or_eval():
    """format_html and mark_safe strings (the admin's columns) are held to the same rule."""
    found = []
    modules = 0
    for package in FIRST_PARTY:
        for path in sorted((ROOT / package).rglob("*.py")):
            if set(path.relative_to(ROOT).parts) & {"tests", "testing", "migrations"}:
                continue
            modules += 1
            for line, text in python_strings(path):
                problems = html_problems(text)
                if STYLE_FRAGMENT.search(text):
                    problems.append(f"style attribute: {text[:80]!r}")
                found += [f"{path.relative_to(ROOT)}:{line} {p}" for p in problems]
    assert modules > 50 and not found, "\n".join(found)


@pytest.mark.parametrize(
    ("percent", "css"),
    [
        (0, "bar-w-0"),
        (76, "bar-w-76"),
        ("76.4", "bar-w-76"),
        (100, "bar-w-100"),
        (130, "bar-w-100"),
        (-5, "bar-w-0"),
        (None, "bar-w-0"),
        ("nan", "bar-w-0"),
        (float("inf"), "bar-w-0"),
    ],
)
def test_a_progress_bar_width_is_one_of_the_stylesheet_classes(percent, css):
    from tenancy.templatetags.portal import bar_width

    assert bar_width(percent) == css
    assert f".{css} {{ width: {css[6:]}%; }}" in (ROOT / "static/css/portal.css").read_text()
