"""CI stage: fuzz every operation of /api/schema/ with schemathesis, authenticated as each role.

Starts a throw-away PostgreSQL cluster, migrates, loads the demo data, serves the API with
gunicorn on 127.0.0.1 and runs `schemathesis run` once per role (and once anonymously), each with
a fresh API token, and once more for token revocation alone. Fails on any 5xx, undocumented
status code, wrong content type or response that violates the schema.
Endpoints added by later issues are fuzzed automatically: they are in the schema.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devcloud import DevCloud  # noqa: E402
from teachcloud.testing.pgcluster import ensure_cluster  # noqa: E402

VENV = ROOT / ".venv" / "bin"
MAX_TIME = os.environ.get("SCHEMATHESIS_MAX_TIME", "45")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)

# The demo data's first user of each role, chosen once before any fuzzing (a role's run may
# delete another role's appointment; its user is still fuzzed as that role's user).
USERS_SCRIPT = """
import json
from accounts.models import User
from tenancy.models import DomainRole, Membership

def first(qs):
    return qs.order_by("pk").first()

users = {
    "platform": first(User.objects.filter(is_superuser=True)),
    "domain_admin": getattr(first(DomainRole.objects.filter(role="admin")), "user", None),
    "domain_assistant": getattr(first(DomainRole.objects.filter(role="assistant")), "user", None),
    "project_admin": getattr(first(Membership.objects.filter(role="admin")), "user", None),
    "project_assistant": getattr(first(Membership.objects.filter(role="assistant")), "user", None),
    "member": getattr(first(Membership.objects.filter(role="member")), "user", None),
}
missing = [role for role, user in users.items() if user is None]
assert not missing, f"demo data has no user for {missing}"
print("USERS=" + json.dumps({role: user.pk for role, user in users.items()}))
"""
# Run before each role's fuzzing: an earlier role's fuzzing may have deactivated this role's
# user (which also revoked its tokens), so every user is active again and the role's user gets a
# fresh token.
TOKEN_SCRIPT = """
from accounts.models import User
from accounts.services import token_create

User.objects.filter(is_active=False).update(is_active=True)
user_id = USER_ID
if user_id is not None:
    print("TOKEN=" + token_create(user=User.objects.get(pk=user_id))[1])
"""
ROLES = [
    "platform",
    "domain_admin",
    "domain_assistant",
    "project_admin",
    "project_assistant",
    "member",
    "anonymous",
]
# Revoking the token a run authenticates with would turn the rest of that run into 401s: the
# roles' runs leave DELETE /auth/token/ out, and a last run fuzzes it alone (its first call
# revokes the token, the others must then answer a documented 401).
REVOKE = "auth_token_destroy"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(  # noqa: S603
        [str(VENV / "python"), "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-6000:], sep="\n")
        raise SystemExit(f"manage.py {' '.join(args)} failed ({result.returncode})")
    return result.stdout


def main() -> int:
    # The compute API talks to a development cloud served from this process for the whole stage.
    devcloud = DevCloud(port=0, delay=0.1).start()
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "teachcloud.settings.local",
            "DATABASE_URL": ensure_cluster(),
            "DJANGO_DEBUG": "false",
            "TEACHCLOUD_MFA_ENFORCED": "false",
            # Fuzzing must reach the code, not the login throttle.
            "TEACHCLOUD_THROTTLE_ENABLED": "false",
            "TEACHCLOUD_CLOUD": json.dumps(devcloud.connect_kwargs()),
            "TEACHCLOUD_CLOUD_SIMULATED": "true",
            "TEACHCLOUD_COMPUTE_TIMEOUT": "10",
        }
    )
    env.pop("OS_CLOUD", None)
    manage(env, "migrate", "--noinput")
    manage(env, "seed_demo")

    out = manage(env, "shell", "-c", USERS_SCRIPT)
    users = json.loads(next(line for line in out.splitlines() if line.startswith("USERS="))[6:])

    def fresh_token(role: str) -> str | None:
        out = manage(env, "shell", "-c", TOKEN_SCRIPT.replace("USER_ID", repr(users.get(role))))
        found = [line[6:] for line in out.splitlines() if line.startswith("TOKEN=")]
        return found[0] if found else None

    port = free_port()
    # The server's request log (thousands of 4xx warnings) goes to a file, not the CI log.
    (ROOT / "test-artifacts").mkdir(exist_ok=True)
    server_log = (ROOT / "test-artifacts" / "schemathesis-server.log").open("w")
    server = subprocess.Popen(  # noqa: S603
        [
            str(VENV / "gunicorn"),
            "teachcloud.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "2",
            "--timeout",
            "60",
            "--log-level",
            "warning",
            # Room for the longest query strings the schema allows (gunicorn's default is 4094).
            "--limit-request-line",
            "8190",
        ],
        cwd=ROOT,
        env=env,
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{base}/api/schema/", timeout=5)  # noqa: S310
                break
            except OSError:
                time.sleep(0.3)
        failures = []
        runs = [(role, ["--exclude-operation-id", REVOKE]) for role in ROLES]
        runs.append(("member", ["--include-operation-id", REVOKE]))
        for role, operations in runs:
            print(f"\n--- schemathesis as {role} ({' '.join(operations)})", flush=True)
            token = fresh_token(role)
            argv = [
                str(VENV / "schemathesis"),
                "run",
                f"{base}/api/schema/",
                "--checks",
                CHECKS,
                "--max-time",
                MAX_TIME,
                # One worker: schemathesis' coverage phase hit a CPython 3.11 AST race
                # ("AST constructor recursion depth mismatch") with two.
                "--workers",
                "1",
                "--phases",
                "examples,coverage,fuzzing",
                "--request-timeout",
                "30",
                "--suppress-health-check",
                "all",
                *operations,
            ]
            if token:
                argv += ["--header", f"Authorization: Token {token}"]
            if subprocess.run(argv, cwd=ROOT, env=env, check=False).returncode != 0:  # noqa: S603
                failures.append(f"{role} ({' '.join(operations)})")
        if failures:
            print(f"\nschemathesis found problems as: {', '.join(failures)}")
            server_log.flush()
            errors = [
                line
                for line in (ROOT / "test-artifacts" / "schemathesis-server.log")
                .read_text(errors="replace")
                .splitlines()
                if "ERROR" in line or "Traceback" in line
            ]
            print("server errors (first 40 lines):", *errors[:40], sep="\n")
            return 1
        print("\nschemathesis: no server errors or schema violations for any role")
        return 0
    finally:
        server.terminate()
        server.wait(timeout=30)
        server_log.close()
        devcloud.stop()


if __name__ == "__main__":
    sys.exit(main())
