"""The production stage's client (.ci/production_stage.sh): a round trip through gunicorn, the
Celery worker, the development cloud and the SMTP server, as a student and a browser would.

Runs on the production virtualenv's packages only (requests is a runtime dependency). gunicorn
listens on plain HTTP on 127.0.0.1; production sits behind a TLS proxy that says
`X-Forwarded-Proto: https` (SECURE_PROXY_SSL_HEADER in teachcloud/settings/production.py), so
this client sends that header and the `Origin`/`Referer` of https://127.0.0.1:PORT, and carries
the Secure cookies itself (an HTTP client keeps them for https only).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import mailbox
import re
import sys
import time
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import requests

STUDENT = "north-2024010003"  # seed_demo: third student of 云计算导论, with no VM yet
STUDENT_EMAIL = "north-2024010003@north.example.edu"
TEACHER_EMAIL = "north-teacher1@north.example.edu"  # seed_demo's low-balance alert
TIMEOUT = 30


def say(message: str) -> None:
    print(f"  {message}", flush=True)


class Browser:
    """requests with the proxy's header and the cookies of an https origin."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.origin = "https://" + urlsplit(self.base).netloc
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {
            "X-Forwarded-Proto": "https",
            "Origin": self.origin,
            "Referer": self.origin + path,
            "Accept-Language": "en",
            **kwargs.pop("headers", {}),
        }
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = requests.request(
            method,
            self.base + path,
            headers=headers,
            allow_redirects=False,
            timeout=TIMEOUT,
            **kwargs,
        )
        self.cookies.update(response.cookies.get_dict())
        return response

    def csrf_form(self, path: str) -> str:
        response = self.request("GET", path)
        expect(response, 200, f"GET {path}")
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.text)
        if not match:
            raise SystemExit(f"no CSRF token in {path}")
        return match.group(1)


