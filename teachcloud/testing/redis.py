"""A throw-away redis-server for integration tests (Celery broker).

`redis_server()` starts the Debian `redis-server` binary on a free 127.0.0.1 port with its own
temporary directory, no persistence and no other interface, waits until it answers PING, yields
its URL and stops it afterwards. When the binary is missing, the test is skipped on a developer's
machine but fails in CI (environment variable CI=true): CI must install `redis-server`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REDIS_BINARIES = ("/usr/bin/redis-server", "/usr/local/bin/redis-server")
START_TIMEOUT = 20.0


def redis_binary() -> str | None:
    """The redis-server executable, or None when it is not installed."""
    for candidate in REDIS_BINARIES:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("redis-server")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def require_redis_binary() -> str:
    """The binary, or skip the test (locally) / fail it (in CI) when it is missing."""
    import pytest

    binary = redis_binary()
    if binary is None:
        message = "redis-server is not installed (Debian package redis-server)"
        if in_ci():
            pytest.fail(f"{message}: CI must install it", pytrace=False)
        pytest.skip(message)
    return binary


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server(*, db: int = 0) -> Iterator[str]:
    """Run a private redis-server; yield its URL (redis://127.0.0.1:PORT/DB)."""
    binary = require_redis_binary()
    with tempfile.TemporaryDirectory(prefix="tc-redis-") as workdir:
        port = free_port()
        log = Path(workdir) / "redis.log"
        process = subprocess.Popen(  # noqa: S603 - a fixed local binary and our own arguments
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                workdir,
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--daemonize",
                "no",
                "--logfile",
                str(log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not _ping(port):
                if process.poll() is not None or time.monotonic() > deadline:
                    output = log.read_text(errors="replace") if log.exists() else ""
                    raise RuntimeError(
                        f"redis-server did not start on port {port} "
                        f"(exit code {process.poll()}):\n{output[-2000:]}"
                    )
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/{db}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
