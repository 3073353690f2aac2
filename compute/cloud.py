"""Which cloud the portal talks to, and the backend for it.

The first of these that exists wins:
1. the active `CloudCredential` (platform staff edit it in the admin; password encrypted with
   compute.secrets);
2. `settings.TEACHCLOUD_CLOUD`: keyword arguments for `openstack.connect` — e.g.
   `{"cloud": "devcloud"}` (a cloud in clouds.yaml) or `{"auth": {...}, "region_name": ...}`;
   environment variable TEACHCLOUD_CLOUD holds a cloud name or that dict as JSON;
3. the `OS_CLOUD` environment variable (clouds.yaml, as the OpenStack CLI uses it).
Otherwise `NotConfigured`.

Backends are cached per process and per configuration (a changed credential, setting or timeout
gives a new one), so connections and tokens are reused across requests and tasks; a forked worker
never reuses its parent's connection.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.translation import gettext as _

from compute.backends.base import ComputeBackend, NotConfigured

if TYPE_CHECKING:
    from compute.models import CloudCredential

_lock = threading.Lock()
_cache: OrderedDict[tuple[Any, ...], ComputeBackend] = OrderedDict()
_CACHE_SIZE = 8


def _options() -> dict[str, Any]:
    return {
        "timeout": float(getattr(settings, "TEACHCLOUD_COMPUTE_TIMEOUT", 30.0)),
        "retries": int(getattr(settings, "TEACHCLOUD_COMPUTE_RETRIES", 2)),
        "backoff": float(getattr(settings, "TEACHCLOUD_COMPUTE_BACKOFF", 1.0)),
        "network": str(getattr(settings, "TEACHCLOUD_COMPUTE_NETWORK", "auto")),
        "project_role": str(getattr(settings, "TEACHCLOUD_COMPUTE_PROJECT_ROLE", "member")),
        "name_prefix": str(getattr(settings, "TEACHCLOUD_COMPUTE_NAME_PREFIX", "tc-")),
    }


def credential_config(credential: CloudCredential) -> dict[str, Any]:
    """openstack.connect keyword arguments for a CloudCredential (password decrypted)."""
    from compute.secrets import SecretError, decrypt

    try:
        password = decrypt(credential.password_encrypted)
    except SecretError as exc:
        raise NotConfigured(str(exc), detail=f"credential {credential.pk}") from exc
    config: dict[str, Any] = {
        "auth_type": "password",
        "auth": {
            "auth_url": credential.auth_url,
            "username": credential.username,
            "password": password,
            "project_name": credential.project_name,
            "user_domain_name": credential.user_domain_name,
            "project_domain_name": credential.project_domain_name,
        },
        "identity_api_version": "3",
        "verify": credential.verify_tls,
        # Only this record counts: no clouds.yaml or OS_* variables mixed in.
        "load_yaml_config": False,
        "load_envvars": False,
    }
    if credential.region_name:
        config["region_name"] = credential.region_name
    return config


def settings_config() -> dict[str, Any] | None:
    """The configured connect kwargs from settings, else OS_CLOUD; None when neither is set."""
    value = getattr(settings, "TEACHCLOUD_CLOUD", None)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        value = json.loads(text) if text.startswith("{") else {"cloud": text}
    if value:
        config = dict(value)
        if "cloud" not in config:
            config.setdefault("load_yaml_config", False)
            config.setdefault("load_envvars", False)
        return config
    if os.environ.get("OS_CLOUD"):
        return {"cloud": os.environ["OS_CLOUD"]}
    return None


def _active_credential() -> CloudCredential | None:
    from compute.models import CloudCredential

    return CloudCredential.objects.filter(active=True).first()


def _build(key: tuple[Any, ...], config: dict[str, Any], simulated: bool) -> ComputeBackend:
    from compute.backends.openstack import OpenStackBackend

    with _lock:
        backend = _cache.get(key)
        if backend is not None:
            _cache.move_to_end(key)
            return backend
        backend = OpenStackBackend(config=config, simulated=simulated, **_options())
        _cache[key] = backend
        while len(_cache) > _CACHE_SIZE:
            _, old = _cache.popitem(last=False)
            close = getattr(old, "close", None)
            if close:
                close()
        return backend


def _key(*parts: Any) -> tuple[Any, ...]:
    return (os.getpid(), *parts, json.dumps(_options(), sort_keys=True))


def backend_for_credential(credential: CloudCredential) -> ComputeBackend:
    """A backend for this credential (active or not: the admin's "test connection")."""
    config = credential_config(credential)
    stamp = credential.updated_at.isoformat() if credential.updated_at else ""
    key = _key("credential", credential.pk, stamp, credential.password_encrypted)
    return _build(key, config, bool(credential.simulated))


def get_backend() -> ComputeBackend:
    """The backend of the configured cloud (see the module docstring). Raises NotConfigured."""
    credential = _active_credential()
    if credential is not None:
        return backend_for_credential(credential)
    config = settings_config()
    if config is None:
        raise NotConfigured(
            _("No cloud is configured. Please tell the platform operator."),
            detail="no active CloudCredential, TEACHCLOUD_CLOUD or OS_CLOUD",
        )
    simulated = bool(getattr(settings, "TEACHCLOUD_CLOUD_SIMULATED", False))
    key = _key(
        "settings",
        json.dumps(config, sort_keys=True, default=str),
        os.environ.get("OS_CLIENT_CONFIG_FILE", ""),
        simulated,
    )
    return _build(key, config, simulated)


def cloud_is_simulated() -> bool:
    """Whether the configured cloud is the development cloud (for the portal banner). No
    network call; False when no cloud is configured."""
    credential = _active_credential()
    if credential is not None:
        return bool(credential.simulated)
    if settings_config() is None:
        return False
    return bool(getattr(settings, "TEACHCLOUD_CLOUD_SIMULATED", False))


def reset_backend_cache() -> None:
    """Forget every cached backend (tests; after changing credentials by hand)."""
    with _lock:
        backends = list(_cache.values())
        _cache.clear()
    for backend in backends:
        close = getattr(backend, "close", None)
        if close:
            close()
