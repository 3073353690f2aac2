"""A throw-away PostgreSQL 15 cluster for the test suite.

`ensure_cluster()` starts one private cluster per test process (initdb into a temporary folder,
listening on 127.0.0.1 at a free port, its socket in the same folder) and returns a DATABASE_URL.
PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user. The
cluster is stopped and removed when the process exits.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PG_BIN_CANDIDATES = [
    os.environ.get("PG_BIN", ""),
    "/usr/lib/postgresql/15/bin",
    "/usr/lib/postgresql/16/bin",
    "/usr/lib/postgresql/17/bin",
]


class ClusterError(RuntimeError):
    pass


def _pg_bin() -> Path:
    for candidate in PG_BIN_CANDIDATES:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise ClusterError(
        "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH). "
        "Install them (Debian: apt-get install postgresql-15) or set DATABASE_URL."
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def _run(argv: list[str]) -> None:
    result = subprocess.run(  # noqa: S603 - fixed binaries, arguments built here
        _as_server_user(argv), capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ClusterError(f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}")


def ensure_cluster() -> str:
    """Start a private cluster (once per process) and return its DATABASE_URL."""
    existing = os.environ.get("TEACHCLOUD_TEST_PG_URL")
    if existing and os.environ.get("TEACHCLOUD_TEST_PG_PID") == str(os.getpid()):
        return existing
    pg_bin = _pg_bin()
    base = Path(tempfile.mkdtemp(prefix="teachcloud-pg-"))
    data = base / "data"
    if os.geteuid() == 0:
        pg = pwd.getpwnam("postgres")
        os.chown(base, pg.pw_uid, pg.pw_gid)
    base.chmod(0o755)
    _run(
        [
            str(pg_bin / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]
    )
    port = _free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
        "-c max_connections=200 -c shared_buffers=256MB"
    )
    _run(
        [
            str(pg_bin / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(base / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        ]
    )

    def stop() -> None:
        subprocess.run(  # noqa: S603
            _as_server_user([str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)

    atexit.register(stop)
    _run(
        [
            str(pg_bin / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "teachcloud",
        ]
    )
    url = f"postgres://postgres@127.0.0.1:{port}/teachcloud"
    os.environ["TEACHCLOUD_TEST_PG_URL"] = url
    os.environ["TEACHCLOUD_TEST_PG_PID"] = str(os.getpid())
    return url