def expect(response: requests.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise SystemExit(
            f"{what}: expected HTTP {status}, got {response.status_code}\n{response.text[:2000]}"
        )


def check_https_only(base: str) -> None:
    """Production settings are in force: plain HTTP is sent to https, answers carry HSTS."""
    plain = requests.get(base + "/accounts/login/", allow_redirects=False, timeout=TIMEOUT)
    expect(plain, 301, "GET over plain HTTP (SECURE_SSL_REDIRECT)")
    if not plain.headers.get("Location", "").startswith("https://"):
        raise SystemExit(f"plain HTTP redirected to {plain.headers.get('Location')!r}")
    say(f"plain HTTP → 301 {plain.headers['Location']}")


def check_portal(browser: Browser, password: str) -> None:
    """The login page with its collected static files, and a real portal login (session)."""
    page = browser.request("GET", "/accounts/login/")
    expect(page, 200, "GET /accounts/login/")
    if "max-age=" not in page.headers.get("Strict-Transport-Security", ""):
        raise SystemExit("no HSTS header on an https answer")
    css = re.findall(r'href="(/static/[^"]+\.css)"', page.text)
    if not css:
        raise SystemExit("the login page links no stylesheet")
    for path in css:
        if not re.search(r"\.[0-9a-f]{12}\.css$", path):
            raise SystemExit(f"{path} is not a hashed (collectstatic manifest) name")
        expect(browser.request("GET", path), 200, f"GET {path} (whitenoise)")
    say(f"login page 200 with HSTS; {len(css)} stylesheet(s) from the manifest served")

    token = browser.csrf_form("/accounts/login/")
    login = browser.request(
        "POST",
        "/accounts/login/",
        data={"csrfmiddlewaretoken": token, "login": STUDENT, "password": password},
    )
    expect(login, 302, f"portal login of {STUDENT}")
    if "sessionid" not in browser.cookies:
        raise SystemExit("the portal login set no session cookie")
    if "Secure" not in login.headers.get("Set-Cookie", ""):
        raise SystemExit("the session cookie is not Secure")
    home = browser.request("GET", "/")
    expect(home, 200, "GET / with the session")
    if STUDENT not in home.text:
        raise SystemExit(f"the dashboard does not show {STUDENT}")
    say(f"portal login of {STUDENT}: 302, Secure session cookie, dashboard 200")


def api_token(base: str, password: str) -> dict[str, str]:
    response = requests.post(
        base + "/api/v1/auth/token/",
        json={"username": STUDENT, "password": password},
        headers={"X-Forwarded-Proto": "https"},
        timeout=TIMEOUT,
    )
    expect(response, 200, "POST /api/v1/auth/token/")
    say(f"API token for {STUDENT}")
    return {"Authorization": f"Token {response.json()['token']}", "X-Forwarded-Proto": "https"}


def api(base: str, auth: dict[str, str], method: str, path: str, **kwargs: Any) -> Any:
    response = requests.request(
        method, base + "/api/v1/" + path, headers=auth, timeout=TIMEOUT, **kwargs
    )
    if response.status_code >= 300:
        raise SystemExit(
            f"{method} /api/v1/{path}: HTTP {response.status_code}\n{response.text[:2000]}"
        )
    return response.json()


def check_vm(base: str, auth: dict[str, str]) -> None:
    """A VM the student creates through the API; the Celery worker builds it on the cloud."""
    projects = api(base, auth, "GET", "projects/")["results"]
    if len(projects) != 1:
        raise SystemExit(f"expected the student's one project, got {projects}")
    project = projects[0]["id"]
    flavors = [
        f for f in api(base, auth, "GET", f"flavors/?project={project}")["results"] if f["fits"]
    ]
    images = api(base, auth, "GET", "images/")["results"]
    if not flavors or not images:
        raise SystemExit(f"no flavor that fits ({flavors}) or no image ({images})")
    flavor = min(flavors, key=lambda f: (f["vcpus"], f["ram_mib"], f["disk_gib"]))
    image = next((i for i in images if i["name"].startswith("cirros")), images[0])
    body = {
        "project": project,
        "name": "production-stage",
        "flavor": flavor["id"],
        "image": image["id"],
    }
    response = requests.post(base + "/api/v1/servers/", json=body, headers=auth, timeout=TIMEOUT)
    expect(response, 202, "POST /api/v1/servers/")
    server = response.json()
    say(f"server {server['id']} ({flavor['name']}, {image['name']}): {server['status']}")
    deadline = time.monotonic() + 180
    while server["status"] != "active":
        if server["status"] in ("error", "deleted"):
            raise SystemExit(f"the server ended {server['status']}: {server}")
        if time.monotonic() > deadline:
            raise SystemExit(f"the server is still {server['status']} after 180 s: {server}")
        time.sleep(1)
        server = api(base, auth, "GET", f"servers/{server['id']}/")
    say(f"server {server['id']} is active (built by the Celery worker on the development cloud)")


def messages_to(maildir: str, address: str) -> list[EmailMessage]:
    found = []
    for message in mailbox.Maildir(maildir, create=False):
        parsed = email.message_from_bytes(bytes(message), policy=email.policy.default)
        recipients = f"{parsed.get('X-RcptTo', '')} {parsed.get('To', '')}"
        if address in recipients:
            found.append(parsed)
    return found


def wait_for_mail(maildir: str, address: str, what: str, seconds: float = 60) -> EmailMessage:
    deadline = time.monotonic() + seconds
    while True:
        found = messages_to(maildir, address)
        if found:
            message = found[-1]
            subject = str(message["Subject"]).strip()
            say(f"{what}: arrived at the SMTP server for {address}: {subject!r}")
            return message
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: no email to {address} within {seconds:.0f} s")
        time.sleep(0.5)


def check_email(browser: Browser, maildir: str) -> None:
    """seed_demo's low-balance alert (sent by manage.py) and a password reset (sent by gunicorn)."""
    wait_for_mail(maildir, TEACHER_EMAIL, "low-balance alert from seed_demo")
    before = len(messages_to(maildir, STUDENT_EMAIL))
    token = browser.csrf_form("/accounts/password/reset/")
    reset = browser.request(
        "POST",
        "/accounts/password/reset/",
        data={"csrfmiddlewaretoken": token, "email": STUDENT_EMAIL},
    )
    expect(reset, 302, "POST /accounts/password/reset/")
    deadline = time.monotonic() + 60
    while len(messages_to(maildir, STUDENT_EMAIL)) <= before:
        if time.monotonic() > deadline:
            raise SystemExit(f"no password-reset email to {STUDENT_EMAIL} within 60 s")
        time.sleep(0.5)
    message = messages_to(maildir, STUDENT_EMAIL)[-1]
    body = message.get_body(preferencelist=("plain", "html"))
    text = body.get_content() if body is not None else ""
    if "/accounts/password/reset/key/" not in text or browser.origin not in text:
        raise SystemExit(f"the password-reset email has no https reset link:\n{text}")
    say(f"password reset: arrived for {STUDENT_EMAIL} with an {browser.origin} link")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="gunicorn's http://127.0.0.1:PORT")
    parser.add_argument("--maildir", required=True, help="the SMTP server's Maildir")
    parser.add_argument("--password", required=True, help="seed_demo's password")
    args = parser.parse_args()
    base = args.base.rstrip("/")
    browser = Browser(base)
    check_https_only(base)
    check_portal(browser, args.password)
    auth = api_token(base, args.password)
    check_vm(base, auth)
    check_email(Browser(base), args.maildir)
    print("  round trip: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
