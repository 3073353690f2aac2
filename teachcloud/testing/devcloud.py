"""The development cloud for the test suite (used by the root conftest.py).

One `devcloud.DevCloud` runs in a thread for the whole pytest session on a free 127.0.0.1 port.
The product reaches it exactly like a real cloud — openstacksdk over HTTP — through a clouds.yaml
written to a temporary folder:

- in this process, `settings.TEACHCLOUD_CLOUD = {"cloud": "devcloud"}`;
- for child processes (manage.py subprocesses, a Celery worker, a second test process), the
  environment: OS_CLIENT_CONFIG_FILE, TEACHCLOUD_CLOUD=devcloud, TEACHCLOUD_CLOUD_SIMULATED=true
  and TEACHCLOUD_DEVCLOUD_URL (its base URL, for `devcloud.client.DevCloudClient`).

Modes, decided once per session:
- default: start a devcloud in this process;
- TEACHCLOUD_DEVCLOUD_URL already set (a devcloud started elsewhere, e.g. `python -m devcloud`):
  use that one through its HTTP controls;
- OS_CLOUD set (and no TEACHCLOUD_DEVCLOUD_URL): a REAL cloud — nothing is started, the product
  uses OS_CLOUD/OS_CLIENT_CONFIG_FILE, and tests that need the devcloud's controls (the `devcloud`
  fixture, the `needs_devcloud` mark) are deselected (root conftest).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLOUD_NAME = "devcloud"
ENV_URL = "TEACHCLOUD_DEVCLOUD_URL"
#: Seconds the devcloud spends in BUILD, powering-off, REBOOT … during tests.
TEST_DELAY = float(os.environ.get("TEACHCLOUD_DEVCLOUD_DELAY", "0.1"))

_ENV_KEYS = (
    "OS_CLIENT_CONFIG_FILE",
    "TEACHCLOUD_CLOUD",
    "TEACHCLOUD_CLOUD_SIMULATED",
    ENV_URL,
)


def real_cloud() -> str | None:
    """The OS_CLOUD the suite runs against instead of the devcloud, if any."""
    if os.environ.get(ENV_URL):
        return None
    return os.environ.get("OS_CLOUD") or None


def clouds_yaml(auth_url: str, *, password: str) -> str:
    return (
        "# Written by teachcloud.testing.devcloud for the test session.\n"
        "clouds:\n"
        f"  {CLOUD_NAME}:\n"
        "    auth_type: password\n"
        "    auth:\n"
        f"      auth_url: {auth_url}\n"
        "      username: admin\n"
        f"      password: {password}\n"
        "      project_name: admin\n"
        "      user_domain_name: Default\n"
        "      project_domain_name: Default\n"
        "    region_name: RegionOne\n"
        "    identity_api_version: '3'\n"
    )


@dataclass
class Session:
    """What the session fixture started. `handle` is a DevCloud (in-process) or a
    DevCloudClient (HTTP); None against a real cloud."""

    handle: Any
    url: str | None
    real_cloud: str | None
    _owned: Any = None
    _saved_env: dict[str, str | None] | None = None
    _folder: Any = None

    @property
    def simulated(self) -> bool:
        return self.handle is not None

    def close(self) -> None:
        from compute.cloud import reset_backend_cache

        reset_backend_cache()
        if self._owned is not None:
            self._owned.stop()
        for key, value in (self._saved_env or {}).items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self._folder is not None:
            self._folder.cleanup()


def start_session() -> Session:
    """Start (or find) the cloud for this test session and point settings and env at it."""
    from django.conf import settings

    from compute.cloud import reset_backend_cache

    reset_backend_cache()
    name = real_cloud()
    if name:
        settings.TEACHCLOUD_CLOUD = {"cloud": name}
        settings.TEACHCLOUD_CLOUD_SIMULATED = False
        return Session(handle=None, url=None, real_cloud=name)

    from devcloud import DevCloud, catalogue
    from devcloud.client import DevCloudClient

    saved = {key: os.environ.get(key) for key in _ENV_KEYS}
    owned = None
    url = os.environ.get(ENV_URL)
    if url:
        handle: Any = DevCloudClient(url)
        auth_url = handle.auth_url
    else:
        owned = DevCloud(port=0, delay=TEST_DELAY).start()
        handle = owned
        url = owned.url
        auth_url = owned.auth_url
    folder = tempfile.TemporaryDirectory(prefix="teachcloud-devcloud-")
    path = Path(folder.name) / "clouds.yaml"
    path.write_text(clouds_yaml(auth_url, password=catalogue.ADMIN_PASSWORD), encoding="utf-8")
    os.environ.update(
        {
            "OS_CLIENT_CONFIG_FILE": str(path),
            "TEACHCLOUD_CLOUD": CLOUD_NAME,
            "TEACHCLOUD_CLOUD_SIMULATED": "true",
            ENV_URL: url,
        }
    )
    settings.TEACHCLOUD_CLOUD = {"cloud": CLOUD_NAME}
    settings.TEACHCLOUD_CLOUD_SIMULATED = True
    return Session(
        handle=handle, url=url, real_cloud=None, _owned=owned, _saved_env=saved, _folder=folder
    )
