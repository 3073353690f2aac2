"""A stdlib HTTP client for the development cloud's private API (/_devcloud/...): the same
controls as `DevCloud`, for a devcloud running in another process (``python -m devcloud``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from . import catalogue

JsonDict = dict[str, Any]


class DevCloudError(RuntimeError):
    pass


class DevCloudClient:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    @property
    def auth_url(self) -> str:
        return f"{self.url}/identity/v3"

    def _request(self, method: str, path: str, data: Any = None, **query: Any) -> Any:
        url = f"{self.url}/_devcloud{path}"
        params = {k: v for k, v in query.items() if v is not None}
        if params:
            url += "?" + urllib.parse.urlencode(params)
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(  # noqa: S310 - the devcloud's own URL
            url, data=body, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise DevCloudError(f"{method} {url}: {exc.code} {exc.read()[:300]!r}") from exc
        return json.loads(raw) if raw else None

    def connect_kwargs(self) -> JsonDict:
        return {
            "auth_type": "password",
            "auth": {
                "auth_url": self.auth_url,
                "username": catalogue.ADMIN_USER,
                "password": catalogue.ADMIN_PASSWORD,
                "project_name": catalogue.ADMIN_PROJECT,
                "user_domain_name": "Default",
                "project_domain_name": "Default",
            },
            "region_name": catalogue.REGION,
            "identity_api_version": "3",
        }

    def info(self) -> JsonDict:
        return self._request("GET", "")

    def reset(self) -> None:
        self._request("POST", "/reset")

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
        data = {
            "method": method,
            "path": path,
            "status": status,
            "delay": delay,
            "times": times,
            "apply": apply,
            "message": message,
        }
        return self._request("POST", "/faults", data)["fault"]

    def clear_faults(self) -> None:
        self._request("DELETE", "/faults")

    def faults(self) -> list[JsonDict]:
        return self._request("GET", "/faults")["faults"]

    def servers(self) -> list[JsonDict]:
        return self._request("GET", "/servers")["servers"]

    def server(self, server_id: str) -> JsonDict | None:
        return next((s for s in self.servers() if s["id"] == server_id), None)

    def create_server_behind_back(self, **data: Any) -> JsonDict:
        return self._request("POST", "/servers", data)["server"]

    def delete_server_behind_back(self, server_id: str) -> None:
        self._request("DELETE", f"/servers/{server_id}")

    def set_status(self, server_id: str, status: str, **extra: Any) -> JsonDict:
        return self._request("POST", f"/servers/{server_id}/status", {"status": status, **extra})

    def requests(self, method: str | None = None, path: str | None = None) -> list[JsonDict]:
        return self._request("GET", "/requests", method=method, path=path)["requests"]

    def expire_tokens(self) -> int:
        return self._request("POST", "/tokens/expire")["expired"]

    def set_delay(self, seconds: float) -> None:
        self._request("POST", "/config", {"delay": seconds})
