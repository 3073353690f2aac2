"""The HTTP server of the development cloud (stdlib, one thread per connection, HTTP/1.1
keep-alive) and `DevCloud`, which runs it in a background thread for tests and scripts."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from . import api, catalogue
from .cloud import Cloud, CloudConfig, Fault, JsonDict

log = logging.getLogger("devcloud")

SIMULATED_HEADER = ("X-DevCloud", "simulated")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], cloud: Cloud, stopping: threading.Event) -> None:
        self.cloud = cloud
        self.stopping = stopping
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "DevCloud/1.0 (TeachCloud development cloud, simulated)"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _handle(self) -> None:
        started = time.time()
        cloud = self.server.cloud
        parsed = urllib.parse.urlsplit(self.path)
        path = parsed.path.rstrip("/") or "/"
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        req = api.Request(
            method=self.command,
            path=path,
            query=urllib.parse.parse_qs(parsed.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            base_url=f"http://{host}",
        )
        fault = None if path.startswith("/_devcloud") else cloud.match_fault(req.method, path)
        if fault is not None and fault.status == "timeout":
            # Logged on arrival (status 0: no answer), then the request hangs.
            self._log(req, 0, started, fault)
            self._respond_with_fault(cloud, req, fault)
            self.close_connection = True
            return
        response = self._respond_with_fault(cloud, req, fault) if fault else None
        if response is None:
            try:
                response = api.dispatch(cloud, req)
            except Exception as exc:  # a bug in the devcloud: answer like a broken service
                log.exception("devcloud failed on %s %s", req.method, path)
                response = api.error_response(path, 500, f"DevCloud internal error: {exc!r}")
        self._log(req, response.status, started, fault)
        self._send(response)

    def _respond_with_fault(
        self, cloud: Cloud, req: api.Request, fault: Fault
    ) -> api.Response | None:
        generation = cloud.fault_generation
        if fault.delay:
            self._sleep(fault.delay, cloud, generation)
        if fault.status is None:
            return None  # slow only: carry on normally
        if fault.status == "timeout":
            if fault.apply:
                api.dispatch(cloud, req)  # the work is done, the answer never comes
            # Hang until the client gives up (or faults are cleared / the cloud stops).
            self._sleep(cloud.config.hang_seconds, cloud, generation)
            return None
        status = int(fault.status)
        if fault.apply:
            api.dispatch(cloud, req)  # the work is done, the answer is lost
        message = fault.message or api.injected_message(req.path, status)
        return api.error_response(req.path, status, message)

    def _sleep(self, seconds: float, cloud: Cloud, generation: int) -> None:
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.server.stopping.is_set() or cloud.fault_generation != generation:
                return
            time.sleep(min(0.05, max(0.0, deadline - time.time())))

    def _log(self, req: api.Request, status: int, started: float, fault: Fault | None) -> None:
        self.server.cloud.log_request(
            {
                "time": started,
                "method": req.method,
                "path": req.path,
                "query": urllib.parse.urlencode(
                    [(k, v) for k, vs in req.query.items() for v in vs]
                ),
                "status": status,
                "fault": fault.id if fault else None,
                "microversion": api.fmt(req.microversion)
                if api.service_of(req.path) == "compute"
                else None,
                "seconds": round(time.time() - started, 4),
            }
        )

    def _send(self, response: api.Response) -> None:
        try:
            self.send_response(response.status)
            for name, value in [*response.headers, SIMULATED_HEADER]:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD" and response.body:
                self.wfile.write(response.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


class DevCloud:
    """A development cloud served from a background thread.

    `port=0` picks a free port. Everything `Cloud` offers for tests is available here directly
    (reset, fail, clear_faults, servers, …) so in-process tests need no HTTP for the controls.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = 0.1,
        state_file: str | None = None,
        token_ttl: float = 3600.0,
        hang_seconds: float = 120.0,
    ) -> None:
        self.cloud = Cloud(
            CloudConfig(
                delay=delay, state_file=state_file, token_ttl=token_ttl, hang_seconds=hang_seconds
            )
        )
        self._stopping = threading.Event()
        self._httpd = _Server((host, port), self.cloud, self._stopping)
        self._thread: threading.Thread | None = None

    # -- Lifecycle -----------------------------------------------------------------------------

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/identity/v3"

    def connect_kwargs(self) -> JsonDict:
        """openstack.connect(**kwargs) for the service account (admin in project admin)."""
        return {
            "auth_type": "password",
            "auth": {
                "auth_url": self.auth_url,
                "username": catalogue.ADMIN_USER,
                "password": self.cloud.config.admin_password,
                "project_name": catalogue.ADMIN_PROJECT,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": catalogue.REGION,
            "identity_api_version": "3",
        }

    def start(self) -> DevCloud:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"devcloud:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self._httpd.server_close()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()
        with contextlib.suppress(OSError):
            self.cloud.save()

    def __enter__(self) -> DevCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- Controls (same as the /_devcloud HTTP API) ---------------------------------------------

    def reset(self) -> None:
        self.cloud.reset()

    def fail(
        self,
        method: str = "*",
        path: str = ".*",
        status: int | str | None = None,
        *,
        delay: float = 0.0,
        times: int | None = None,
        apply: bool = False,
        message: str = "",
    ) -> JsonDict:
        fault = self.cloud.add_fault(
            method=method,
            path=path,
            status=status,
            delay=delay,
            times=times,
            apply=apply,
            message=message,
        )
        return fault.as_dict()

    def clear_faults(self) -> None:
        self.cloud.clear_faults()

    def faults(self) -> list[JsonDict]:
        with self.cloud.lock:
            return [f.as_dict() for f in self.cloud.faults]

    def servers(self) -> list[JsonDict]:
        return self.cloud.raw_servers()

    def server(self, server_id: str) -> JsonDict | None:
        return next((s for s in self.servers() if s["id"] == server_id), None)

    def create_server_behind_back(self, **data: Any) -> JsonDict:
        return self.cloud.raw_server_create(data)

    def delete_server_behind_back(self, server_id: str) -> None:
        self.cloud.server_delete(None, server_id, now=True)

    def set_status(self, server_id: str, status: str, **extra: Any) -> JsonDict:
        return self.cloud.raw_set_status(server_id, {"status": status, **extra})

    def requests(self, method: str | None = None, path: str | None = None) -> list[JsonDict]:
        return self.cloud.request_log(method=method, path=path)

    def expire_tokens(self) -> int:
        return self.cloud.expire_tokens()

    def set_delay(self, seconds: float) -> None:
        with self.cloud.lock:
            self.cloud.config.delay = seconds

    def projects(self) -> list[JsonDict]:
        return self.cloud.projects_list({})

    def domains(self) -> list[JsonDict]:
        return self.cloud.domains_list({})

    def quota(self, project_id: str) -> JsonDict:
        return self.cloud.quota_get(project_id)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True
