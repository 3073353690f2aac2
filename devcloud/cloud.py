"""The state of the development cloud and every operation on it, independent of HTTP.

One `Cloud` holds identity (domains, projects, users, roles, assignments, tokens), compute
(flavors, servers, quotas, key pairs, the hypervisor) and images, behind one re-entrant lock, so
any number of request threads can call it. Status changes (BUILD → ACTIVE, powering-off →
SHUTOFF …) are due times stored on the server and applied lazily whenever the state is touched:
no timer threads, and a state file restored after a restart carries on where it stopped.

Errors are `ApiError(status, message)`; the HTTP layer formats them the way each service does.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import secrets
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import catalogue

Microversion = tuple[int, int]

NOVA_MIN = (2, 1)
NOVA_MAX = (2, 100)

JsonDict = dict[str, Any]


class ApiError(Exception):
    """An OpenStack error answer. `kind` is Nova's fault name when it differs from the default
    for the status (e.g. 400 badRequest)."""

    def __init__(self, status: int, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


def not_found(message: str) -> ApiError:
    return ApiError(404, message)


def iso(ts: float, *, micro: bool = False) -> str:
    moment = datetime.fromtimestamp(ts, tz=UTC)
    if micro:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class CloudConfig:
    #: Seconds a server spends in a transitional state (BUILD, powering-off, REBOOT, deleting).
    delay: float = 0.1
    #: Token lifetime in seconds.
    token_ttl: float = 3600.0
    admin_password: str = catalogue.ADMIN_PASSWORD
    #: How long a "timeout" fault keeps a request hanging when nobody clears it.
    hang_seconds: float = 120.0
    #: JSON file the state is saved to after every change (None: memory only).
    state_file: str | None = None


@dataclass
class Fault:
    id: int
    method: str  # "*" = any
    path: str  # regular expression, searched in the request path
    status: int | str | None  # HTTP status, "timeout", or None (slow only)
    delay: float = 0.0
    times: int | None = None  # None = until cleared
    apply: bool = False  # carry the request out, then answer the error (the answer was lost)
    message: str = ""
    hits: int = 0
    regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.regex = re.compile(self.path)

    def as_dict(self) -> JsonDict:
        return {
            "id": self.id,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "delay": self.delay,
            "times": self.times,
            "apply": self.apply,
            "message": self.message,
            "hits": self.hits,
        }


# Nova's status names from vm_state + task_state (nova/api/openstack/common.py, abridged).
_REBOOT_TASKS = {"rebooting", "reboot_pending", "reboot_started"}
_HARD_REBOOT_TASKS = {"rebooting_hard", "reboot_pending_hard", "reboot_started_hard"}
_VM_STATE_STATUS = {
    "building": "BUILD",
    "active": "ACTIVE",
    "stopped": "SHUTOFF",
    "error": "ERROR",
    "paused": "PAUSED",
    "suspended": "SUSPENDED",
    "deleted": "DELETED",
}
_STATUS_VM_STATE = {
    "BUILD": ("building", "spawning", 0),
    "ACTIVE": ("active", None, 1),
    "SHUTOFF": ("stopped", None, 4),
    "STOPPED": ("stopped", None, 4),
    "ERROR": ("error", None, 0),
    "PAUSED": ("paused", None, 3),
    "SUSPENDED": ("suspended", None, 7),
    "REBOOT": ("active", "reboot_started", 1),
    "HARD_REBOOT": ("active", "reboot_started_hard", 1),
}
POWER_STATES = {"active": 1, "stopped": 4, "paused": 3, "suspended": 7}


def server_status(vm_state: str, task_state: str | None) -> str:
    if vm_state in ("active", "stopped") and task_state in _HARD_REBOOT_TASKS:
        return "HARD_REBOOT"
    if vm_state == "active" and task_state in _REBOOT_TASKS:
        return "REBOOT"
    return _VM_STATE_STATUS.get(vm_state, "UNKNOWN")


class Cloud:
    """The whole simulated cloud. Every public method takes the lock."""

    def __init__(self, config: CloudConfig | None = None) -> None:
        self.config = config or CloudConfig()
        self.lock = threading.RLock()
        self.faults: list[Fault] = []
        self._fault_seq = 0
        #: Bumped by reset/clear_faults: hanging requests wake up and give up.
        self.fault_generation = 0
        self.requests: deque[JsonDict] = deque(maxlen=20000)
        self.state: JsonDict = {}
        if self.config.state_file and os.path.exists(self.config.state_file):
            self._load(self.config.state_file)
        else:
            self._seed()

    # -- State, persistence -------------------------------------------------------------------

    def _seed(self) -> None:
        now = time.time()
        st: JsonDict = {
            "domains": {},
            "projects": {},
            "users": {},
            "roles": {},
            "assignments": [],
            "tokens": {},
            "flavors": {},
            "images": {},
            "keypairs": {},
            "quotas": {},
            "servers": {},
            "consoles": {},
            "next_ip": 3,
            "seeded_at": now,
        }
        st["domains"][catalogue.DEFAULT_DOMAIN_ID] = {
            "id": catalogue.DEFAULT_DOMAIN_ID,
            "name": "Default",
            "description": "The default domain",
            "enabled": True,
            "tags": [],
            "options": {},
        }
        for name in catalogue.ROLE_NAMES:
            rid = catalogue.stable_id("role", name, dashes=False)
            st["roles"][rid] = {
                "id": rid,
                "name": name,
                "domain_id": None,
                "description": None,
                "options": {"immutable": True},
            }
        admin_project = catalogue.stable_id("project", catalogue.ADMIN_PROJECT, dashes=False)
        st["projects"][admin_project] = self._project_record(
            pid=admin_project,
            name=catalogue.ADMIN_PROJECT,
            domain_id=catalogue.DEFAULT_DOMAIN_ID,
            description="Bootstrap project for initializing the cloud.",
        )
        service_project = catalogue.stable_id("project", "service", dashes=False)
        st["projects"][service_project] = self._project_record(
            pid=service_project, name="service", domain_id=catalogue.DEFAULT_DOMAIN_ID
        )
        admin_user = catalogue.stable_id("user", catalogue.ADMIN_USER, dashes=False)
        st["users"][admin_user] = {
            "id": admin_user,
            "name": catalogue.ADMIN_USER,
            "domain_id": catalogue.DEFAULT_DOMAIN_ID,
            "enabled": True,
            "password": self.config.admin_password,
            "default_project_id": admin_project,
            "password_expires_at": None,
            "options": {},
        }
        admin_role = catalogue.stable_id("role", "admin", dashes=False)
        st["assignments"] = [
            [admin_user, "project", admin_project, admin_role],
            [admin_user, "system", "all", admin_role],
        ]
        for name, fid, vcpus, ram, disk in catalogue.FLAVORS:
            st["flavors"][fid] = {
                "id": fid,
                "name": name,
                "vcpus": vcpus,
                "ram": ram,
                "disk": disk,
                "ephemeral": 0,
                "swap": 0,
                "is_public": True,
                "description": None,
            }
        created = iso(now - 86400 * 30)
        for name, size, min_disk, min_ram, distro in catalogue.IMAGES:
            iid = catalogue.stable_id("image", name)
            st["images"][iid] = {
                "id": iid,
                "name": name,
                "status": "active",
                "visibility": "public",
                "protected": False,
                "os_hidden": False,
                "owner": admin_project,
                "size": size,
                "virtual_size": None,
                "min_disk": min_disk,
                "min_ram": min_ram,
                "disk_format": "qcow2",
                "container_format": "bare",
                "checksum": secrets.token_hex(16),
                "os_hash_algo": "sha512",
                "os_hash_value": secrets.token_hex(64),
                "os_distro": distro,
                "created_at": created,
                "updated_at": created,
                "tags": [],
            }
        self.state = st

    def _load(self, path: str) -> None:
        with open(path, encoding="utf-8") as fh:
            self.state = json.load(fh)

    def save(self) -> None:
        """Write the state file (atomically) if one is configured."""
        path = self.config.state_file
        if not path:
            return
        with self.lock:
            data = json.dumps(self.state, indent=1, sort_keys=True)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".devcloud-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def reset(self) -> None:
        """Back to a fresh cloud: catalogue and admin only, no faults, empty request log.
        Tokens stay valid (their user and project are seeded with stable ids)."""
        with self.lock:
            tokens = self.state.get("tokens", {})
            self._seed()
            self.state["tokens"] = {
                tid: tok
                for tid, tok in tokens.items()
                if tok["user_id"] in self.state["users"]
                and (tok.get("project_id") is None or tok["project_id"] in self.state["projects"])
            }
            self.faults.clear()
            self.fault_generation += 1
            self.requests.clear()
        self.save()

    # -- Faults and the request log ----------------------------------------------------------

    def add_fault(
        self,
        *,
        method: str = "*",
        path: str = ".*",
        status: int | str | None = None,
        delay: float = 0.0,
        times: int | None = None,
        apply: bool = False,
        message: str = "",
    ) -> Fault:
        if status is None and not delay:
            status = 500
        if isinstance(status, str) and status != "timeout":
            status = int(status)
        with self.lock:
            self._fault_seq += 1
            fault = Fault(
                id=self._fault_seq,
                method=(method or "*").upper(),
                path=path,
                status=status,
                delay=float(delay or 0),
                times=times,
                apply=apply,
                message=message,
            )
            self.faults.append(fault)
            return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()
            self.fault_generation += 1

    def match_fault(self, method: str, path: str) -> Fault | None:
        """The first live fault for this request; counts the hit (and retires it after `times`)."""
        with self.lock:
            for fault in self.faults:
                if fault.method not in ("*", method.upper()):
                    continue
                if not fault.regex.search(path):
                    continue
                fault.hits += 1
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                return fault
        return None

    def log_request(self, entry: JsonDict) -> None:
        with self.lock:
            self.requests.append(entry)

    def request_log(self, *, method: str | None = None, path: str | None = None) -> list[JsonDict]:
        regex = re.compile(path) if path else None
        with self.lock:
            return [
                dict(e)
                for e in self.requests
                if (method is None or e["method"] == method.upper())
                and (regex is None or regex.search(e["path"]))
            ]

    # -- Identity: tokens -----------------------------------------------------------------------

    def _role_id(self, name: str) -> str | None:
        for role in self.state["roles"].values():
            if role["name"] == name:
                return role["id"]
        return None

    def _roles_on(self, user_id: str, kind: str, target: str) -> list[JsonDict]:
        ids = [a[3] for a in self.state["assignments"] if a[:3] == [user_id, kind, target]]
        return [self.state["roles"][rid] for rid in ids if rid in self.state["roles"]]

    def _find_domain(self, ref: JsonDict | None) -> JsonDict | None:
        if not ref:
            return None
        if ref.get("id"):
            return self.state["domains"].get(ref["id"])
        for dom in self.state["domains"].values():
            if dom["name"] == ref.get("name"):
                return dom
        return None

    def _find_user(self, ref: JsonDict) -> JsonDict | None:
        if ref.get("id"):
            return self.state["users"].get(ref["id"])
        domain = self._find_domain(ref.get("domain"))
        if domain is None:
            return None
        for user in self.state["users"].values():
            if user["name"] == ref.get("name") and user["domain_id"] == domain["id"]:
                return user
        return None

    def _find_project(self, ref: JsonDict) -> JsonDict | None:
        if ref.get("id"):
            return self.state["projects"].get(ref["id"])
        domain = self._find_domain(ref.get("domain"))
        if domain is None:
            return None
        for project in self.state["projects"].values():
            if project["name"] == ref.get("name") and project["domain_id"] == domain["id"]:
                return project
        return None

    def authenticate(self, body: JsonDict) -> tuple[str, JsonDict]:
        """POST /v3/auth/tokens: returns (token id, token record)."""
        unauthorized = ApiError(401, "The request you have made requires authentication.")
        try:
            auth = body["auth"]
            identity = auth["identity"]
            methods = identity["methods"]
        except (KeyError, TypeError):
            raise ApiError(
                400,
                "Expecting to find identity in auth. The server could not "
                "comply with the request since it is either malformed or otherwise "
                "incorrect. The client is assumed to be in error.",
            ) from None
        with self.lock:
            if "password" in methods:
                ref = identity.get("password", {}).get("user", {})
                user = self._find_user(ref)
                if user is None or not user["enabled"] or user["password"] != ref.get("password"):
                    raise unauthorized
            elif "token" in methods:
                old = self.state["tokens"].get(identity.get("token", {}).get("id", ""))
                if old is None or old["expires"] < time.time():
                    raise unauthorized
                user = self.state["users"].get(old["user_id"])
                if user is None:
                    raise unauthorized
            else:
                raise unauthorized
            scope = auth.get("scope") or {}
            record: JsonDict = {
                "user_id": user["id"],
                "methods": methods,
                "issued": time.time(),
                "expires": time.time() + self.config.token_ttl,
                "audit_id": secrets.token_urlsafe(16)[:22],
                "project_id": None,
                "domain_id": None,
                "system": False,
            }
            if "project" in scope:
                project = self._find_project(scope["project"])
                if project is None or not project["enabled"]:
                    raise unauthorized
                roles = self._roles_on(user["id"], "project", project["id"])
                if not roles:
                    raise unauthorized
                record["project_id"] = project["id"]
            elif "domain" in scope:
                domain = self._find_domain(scope["domain"])
                if domain is None:
                    raise unauthorized
                roles = self._roles_on(user["id"], "domain", domain["id"])
                if not roles:
                    raise unauthorized
                record["domain_id"] = domain["id"]
            elif "system" in scope:
                roles = self._roles_on(user["id"], "system", "all")
                if not roles:
                    raise unauthorized
                record["system"] = True
            else:
                roles = []
            record["roles"] = [r["id"] for r in roles]
            token_id = "gAAAAA" + secrets.token_urlsafe(120)
            self.state["tokens"][token_id] = record
            # Expired tokens are forgotten as new ones are issued.
            now = time.time()
            self.state["tokens"] = {
                k: v for k, v in self.state["tokens"].items() if v["expires"] > now - 60
            }
            return token_id, copy.deepcopy(record)

    def validate_token(self, token_id: str | None) -> JsonDict:
        """The token's context for service calls, or 401."""
        with self.lock:
            record = self.state["tokens"].get(token_id or "")
            if record is None or record["expires"] < time.time():
                raise ApiError(401, "The request you have made requires authentication.")
            if record["user_id"] not in self.state["users"]:
                raise ApiError(401, "The request you have made requires authentication.")
            if record["project_id"] and record["project_id"] not in self.state["projects"]:
                raise ApiError(401, "The request you have made requires authentication.")
            ctx = copy.deepcopy(record)
            ctx["token_id"] = token_id
            names = [
                self.state["roles"][r]["name"] for r in record["roles"] if r in self.state["roles"]
            ]
            ctx["role_names"] = names
            ctx["is_admin"] = "admin" in names
            return ctx

    def token_body(self, record: JsonDict, base_url: str) -> JsonDict:
        with self.lock:
            user = self.state["users"][record["user_id"]]
            domain = self.state["domains"].get(user["domain_id"], {})
            body: JsonDict = {
                "methods": record["methods"],
                "user": {
                    "id": user["id"],
                    "name": user["name"],
                    "domain": {"id": domain.get("id"), "name": domain.get("name")},
                    "password_expires_at": None,
                },
                "audit_ids": [record["audit_id"]],
                "expires_at": iso(record["expires"], micro=True),
                "issued_at": iso(record["issued"], micro=True),
                "roles": [
                    {"id": rid, "name": self.state["roles"][rid]["name"]}
                    for rid in record["roles"]
                    if rid in self.state["roles"]
                ],
            }
            scoped = False
            if record.get("project_id"):
                project = self.state["projects"][record["project_id"]]
                pdom = self.state["domains"].get(project["domain_id"], {})
                body["project"] = {
                    "id": project["id"],
                    "name": project["name"],
                    "domain": {"id": pdom.get("id"), "name": pdom.get("name")},
                }
                body["is_domain"] = False
                scoped = True
            elif record.get("domain_id"):
                dom = self.state["domains"][record["domain_id"]]
                body["domain"] = {"id": dom["id"], "name": dom["name"]}
                scoped = True
            elif record.get("system"):
                body["system"] = {"all": True}
                scoped = True
            if scoped:
                body["catalog"] = self.service_catalog(base_url)
            return {"token": body}

    @staticmethod
    def service_catalog(base_url: str) -> list[JsonDict]:
        services = [
            ("identity", "keystone", f"{base_url}/identity"),
            ("compute", "nova", f"{base_url}/compute/v2.1"),
            ("image", "glance", f"{base_url}/image"),
        ]
        catalog = []
        for kind, name, url in services:
            catalog.append(
                {
                    "id": catalogue.stable_id("service", name, dashes=False),
                    "type": kind,
                    "name": name,
                    "description": catalogue.DESCRIPTION,
                    "endpoints": [
                        {
                            "id": catalogue.stable_id("endpoint", f"{name}-{iface}", dashes=False),
                            "interface": iface,
                            "region": catalogue.REGION,
                            "region_id": catalogue.REGION,
                            "url": url,
                        }
                        for iface in ("public", "internal", "admin")
                    ],
                }
            )
        return catalog

    def expire_tokens(self) -> int:
        """Revoke every token (clients must authenticate again). Returns how many."""
        with self.lock:
            count = len(self.state["tokens"])
            self.state["tokens"] = {}
        self.save()
        return count

    def revoke_token(self, token_id: str) -> None:
        with self.lock:
            if self.state["tokens"].pop(token_id, None) is None:
                raise not_found(f"Could not find token: {token_id}.")

    # -- Identity: domains, projects, users, roles ---------------------------------------------

    @staticmethod
    def require_admin(ctx: JsonDict, action: str) -> None:
        if not ctx["is_admin"]:
            raise ApiError(
                403, f"You are not authorized to perform the requested action: {action}."
            )

    @staticmethod
    def _project_record(
        *, pid: str, name: str, domain_id: str, description: str = "", enabled: bool = True
    ) -> JsonDict:
        return {
            "id": pid,
            "name": name,
            "domain_id": domain_id,
            "parent_id": domain_id,
            "description": description,
            "enabled": enabled,
            "is_domain": False,
            "tags": [],
            "options": {},
        }

    @staticmethod
    def _matches(item: JsonDict, filters: dict[str, str]) -> bool:
        for key, value in filters.items():
            have = item.get(key)
            if isinstance(have, bool):
                if have != (value.lower() in ("true", "1", "yes")):
                    return False
            elif str(have) != value:
                return False
        return True

    def _list(self, kind: str, filters: dict[str, str], allowed: tuple[str, ...]) -> list[JsonDict]:
        used = {k: v for k, v in filters.items() if k in allowed}
        with self.lock:
            items = [copy.deepcopy(i) for i in self.state[kind].values() if self._matches(i, used)]
        for item in items:
            item.pop("password", None)
        return sorted(items, key=lambda i: i["name"])

    def _get(self, kind: str, label: str, item_id: str) -> JsonDict:
        with self.lock:
            item = self.state[kind].get(item_id)
            if item is None:
                raise not_found(f"Could not find {label}: {item_id}.")
            item = copy.deepcopy(item)
        item.pop("password", None)
        return item

    def domains_list(self, filters: dict[str, str]) -> list[JsonDict]:
        return self._list("domains", filters, ("name", "enabled", "id"))

    def domain_get(self, domain_id: str) -> JsonDict:
        return self._get("domains", "domain", domain_id)

    def domain_create(self, data: JsonDict) -> JsonDict:
        name = str(data.get("name") or "").strip()
        if not name or len(name) > 64:
            raise ApiError(
                400, "Invalid input for field 'name': the name must be 1 to 64 characters."
            )
        with self.lock:
            if any(d["name"].lower() == name.lower() for d in self.state["domains"].values()):
                raise ApiError(
                    409,
                    f"Conflict occurred attempting to store domain - Duplicate "
                    f"entry found with name {name}.",
                )
            if any(
                p["name"].lower() == name.lower() and p["is_domain"]
                for p in self.state["projects"].values()
            ):
                raise ApiError(
                    409,
                    f"Conflict occurred attempting to store domain - Duplicate "
                    f"entry found with name {name}.",
                )
            did = data.get("id") or uuid.uuid4().hex
            self.state["domains"][did] = {
                "id": did,
                "name": name,
                "description": data.get("description") or "",
                "enabled": bool(data.get("enabled", True)),
                "tags": list(data.get("tags") or []),
                "options": {},
            }
            item = copy.deepcopy(self.state["domains"][did])
        self.save()
        return item

    def _keystone_update(self, kind: str, item_id: str, data: JsonDict) -> JsonDict:
        """PATCH of a Keystone domain or project ("domains"/"projects"): the editable fields."""
        with self.lock:
            record = self.state[kind].get(item_id)
            if record is None:
                raise not_found(f"Could not find {kind[:-1]}: {item_id}.")
            for key in ("name", "description", "enabled", "tags"):
                if key in data:
                    record[key] = data[key]
            item = copy.deepcopy(record)
        self.save()
        return item

    def domain_update(self, domain_id: str, data: JsonDict) -> JsonDict:
        return self._keystone_update("domains", domain_id, data)

    def domain_delete(self, domain_id: str) -> None:
        with self.lock:
            dom = self.state["domains"].get(domain_id)
            if dom is None:
                raise not_found(f"Could not find domain: {domain_id}.")
            if domain_id == catalogue.DEFAULT_DOMAIN_ID:
                raise ApiError(
                    403,
                    "You are not authorized to perform the requested action: "
                    "Cannot delete the default domain.",
                )
            if dom["enabled"]:
                raise ApiError(
                    403, "Cannot delete a domain that is enabled, please disable it first."
                )
            # Keystone deletes the domain's projects and users with it.
            gone = {pid for pid, p in self.state["projects"].items() if p["domain_id"] == domain_id}
            gone |= {uid for uid, u in self.state["users"].items() if u["domain_id"] == domain_id}
            for pid in list(self.state["projects"]):
                if pid in gone:
                    del self.state["projects"][pid]
            for uid in list(self.state["users"]):
                if uid in gone:
                    del self.state["users"][uid]
            del self.state["domains"][domain_id]
            self.state["assignments"] = [
                a
                for a in self.state["assignments"]
                if a[0] not in gone and a[2] not in gone and a[2] != domain_id
            ]
        self.save()

    def projects_list(self, filters: dict[str, str]) -> list[JsonDict]:
        return self._list("projects", filters, ("name", "domain_id", "enabled", "parent_id", "id"))

    def project_get(self, project_id: str) -> JsonDict:
        return self._get("projects", "project", project_id)

    def project_create(self, data: JsonDict) -> JsonDict:
        name = str(data.get("name") or "").strip()
        if not name or len(name) > 64:
            raise ApiError(
                400, "Invalid input for field 'name': the name must be 1 to 64 characters."
            )
        with self.lock:
            domain_id = data.get("domain_id") or catalogue.DEFAULT_DOMAIN_ID
            if domain_id not in self.state["domains"]:
                raise ApiError(400, f"Could not find domain: {domain_id}.")
            for other in self.state["projects"].values():
                if other["domain_id"] == domain_id and other["name"].lower() == name.lower():
                    raise ApiError(
                        409,
                        "Conflict occurred attempting to store project - it is not permitted to "
                        f"have two projects with the same name in the same domain : {name}.",
                    )
            pid = data.get("id") or uuid.uuid4().hex
            record = self._project_record(
                pid=pid,
                name=name,
                domain_id=domain_id,
                description=data.get("description") or "",
                enabled=bool(data.get("enabled", True)),
            )
            record["tags"] = list(data.get("tags") or [])
            self.state["projects"][pid] = record
            item = copy.deepcopy(record)
        self.save()
        return item

    def project_update(self, project_id: str, data: JsonDict) -> JsonDict:
        return self._keystone_update("projects", project_id, data)

    def project_delete(self, project_id: str) -> None:
        with self.lock:
            if self.state["projects"].pop(project_id, None) is None:
                raise not_found(f"Could not find project: {project_id}.")
            self.state["assignments"] = [a for a in self.state["assignments"] if a[2] != project_id]
        self.save()

    def users_list(self, filters: dict[str, str]) -> list[JsonDict]:
        return self._list("users", filters, ("name", "domain_id", "enabled", "id"))

    def user_get(self, user_id: str) -> JsonDict:
        return self._get("users", "user", user_id)

    def user_create(self, data: JsonDict) -> JsonDict:
        name = str(data.get("name") or "").strip()
        if not name or len(name) > 255:
            raise ApiError(400, "Invalid input for field 'name'.")
        with self.lock:
            domain_id = data.get("domain_id") or catalogue.DEFAULT_DOMAIN_ID
            if domain_id not in self.state["domains"]:
                raise ApiError(400, f"Could not find domain: {domain_id}.")
            for other in self.state["users"].values():
                if other["domain_id"] == domain_id and other["name"] == name:
                    raise ApiError(
                        409,
                        "Conflict occurred attempting to store user - Duplicate "
                        f"entry found with name {name} at domain ID {domain_id}.",
                    )
            uid = uuid.uuid4().hex
            self.state["users"][uid] = {
                "id": uid,
                "name": name,
                "domain_id": domain_id,
                "enabled": bool(data.get("enabled", True)),
                "password": data.get("password"),
                "default_project_id": data.get("default_project_id"),
                "password_expires_at": None,
                "options": {},
            }
        self.save()
        return self.user_get(uid)

    def user_delete(self, user_id: str) -> None:
        with self.lock:
            if self.state["users"].pop(user_id, None) is None:
                raise not_found(f"Could not find user: {user_id}.")
            self.state["assignments"] = [a for a in self.state["assignments"] if a[0] != user_id]
        self.save()

    def roles_list(self, filters: dict[str, str]) -> list[JsonDict]:
        return self._list("roles", filters, ("name", "id"))

    def role_get(self, role_id: str) -> JsonDict:
        return self._get("roles", "role", role_id)

    def _check_target(self, kind: str, target: str) -> None:
        if kind == "system":
            return
        table = {"project": "projects", "domain": "domains"}[kind]
        if target not in self.state[table]:
            raise not_found(f"Could not find {kind}: {target}.")

    def assignment(self, *, op: str, kind: str, target: str, user_id: str, role_id: str) -> bool:
        """op: put | check | delete. Returns whether the assignment exists (check)."""
        with self.lock:
            self._check_target(kind, target)
            if user_id not in self.state["users"]:
                raise not_found(f"Could not find user: {user_id}.")
            if role_id not in self.state["roles"]:
                raise not_found(f"Could not find role: {role_id}.")
            row = [user_id, kind, target, role_id]
            present = row in self.state["assignments"]
            if op == "put" and not present:
                self.state["assignments"].append(row)
            elif op == "delete":
                if not present:
                    raise not_found(
                        f"Could not find role assignment with role: {role_id}, "
                        f"user or group: {user_id}, project, domain, or system: "
                        f"{target}."
                    )
                self.state["assignments"].remove(row)
            elif op == "check":
                return present
        if op != "check":
            self.save()
        return True

    def roles_of(self, *, kind: str, target: str, user_id: str) -> list[JsonDict]:
        with self.lock:
            self._check_target(kind, target)
            return copy.deepcopy(self._roles_on(user_id, kind, target))

    def role_assignments(self, filters: dict[str, str]) -> list[JsonDict]:
        with self.lock:
            rows = []
            for user_id, kind, target, role_id in self.state["assignments"]:
                if filters.get("user.id") not in (None, user_id):
                    continue
                if filters.get("role.id") not in (None, role_id):
                    continue
                if filters.get("scope.project.id") not in (None,) and (
                    kind != "project" or filters["scope.project.id"] != target
                ):
                    continue
                if filters.get("scope.domain.id") not in (None,) and (
                    kind != "domain" or filters["scope.domain.id"] != target
                ):
                    continue
                scope: JsonDict = (
                    {"system": {"all": True}} if kind == "system" else {kind: {"id": target}}
                )
                rows.append({"user": {"id": user_id}, "role": {"id": role_id}, "scope": scope})
            return rows

    # -- Compute: flavors, key pairs --------------------------------------------------------------

    def flavors_list(self) -> list[JsonDict]:
        with self.lock:
            flavors = [copy.deepcopy(f) for f in self.state["flavors"].values()]
        return sorted(flavors, key=lambda f: (f["ram"], f["id"]))

    def flavor_get(self, flavor_id: str) -> JsonDict:
        with self.lock:
            flavor = self.state["flavors"].get(flavor_id)
            if flavor is None:
                raise not_found(f"Flavor {flavor_id} could not be found.")
            return copy.deepcopy(flavor)

    def keypairs_list(self, user_id: str) -> list[JsonDict]:
        with self.lock:
            return [copy.deepcopy(k) for k in self.state["keypairs"].get(user_id, {}).values()]

    def keypair_get(self, user_id: str, name: str) -> JsonDict:
        with self.lock:
            kp = self.state["keypairs"].get(user_id, {}).get(name)
            if kp is None:
                raise not_found(f"Keypair {name} not found for user {user_id}")
            return copy.deepcopy(kp)

    def keypair_create(self, user_id: str, data: JsonDict, mv: Microversion) -> JsonDict:
        name = str(data.get("name") or "")
        if not re.fullmatch(r"[A-Za-z0-9 _\-@.]{1,255}", name):
            raise ApiError(400, "Keypair data is invalid: Keypair name contains unsafe characters")
        public_key = data.get("public_key")
        private_key = None
        if not public_key:
            if mv >= (2, 92):
                raise ApiError(
                    400,
                    "Invalid input for field/attribute keypair. Value: "
                    f"{json.dumps(data)}. 'public_key' is a required property",
                )
            private_key = (
                "-----BEGIN OPENSSH PRIVATE KEY-----\n(simulated)\n"
                "-----END OPENSSH PRIVATE KEY-----\n"
            )
            public_key = f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA{secrets.token_urlsafe(32)} devcloud"
        with self.lock:
            user_keys = self.state["keypairs"].setdefault(user_id, {})
            if name in user_keys:
                raise ApiError(409, f"Key pair '{name}' already exists.")
            record = {
                "name": name,
                "public_key": public_key,
                "fingerprint": ":".join(secrets.token_hex(1) for _ in range(16)),
                "type": data.get("type") or "ssh",
                "user_id": user_id,
                "created_at": iso(time.time()),
            }
            user_keys[name] = record
            out = copy.deepcopy(record)
        self.save()
        if private_key:
            out["private_key"] = private_key
        return out

    def keypair_delete(self, user_id: str, name: str) -> None:
        with self.lock:
            if self.state["keypairs"].get(user_id, {}).pop(name, None) is None:
                raise not_found(f"Keypair {name} not found for user {user_id}")
        self.save()

    # -- Compute: quotas -----------------------------------------------------------------------

    def _quota_limits(self, project_id: str) -> JsonDict:
        limits = dict(catalogue.DEFAULT_QUOTA)
        limits.update(self.state["quotas"].get(project_id, {}))
        return limits

    def _usage(self, project_id: str) -> dict[str, int]:
        used = {"instances": 0, "cores": 0, "ram": 0}
        for server in self.state["servers"].values():
            if server["project_id"] != project_id or server["vm_state"] == "deleted":
                continue
            used["instances"] += 1
            used["cores"] += server["vcpus"]
            used["ram"] += server["ram"]
        used["key_pairs"] = 0
        return used

    def _check_project_exists(self, project_id: str) -> None:
        if project_id not in self.state["projects"]:
            raise ApiError(400, f"Project ID {project_id} is not a valid project.")

    def quota_get(self, project_id: str, *, detail: bool = False) -> JsonDict:
        self._tick()
        with self.lock:
            self._check_project_exists(project_id)
            limits = self._quota_limits(project_id)
            if not detail:
                return limits
            used = self._usage(project_id)
            return {
                key: {"limit": value, "in_use": used.get(key, 0), "reserved": 0}
                for key, value in limits.items()
            }

    def quota_update(self, project_id: str, data: JsonDict) -> JsonDict:
        self._tick()
        force = str(data.pop("force", "false")).lower() in ("true", "1")
        with self.lock:
            self._check_project_exists(project_id)
            used = self._usage(project_id)
            changes: dict[str, int] = {}
            for key, value in data.items():
                if key not in catalogue.DEFAULT_QUOTA:
                    raise ApiError(
                        400,
                        "Invalid input for field/attribute quota_set. "
                        f"Additional properties are not allowed ('{key}' was "
                        "unexpected)",
                    )
                try:
                    number = int(value)
                except (TypeError, ValueError):
                    raise ApiError(
                        400,
                        f"Invalid input for field/attribute {key}. Value: "
                        f"{value}. '{value}' is not of type 'integer'",
                    ) from None
                if number < -1:
                    raise ApiError(
                        400,
                        f"Invalid input for field/attribute {key}. Value: "
                        f"{number}. {number} is less than the minimum of -1",
                    )
                if not force and number != -1 and number < used.get(key, 0):
                    raise ApiError(
                        400,
                        f"Quota limit {number} for {key} must be greater than "
                        f"or equal to already used and reserved {used[key]}.",
                    )
                changes[key] = number
            self.state["quotas"].setdefault(project_id, {}).update(changes)
            limits = self._quota_limits(project_id)
        self.save()
        return limits

    def limits(self, project_id: str | None) -> JsonDict:
        self._tick()
        with self.lock:
            limits = self._quota_limits(project_id or "")
            used = self._usage(project_id or "")
        return {
            "maxTotalInstances": limits["instances"],
            "maxTotalCores": limits["cores"],
            "maxTotalRAMSize": limits["ram"],
            "maxTotalKeypairs": limits["key_pairs"],
            "maxServerMeta": limits["metadata_items"],
            "maxServerGroups": limits["server_groups"],
            "maxServerGroupMembers": limits["server_group_members"],
            "totalInstancesUsed": used["instances"],
            "totalCoresUsed": used["cores"],
            "totalRAMUsed": used["ram"],
            "totalServerGroupsUsed": 0,
        }

    # -- Compute: servers ------------------------------------------------------------------------

    def _tick(self) -> None:
        """Apply every status change that is due."""
        now = time.time()
        changed = False
        with self.lock:
            for sid, server in list(self.state["servers"].items()):
                pending = server.get("pending")
                if not pending or pending["at"] > now:
                    continue
                changed = True
                server["pending"] = None
                if pending.get("delete") and server["vm_state"] != "deleted":
                    # Like Nova: the instance shows status DELETED for a moment (GET only, not
                    # in lists or usage) before it is gone (404).
                    server.update(vm_state="deleted", task_state=None, power_state=0)
                    server["updated"] = pending["at"]
                    self._schedule(server, delete=True)
                    continue
                if pending.get("delete"):
                    del self.state["servers"][sid]
                    self.state["consoles"] = {
                        k: v for k, v in self.state["consoles"].items() if v["server_id"] != sid
                    }
                    continue
                server["vm_state"] = pending["vm_state"]
                server["task_state"] = pending.get("task_state")
                server["power_state"] = pending.get("power_state", server["power_state"])
                server["updated"] = pending["at"]
                if pending["vm_state"] == "active" and not server.get("launched_at"):
                    server["launched_at"] = pending["at"]
        if changed:
            self.save()

    def _schedule(self, server: JsonDict, *, delay: float | None = None, **target: Any) -> None:
        wait = self.config.delay if delay is None else delay
        server["pending"] = {"at": time.time() + wait, **target}

    def _server(self, server_id: str, ctx: JsonDict | None) -> JsonDict:
        server = self.state["servers"].get(server_id)
        if server is None or (
            ctx is not None and not ctx["is_admin"] and server["project_id"] != ctx["project_id"]
        ):
            raise not_found(f"Instance {server_id} could not be found.")
        return server

    def _next_ip(self) -> str:
        n = self.state["next_ip"]
        self.state["next_ip"] = n + 1
        return f"{catalogue.NETWORK_CIDR_PREFIX}.{n // 250}.{n % 250 + 3}"

    def _resolve_flavor(self, ref: str) -> JsonDict | None:
        ref = str(ref).rstrip("/").rsplit("/", 1)[-1]
        flavor = self.state["flavors"].get(ref)
        if flavor is None:
            for candidate in self.state["flavors"].values():
                if candidate["name"] == ref:
                    return candidate
        return flavor

    def _resolve_image(self, ref: str) -> JsonDict | None:
        ref = str(ref).rstrip("/").rsplit("/", 1)[-1]
        image = self.state["images"].get(ref)
        if image is None:
            for candidate in self.state["images"].values():
                if candidate["name"] == ref:
                    return candidate
        return image

    def server_create(self, ctx: JsonDict, data: JsonDict, mv: Microversion) -> JsonDict:
        self._tick()
        body = json.dumps(data, sort_keys=True)[:500]
        name = data.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 255:
            raise ApiError(
                400,
                f"Invalid input for field/attribute server. Value: {body}. "
                "'name' is a required property",
            )
        networks = data.get("networks")
        if networks is None and mv >= (2, 37):
            raise ApiError(
                400,
                f"Invalid input for field/attribute server. Value: {body}. "
                "'networks' is a required property",
            )
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, dict) or any(
            not isinstance(v, str) or len(str(k)) > 255 or len(v) > 255 for k, v in metadata.items()
        ):
            raise ApiError(
                400,
                "Invalid input for field/attribute metadata. Value: "
                f"{json.dumps(metadata)[:200]}. Metadata keys and values must be "
                "strings of at most 255 characters",
            )
        if not ctx.get("project_id"):
            raise ApiError(
                403, "Policy doesn't allow os_compute_api:servers:create to be performed."
            )
        with self.lock:
            project_id = ctx["project_id"]
            flavor = self._resolve_flavor(data.get("flavorRef", ""))
            if flavor is None:
                raise ApiError(400, "Invalid flavorRef provided.")
            image_ref = data.get("imageRef", "")
            image = self._resolve_image(image_ref) if image_ref else None
            if image is None or image["status"] != "active":
                raise ApiError(400, f"Image {image_ref} could not be found.")
            if image["min_disk"] and flavor["disk"] < image["min_disk"]:
                raise ApiError(
                    400,
                    "Flavor's disk is too small for requested image. Flavor disk is "
                    f"{flavor['disk'] * 1024**3} bytes, image is {image['min_disk'] * 1024**3} "
                    "bytes.",
                )
            if image["min_ram"] and flavor["ram"] < image["min_ram"]:
                raise ApiError(400, "Flavor's memory is too small for requested image.")
            key_name = data.get("key_name")
            if key_name and key_name not in self.state["keypairs"].get(ctx["user_id"], {}):
                raise ApiError(400, "Invalid key_name provided.")
            if len(metadata) > self._quota_limits(project_id)["metadata_items"] >= 0:
                raise ApiError(
                    403,
                    "Quota exceeded for metadata_items: Requested "
                    f"{len(metadata)}, but already used 0 of "
                    f"{self._quota_limits(project_id)['metadata_items']} "
                    "metadata_items",
                )
            addresses: JsonDict = {}
            if networks in ("auto", None) or (
                isinstance(networks, list)
                and any(n.get("uuid") == catalogue.NETWORK_ID for n in networks)
            ):
                addresses = {catalogue.NETWORK_NAME: [self._address(self._next_ip())]}
            elif isinstance(networks, list):
                for net in networks:
                    if net.get("uuid") and net["uuid"] != catalogue.NETWORK_ID:
                        raise ApiError(400, f"Network {net['uuid']} could not be found.")
            elif networks != "none":
                raise ApiError(400, "Invalid input for field/attribute networks.")
            self._enforce_quota(project_id, flavor)
            now = time.time()
            sid = str(uuid.uuid4())
            server = {
                "id": sid,
                "name": name,
                "project_id": project_id,
                "user_id": ctx["user_id"],
                "flavor_id": flavor["id"],
                "flavor_name": flavor["name"],
                "vcpus": flavor["vcpus"],
                "ram": flavor["ram"],
                "disk": flavor["disk"],
                "image_id": image["id"],
                "key_name": key_name,
                "metadata": {str(k): v for k, v in metadata.items()},
                "vm_state": "building",
                "task_state": "scheduling",
                "power_state": 0,
                "created": now,
                "updated": now,
                "launched_at": None,
                "addresses": addresses,
                "fault": None,
                "host": catalogue.HYPERVISOR["hypervisor_hostname"],
                "description": data.get("description"),
                "pending": None,
                "admin_pass": secrets.token_urlsafe(9),
            }
            self._schedule(server, vm_state="active", task_state=None, power_state=1)
            self.state["servers"][sid] = server
            out = copy.deepcopy(server)
        self.save()
        return out

    @staticmethod
    def _address(ip: str) -> JsonDict:
        mac = "fa:16:3e:" + ":".join(secrets.token_hex(1) for _ in range(3))
        return {
            "version": 4,
            "addr": ip,
            "OS-EXT-IPS:type": "fixed",
            "OS-EXT-IPS-MAC:mac_addr": mac,
        }

    def _enforce_quota(self, project_id: str, flavor: JsonDict) -> None:
        limits = self._quota_limits(project_id)
        used = self._usage(project_id)
        asked = {"instances": 1, "cores": flavor["vcpus"], "ram": flavor["ram"]}
        overs = [
            key
            for key in ("instances", "cores", "ram")
            if limits[key] >= 0 and used[key] + asked[key] > limits[key]
        ]
        if overs:

            def join(values: list[Any]) -> str:
                return ", ".join(str(v) for v in values)

            raise ApiError(
                403,
                f"Quota exceeded for {join(overs)}: Requested {join([asked[k] for k in overs])},"
                f" but already used {join([used[k] for k in overs])} of "
                f"{join([limits[k] for k in overs])} {join(overs)}",
            )

    def servers_list(
        self, ctx: JsonDict, *, all_tenants: bool, filters: dict[str, str]
    ) -> list[JsonDict]:
        self._tick()
        with self.lock:
            if all_tenants and not ctx["is_admin"]:
                raise ApiError(
                    403,
                    "Policy doesn't allow "
                    "os_compute_api:servers:index:get_all_tenants to be performed.",
                )
            project = filters.get("project_id") or filters.get("tenant_id")
            if not all_tenants:
                project = ctx["project_id"]
            result = []
            for server in self.state["servers"].values():
                if project and server["project_id"] != project:
                    continue
                if server["vm_state"] == "deleted":
                    continue
                if "name" in filters and not re.search(filters["name"], server["name"]):
                    continue
                status = server_status(server["vm_state"], server["task_state"])
                if "status" in filters and status != filters["status"].upper():
                    continue
                result.append(copy.deepcopy(server))
        result.sort(key=lambda s: (s["created"], s["id"]), reverse=True)
        return result

    def server_get(self, ctx: JsonDict | None, server_id: str) -> JsonDict:
        self._tick()
        with self.lock:
            return copy.deepcopy(self._server(server_id, ctx))

    def server_update(self, ctx: JsonDict, server_id: str, data: JsonDict) -> JsonDict:
        self._tick()
        with self.lock:
            server = self._server(server_id, ctx)
            if "name" in data:
                name = data["name"]
                if not isinstance(name, str) or not name.strip() or len(name) > 255:
                    raise ApiError(
                        400,
                        "Invalid input for field/attribute name. Value: "
                        f"{name!r}. The name must be 1 to 255 characters",
                    )
                server["name"] = name
            if "description" in data:
                server["description"] = data["description"]
            server["updated"] = time.time()
            out = copy.deepcopy(server)
        self.save()
        return out

    def _conflict(self, action: str, server: JsonDict, *, task: bool = False) -> ApiError:
        if task:
            return ApiError(
                409,
                f"Cannot '{action}' instance {server['id']} while it is in "
                f"task_state {server['task_state']}",
            )
        return ApiError(
            409,
            f"Cannot '{action}' instance {server['id']} while it is in "
            f"vm_state {server['vm_state']}",
        )

    def server_action(self, ctx: JsonDict, server_id: str, action: str, arg: Any) -> None:
        self._tick()
        with self.lock:
            server = self._server(server_id, ctx)
            vm, task = server["vm_state"], server["task_state"]
            if action == "os-stop":
                if vm not in ("active", "error"):
                    raise self._conflict("stop", server)
                if task is not None:
                    raise self._conflict("stop", server, task=True)
                server["task_state"] = "powering-off"
                self._schedule(server, vm_state="stopped", task_state=None, power_state=4)
            elif action == "os-start":
                if vm != "stopped":
                    raise self._conflict("start", server)
                if task is not None:
                    raise self._conflict("start", server, task=True)
                server["task_state"] = "powering-on"
                self._schedule(server, vm_state="active", task_state=None, power_state=1)
            elif action == "reboot":
                kind = str((arg or {}).get("type", "")).upper()
                if kind not in ("SOFT", "HARD"):
                    raise ApiError(
                        400,
                        "Invalid input for field/attribute type. Value: "
                        f"{kind}. '{kind}' is not one of ['HARD', 'Hard', 'hard', "
                        "'SOFT', 'Soft', 'soft']",
                    )
                if kind == "SOFT":
                    if vm != "active":
                        raise self._conflict("reboot", server)
                    if task is not None:
                        raise self._conflict("reboot", server, task=True)
                    server["task_state"] = "reboot_started"
                else:
                    if vm not in ("active", "stopped", "paused", "suspended", "error"):
                        raise self._conflict("reboot", server)
                    if task not in (None, *_REBOOT_TASKS, *_HARD_REBOOT_TASKS):
                        raise self._conflict("reboot", server, task=True)
                    server["task_state"] = "reboot_started_hard"
                self._schedule(server, vm_state="active", task_state=None, power_state=1)
            else:
                raise ApiError(400, f"There is no such action: {action}")
            server["updated"] = time.time()
        self.save()

    def server_delete(self, ctx: JsonDict | None, server_id: str, *, now: bool = False) -> None:
        self._tick()
        with self.lock:
            server = self._server(server_id, ctx)
            if now:
                del self.state["servers"][server_id]
            elif server["vm_state"] == "deleted":
                raise not_found(f"Instance {server_id} could not be found.")
            elif server["task_state"] != "deleting":
                server["task_state"] = "deleting"
                server["updated"] = time.time()
                self._schedule(server, delete=True)
        self.save()

    def console_create(self, ctx: JsonDict, server_id: str, base_url: str, kind: str) -> str:
        self._tick()
        with self.lock:
            server = self._server(server_id, ctx)
            if server["vm_state"] == "building":
                raise ApiError(409, f"Instance {server_id} is not ready")
            token = str(uuid.uuid4())
            self.state["consoles"][token] = {
                "server_id": server_id,
                "type": kind,
                "expires": time.time() + 600,
            }
        self.save()
        return f"{base_url}/_devcloud/vnc_lite.html?path=%3Ftoken%3D{token}"

    def console_server(self, token: str) -> JsonDict | None:
        self._tick()
        with self.lock:
            console = self.state["consoles"].get(token)
            if console is None or console["expires"] < time.time():
                return None
            server = self.state["servers"].get(console["server_id"])
            return copy.deepcopy(server) if server else None

    # -- Behind the portal's back (private API) -------------------------------------------------

    def raw_servers(self) -> list[JsonDict]:
        self._tick()
        with self.lock:
            # A deleted instance still answers GET (DELETED) for a moment; it no longer exists.
            servers = [
                copy.deepcopy(s)
                for s in self.state["servers"].values()
                if s["vm_state"] != "deleted"
            ]
        for server in servers:
            server["status"] = server_status(server["vm_state"], server["task_state"])
            server["ips"] = [a["addr"] for addrs in server["addresses"].values() for a in addrs]
        servers.sort(key=lambda s: (s["created"], s["id"]))
        return servers

    def raw_server_create(self, data: JsonDict) -> JsonDict:
        """Create a server directly (no quota, no token): as if someone used the cloud itself."""
        with self.lock:
            project_id = data.get("project_id")
            if project_id not in self.state["projects"]:
                raise ApiError(400, f"Project ID {project_id} is not a valid project.")
            admin_user = catalogue.stable_id("user", catalogue.ADMIN_USER, dashes=False)
            user_id = data.get("user_id") or admin_user
            flavor = self._resolve_flavor(data.get("flavor") or "m1.tiny")
            image = self._resolve_image(data.get("image") or "cirros-0.6")
            if flavor is None or image is None:
                raise ApiError(400, "Unknown flavor or image.")
            status = str(data.get("status") or "ACTIVE").upper()
            if status not in _STATUS_VM_STATE:
                raise ApiError(400, f"Unknown status {status}.")
            vm_state, task_state, power = _STATUS_VM_STATE[status]
            now = time.time()
            sid = str(data.get("id") or uuid.uuid4())
            self.state["servers"][sid] = {
                "id": sid,
                "name": data.get("name") or f"outside-{sid[:8]}",
                "project_id": project_id,
                "user_id": user_id,
                "flavor_id": flavor["id"],
                "flavor_name": flavor["name"],
                "vcpus": flavor["vcpus"],
                "ram": flavor["ram"],
                "disk": flavor["disk"],
                "image_id": image["id"],
                "key_name": None,
                "metadata": dict(data.get("metadata") or {}),
                "vm_state": vm_state,
                "task_state": task_state,
                "power_state": power,
                "created": now,
                "updated": now,
                "launched_at": now if vm_state != "building" else None,
                "addresses": {catalogue.NETWORK_NAME: [self._address(self._next_ip())]},
                "fault": None,
                "host": catalogue.HYPERVISOR["hypervisor_hostname"],
                "description": None,
                "pending": None,
                "admin_pass": "",
            }
            if status == "BUILD":
                self._schedule(
                    self.state["servers"][sid], vm_state="active", task_state=None, power_state=1
                )
        self.save()
        return next(s for s in self.raw_servers() if s["id"] == sid)

    def raw_set_status(self, server_id: str, data: JsonDict) -> JsonDict:
        """Force a server's status (and optionally fault/task) now, cancelling pending changes."""
        with self.lock:
            server = self.state["servers"].get(server_id)
            if server is None:
                raise not_found(f"Instance {server_id} could not be found.")
            status = str(data.get("status") or "").upper()
            if status == "DELETED":
                del self.state["servers"][server_id]
            else:
                if status not in _STATUS_VM_STATE:
                    raise ApiError(400, f"Unknown status {status}.")
                vm_state, task_state, power = _STATUS_VM_STATE[status]
                server["vm_state"] = vm_state
                server["task_state"] = data.get("task_state", task_state)
                server["power_state"] = power
                server["pending"] = None
                server["updated"] = time.time()
                if status == "ERROR":
                    server["fault"] = {
                        "code": 500,
                        "created": iso(time.time()),
                        "message": data.get("fault")
                        or "No valid host was found. There are not enough hosts available.",
                    }
                    if data.get("no_host"):
                        server["host"] = None
                elif data.get("fault"):
                    server["fault"] = {
                        "code": 500,
                        "created": iso(time.time()),
                        "message": data["fault"],
                    }
        self.save()
        return {"id": server_id, "status": status}

    # -- Hypervisors -------------------------------------------------------------------------

    def hypervisor(self) -> JsonDict:
        self._tick()
        hv = dict(catalogue.HYPERVISOR)
        with self.lock:
            placed = [s for s in self.state["servers"].values() if s.get("host")]
        hv["vcpus_used"] = sum(s["vcpus"] for s in placed)
        hv["memory_mb_used"] = 512 + sum(s["ram"] for s in placed)  # 512 MiB reserved for host
        hv["local_gb_used"] = sum(s["disk"] for s in placed)
        hv["running_vms"] = len(placed)
        hv["free_ram_mb"] = hv["memory_mb"] - hv["memory_mb_used"]
        hv["free_disk_gb"] = hv["local_gb"] - hv["local_gb_used"]
        hv["disk_available_least"] = hv["free_disk_gb"]
        return hv

    # -- Images ------------------------------------------------------------------------------

    def images_list(self) -> list[JsonDict]:
        with self.lock:
            images = [copy.deepcopy(i) for i in self.state["images"].values()]
        return sorted(images, key=lambda i: (i["created_at"], i["id"]), reverse=True)

    def image_get(self, image_id: str) -> JsonDict:
        with self.lock:
            image = self.state["images"].get(image_id)
            if image is None:
                raise not_found(f"No image found with ID {image_id}")
            return copy.deepcopy(image)
