"""Checks a running demo (bin/demo) the way a new user meets it, over HTTP only.

    python .ci/demo_check.py http://127.0.0.1:8000 first    # after the first start
    python .ci/demo_check.py http://127.0.0.1:8000 again    # after a restart: data kept

first: the teacher of the first course finds the low-balance email *sent* under My notifications
(the worker delivered it: PostgreSQL's advisory locks work in the demo); 20 parallel identical
requests — reads, and writes that race for one row — answer without a single 5xx; a marker
request is left behind. again: the marker request is still there (the demo keeps its data).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

import requests

PASSWORD = "teachcloud-demo"
PARALLEL = 20


def token(base: str, username: str) -> requests.Session:
    answer = requests.post(
        f"{base}/api/v1/auth/token/",
        json={"username": username, "password": PASSWORD},
        timeout=30,
    )
    answer.raise_for_status()
    session = requests.Session()
    session.headers["Authorization"] = f"Token {answer.json()['token']}"
    return session


def parallel(label: str, call) -> list[int]:
    with ThreadPoolExecutor(PARALLEL) as pool:
        statuses = list(pool.map(lambda _i: call().status_code, range(PARALLEL)))
    print(f"{label}: {sorted(statuses)}")
    failed = [s for s in statuses if s >= 500]
    if failed:
        sys.exit(f"{label}: {len(failed)} of {PARALLEL} parallel requests answered 5xx")
    return statuses


def low_balance_email_sent(base: str) -> None:
    teacher = token(base, "north-teacher1")
    deadline = time.monotonic() + 180
    while True:
        rows = teacher.get(f"{base}/api/v1/notifications/", timeout=30).json()["results"]
        low = [n for n in rows if n["event"] == "low_balance" and n["channel"] == "email"]
        states = sorted({n["status"] for n in low})
        if low and states == ["sent"]:
            print(f"low-balance email: {len(low)} sent")
            return
        if time.monotonic() > deadline:
            sys.exit(f"the low-balance email was not sent in 3 minutes: {states or 'none'}")
        time.sleep(3)


def first(base: str) -> None:
    low_balance_email_sent(base)
    student = token(base, "north-2024020001")
    parallel("GET servers/", lambda: student.get(f"{base}/api/v1/servers/", timeout=60))
    me = student.get(f"{base}/api/v1/users/me/", timeout=30).json()["id"]
    own = student.get(f"{base}/api/v1/memberships/?user={me}", timeout=30).json()["results"]
    if not own:
        sys.exit("the demo student has no membership")
    body = {
        "membership": own[0]["id"],
        "vcpus": 4,
        "ram_gib": 8,
        "disk_gib": 80,
        "justification": "demo check: the same request twenty times at once",
    }
    statuses = parallel(
        "POST allocation-requests/ (one pending request per member)",
        lambda: student.post(f"{base}/api/v1/allocation-requests/", json=body, timeout=60),
    )
    if statuses.count(201) != 1:
        sys.exit(f"expected exactly one request created, got {statuses.count(201)}")


def again(base: str) -> None:
    student = token(base, "north-2024020001")
    rows = student.get(f"{base}/api/v1/allocation-requests/", timeout=30).json()["results"]
    kept = [r for r in rows if "twenty times at once" in (r.get("justification") or "")]
    if not kept:
        sys.exit("after the restart the request made before it is gone")
    print(f"after restart: {len(kept)} request kept")
    low_balance_email_sent(base)


if __name__ == "__main__":
    {"first": first, "again": again}[sys.argv[2]](sys.argv[1].rstrip("/"))
