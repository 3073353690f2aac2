"""HTTP routes of the development cloud: Keystone v3 under /identity, Nova v2.1 under
/compute/v2.1, Glance v2 under /image and the private /_devcloud API, with each service's JSON
and error shapes (Keystone `{"error": {...}}`, Nova `{"itemNotFound": {...}}`, Glance text).
"""

from __future__ import annotations

import html
import json
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import catalogue
from .cloud import NOVA_MAX, NOVA_MIN, ApiError, Cloud, JsonDict, Microversion, iso, server_status

# -- Request and response -------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    base_url: str = ""
    ctx: JsonDict | None = None
    microversion: Microversion = NOVA_MIN

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def flat_query(self) -> dict[str, str]:
        return {k: v[-1] for k, v in self.query.items() if v}

    def json(self) -> JsonDict:
        if not self.body:
            raise ApiError(400, "Malformed request body")
        try:
            data = json.loads(self.body)
        except ValueError:
            raise ApiError(400, "Malformed request body") from None
        if not isinstance(data, dict):
            raise ApiError(400, "Malformed request body")
        return data


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Response:
        return cls(
            status,
            json.dumps(data).encode(),
            [("Content-Type", "application/json"), *(headers or [])],
        )

    @classmethod
    def empty(cls, status: int = 204, headers: list[tuple[str, str]] | None = None) -> Response:
        return cls(status, b"", list(headers or []))

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain") -> Response:
        return cls(status, text.encode(), [("Content-Type", f"{content_type}; charset=UTF-8")])


# -- Error shapes per service ---------------------------------------------------------------------

KEYSTONE_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
NOVA_FAULTS = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    406: "notAcceptable",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}


def service_of(path: str) -> str:
    for prefix, name in (
        ("/identity", "identity"),
        ("/compute", "compute"),
        ("/image", "image"),
        ("/_devcloud", "devcloud"),
    ):
        if path == prefix or path.startswith(prefix + "/"):
            return name
    return "other"


def error_response(path: str, status: int, message: str, *, kind: str | None = None) -> Response:
    service = service_of(path)
    headers: list[tuple[str, str]] = []
    if status == 401:
        headers.append(("WWW-Authenticate", 'Keystone uri="/identity"'))
    if status in (502, 504):
        title = KEYSTONE_TITLES.get(status, "Error")
        text = f"<html><body><h1>{status} {title}</h1>\n{html.escape(message)}\n</body></html>"
        return Response.text(status, text, "text/html")
    if service == "compute" and status != 401:
        name = kind or NOVA_FAULTS.get(status, "computeFault")
        return Response.json(status, {name: {"code": status, "message": message}}, headers)
    if service == "image":
        title = KEYSTONE_TITLES.get(status, "Error")
        text = f"<html>\n <head>\n  <title>{status} {title}</title>\n </head>\n <body>\n  <h1>"
        text += (
            f"{status} {title}</h1>\n  {html.escape(message)}<br /><br />\n\n\n\n </body>\n</html>"
        )
        response = Response.text(status, text, "text/html")
        response.headers.extend(headers)
        return response
    title = KEYSTONE_TITLES.get(status, "Error")
    return Response.json(
        status, {"error": {"code": status, "message": message, "title": title}}, headers
    )


def injected_message(path: str, status: int) -> str:
    service = service_of(path)
    if service == "compute" and status >= 500:
        return (
            "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and "
            "attach the Nova API log if possible.\n<class 'devcloud.InjectedFault'>"
        )
    if service == "identity" and status >= 500:
        return "An unexpected error prevented the server from fulfilling your request."
    return f"Injected fault ({status}) by the TeachCloud development cloud"


# -- Routing -----------------------------------------------------------------------------------

Handler = Callable[[Cloud, Request, "re.Match[str]"], Response]
ROUTES: list[tuple[str, re.Pattern[str], Handler, bool]] = []  # method, path, handler, needs token


def route(method: str, pattern: str, *, auth: bool = True) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ROUTES.append((method, re.compile(pattern + r"/?$"), fn, auth))
        return fn

    return register


def dispatch(cloud: Cloud, req: Request) -> Response:
    path_matched = False
    for method, pattern, fn, needs_auth in ROUTES:
        match = pattern.match(req.path)
        if not match:
            continue
        path_matched = True
        if method != req.method and not (method == "GET" and req.method == "HEAD"):
            continue
        try:
            if needs_auth:
                req.ctx = cloud.validate_token(req.headers.get("x-auth-token"))
            if service_of(req.path) == "compute":
                req.microversion = negotiate_microversion(req.headers)
            response = fn(cloud, req, match)
            if service_of(req.path) == "compute":
                response.headers.extend(microversion_headers(req.microversion))
            return response
        except ApiError as exc:
            response = error_response(req.path, exc.status, exc.message, kind=exc.kind)
            if service_of(req.path) == "compute":
                response.headers.extend(microversion_headers(req.microversion))
            return response
    if path_matched:
        return error_response(req.path, 405, "The method is not allowed for the requested URL.")
    if service_of(req.path) == "compute":
        return error_response(req.path, 404, "The resource could not be found.")
    return error_response(req.path, 404, "The resource could not be found.")


def negotiate_microversion(headers: dict[str, str]) -> Microversion:
    raw = None
    value = headers.get("openstack-api-version", "")
    for part in value.split(","):
        bits = part.strip().split()
        if len(bits) == 2 and bits[0].lower() == "compute":
            raw = bits[1]
    if raw is None:
        raw = headers.get("x-openstack-nova-api-version")
    if not raw:
        return NOVA_MIN
    if raw.strip().lower() == "latest":
        return NOVA_MAX
    try:
        major, minor = (int(x) for x in raw.strip().split("."))
    except ValueError:
        raise ApiError(
            400,
            f"API Version String {raw} is of invalid format. Must be of format MajorNum.MinorNum.",
        ) from None
    wanted = (major, minor)
    if not NOVA_MIN <= wanted <= NOVA_MAX:
        raise ApiError(
            406,
            f"Version {raw} is not supported by the API. Minimum is "
            f"{fmt(NOVA_MIN)} and maximum is {fmt(NOVA_MAX)}.",
        )
    return wanted


def fmt(mv: Microversion) -> str:
    return f"{mv[0]}.{mv[1]}"


def microversion_headers(mv: Microversion) -> list[tuple[str, str]]:
    return [
        ("OpenStack-API-Version", f"compute {fmt(mv)}"),
        ("X-OpenStack-Nova-API-Version", fmt(mv)),
        ("Vary", "OpenStack-API-Version, X-OpenStack-Nova-API-Version"),
    ]


def paginate(
    items: list[JsonDict], req: Request, *, default_limit: int, max_limit: int = 1000
) -> tuple[list[JsonDict], str | None]:
    """Marker/limit pagination. Returns the page and the marker of the next page (or None)."""
    marker = req.q("marker")
    try:
        limit = int(req.q("limit") or default_limit)
    except ValueError:
        raise ApiError(400, "limit param must be an integer") from None
    if limit < 0:
        raise ApiError(400, "limit param must be positive")
    limit = min(limit, max_limit)
    start = 0
    if marker:
        ids = [i["id"] for i in items]
        if marker not in ids:
            raise ApiError(400, f"marker [{marker}] not found")
        start = ids.index(marker) + 1
    page = items[start : start + limit]
    more = start + limit < len(items)
    return page, (page[-1]["id"] if more and page else None)


def next_link(req: Request, path: str, marker: str) -> str:
    query = {k: v for k, v in req.flat_query().items() if k != "marker"}
    query["marker"] = marker
    return f"{req.base_url}{path}?{urllib.parse.urlencode(query)}"


# -- Root and version documents ------------------------------------------------------------------


@route("GET", r"/", auth=False)
def root(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(
        200,
        {
            "name": catalogue.DESCRIPTION,
            "simulated": True,
            "identity": f"{req.base_url}/identity/v3",
            "region": catalogue.REGION,
            "services": ["identity", "compute", "image"],
        },
    )


def keystone_version(base: str) -> JsonDict:
    return {
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": f"{base}/identity/v3/"}],
        "media-types": [
            {"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}
        ],
        "description": catalogue.DESCRIPTION,
    }


@route("GET", r"/identity", auth=False)
def identity_versions(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(300, {"versions": {"values": [keystone_version(req.base_url)]}})


@route("GET", r"/identity/v3", auth=False)
def identity_version(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(200, {"version": keystone_version(req.base_url)})


def nova_version(base: str) -> JsonDict:
    return {
        "id": "v2.1",
        "status": "CURRENT",
        "version": fmt(NOVA_MAX),
        "min_version": fmt(NOVA_MIN),
        "updated": "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": f"{base}/compute/v2.1/"}],
        "media-types": [
            {
                "base": "application/json",
                "type": "application/vnd.openstack.compute+json;version=2.1",
            }
        ],
        "description": catalogue.DESCRIPTION,
    }


@route("GET", r"/compute", auth=False)
def compute_versions(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    v20 = {
        "id": "v2.0",
        "status": "DEPRECATED",
        "version": "",
        "min_version": "",
        "updated": "2025-07-04T12:00:00Z",
        "links": [{"rel": "self", "href": f"{req.base_url}/compute/v2/"}],
    }
    return Response.json(200, {"versions": [v20, nova_version(req.base_url)]})


@route("GET", r"/compute/v2\.1", auth=False)
def compute_version(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(200, {"version": nova_version(req.base_url)})


def glance_versions_doc(base: str) -> JsonDict:
    versions = []
    for minor in range(17, -1, -1):
        status = "CURRENT" if minor == 17 else "SUPPORTED"
        versions.append(
            {
                "id": f"v2.{minor}",
                "status": status,
                "links": [{"rel": "self", "href": f"{base}/image/v2/"}],
            }
        )
    return {"versions": versions}


@route("GET", r"/image", auth=False)
def image_versions(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(300, glance_versions_doc(req.base_url))


@route("GET", r"/image/versions", auth=False)
def image_versions_explicit(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(200, glance_versions_doc(req.base_url))


# -- Keystone ---------------------------------------------------------------------------------

ID = r"(?P<id>[^/]+)"


def ks_links(req: Request) -> JsonDict:
    return {"self": f"{req.base_url}{req.path}", "previous": None, "next": None}


def ks_item(req: Request, kind: str, item: JsonDict) -> JsonDict:
    item = dict(item)
    item["links"] = {"self": f"{req.base_url}/identity/v3/{kind}/{item['id']}"}
    return item


@route("POST", r"/identity/v3/auth/tokens", auth=False)
def tokens_create(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    token_id, record = cloud.authenticate(req.json())
    body = cloud.token_body(record, req.base_url)
    return Response.json(201, body, [("X-Subject-Token", token_id)])


@route("GET", r"/identity/v3/auth/tokens")
def tokens_validate(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    subject = req.headers.get("x-subject-token", "")
    try:
        ctx = cloud.validate_token(subject)
    except ApiError:
        raise ApiError(404, f"Could not find token: {subject}.") from None
    body = cloud.token_body(ctx, req.base_url)
    return Response.json(200, body, [("X-Subject-Token", subject)])


@route("DELETE", r"/identity/v3/auth/tokens")
def tokens_revoke(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    cloud.revoke_token(req.headers.get("x-subject-token", ""))
    return Response.empty()


def _ks_collection(kind: str, singular: str, lister: str, getter: str) -> None:
    def listing(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
        assert req.ctx is not None
        cloud.require_admin(req.ctx, f"identity:list_{kind}")
        items = getattr(cloud, lister)(req.flat_query())
        return Response.json(
            200, {kind: [ks_item(req, kind, i) for i in items], "links": ks_links(req)}
        )

    def show(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
        assert req.ctx is not None
        item = getattr(cloud, getter)(m["id"])
        own = req.ctx.get("project_id") == item["id"] or req.ctx["user_id"] == item["id"]
        if not own:
            cloud.require_admin(req.ctx, f"identity:get_{singular}")
        return Response.json(200, {singular: ks_item(req, kind, item)})

    route("GET", rf"/identity/v3/{kind}")(listing)
    route("GET", rf"/identity/v3/{kind}/{ID}")(show)


_ks_collection("domains", "domain", "domains_list", "domain_get")
_ks_collection("projects", "project", "projects_list", "project_get")
_ks_collection("users", "user", "users_list", "user_get")
_ks_collection("roles", "role", "roles_list", "role_get")


def _body_of(req: Request, key: str) -> JsonDict:
    data = req.json().get(key)
    if not isinstance(data, dict):
        raise ApiError(400, f"Expecting to find {key} in request body.")
    return data


@route("POST", r"/identity/v3/domains")
def domains_create(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    cloud.require_admin(req.ctx, "identity:create_domain")
    item = cloud.domain_create(_body_of(req, "domain"))
    return Response.json(201, {"domain": ks_item(req, "domains", item)})


@route("PATCH", rf"/identity/v3/domains/{ID}")
def domains_update(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    cloud.require_admin(req.ctx, "identity:update_domain")
    item = cloud.domain_update(m["id"], _body_of(req, "domain"))
    return Response.json(200, {"domain": ks_item(req, "domains", item)})


@route("DELETE", rf"/identity/v3/domains/{ID}")
def domains_delete(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    cloud.require_admin(req.ctx, "identity:delete_domain")
    cloud.domain_delete(m["id"])
    return Response.empty()


@route("POST", r"/identity/v3/projects")
def projects_create(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    cloud.require_admin(req.ctx, "identity:create_project")
    item = cloud.project_create(_body_of(req, "project"))
    return Response.json(201, {"project": ks_item(req, "projects", item)})


@route("PATCH", rf"/identity/v3/projects/{ID}")
def projects_update(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    cloud.require_admin(req.ctx, "identity:update_project")
    item = cloud.project_update(m["id"], _body_of(req, "project"))
    return Response.json(200, {"project": ks_item(req, "projects", item)})


@route("DELETE", rf"/identity/v3/projects/{ID}")
def projects_delete(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    cloud.require_admin(req.ctx, "identity:delete_project")
    cloud.project_delete(m["id"])
    return Response.empty()


@route("POST", r"/identity/v3/users")
def users_create(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    cloud.require_admin(req.ctx, "identity:create_user")
    item = cloud.user_create(_body_of(req, "user"))
    return Response.json(201, {"user": ks_item(req, "users", item)})


@route("DELETE", rf"/identity/v3/users/{ID}")
def users_delete(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    cloud.require_admin(req.ctx, "identity:delete_user")
    cloud.user_delete(m["id"])
    return Response.empty()


ASSIGN = r"/identity/v3/(?P<kind>projects|domains)/(?P<target>[^/]+)/users/(?P<user>[^/]+)/roles"


def _assignment(cloud: Cloud, req: Request, m: re.Match[str], op: str) -> Response:
    assert req.ctx is not None
    cloud.require_admin(req.ctx, f"identity:{op}_grant")
    groups = m.groupdict()
    kind = "system" if groups.get("kind") is None else groups["kind"].rstrip("s")
    present = cloud.assignment(
        op=op,
        kind=kind,
        target=groups.get("target") or "all",
        user_id=groups["user"],
        role_id=groups["role"],
    )
    if op == "check" and not present:
        raise ApiError(
            404,
            f"Could not find role assignment with role: {groups['role']}, user "
            f"or group: {groups['user']}.",
        )
    return Response.empty()


for _prefix in (ASSIGN, r"/identity/v3/system/users/(?P<user>[^/]+)/roles"):
    route("PUT", _prefix + r"/(?P<role>[^/]+)")(lambda c, r, m: _assignment(c, r, m, "put"))
    route("GET", _prefix + r"/(?P<role>[^/]+)")(lambda c, r, m: _assignment(c, r, m, "check"))
    route("DELETE", _prefix + r"/(?P<role>[^/]+)")(lambda c, r, m: _assignment(c, r, m, "delete"))


@route("GET", ASSIGN)
def assignment_roles(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    cloud.require_admin(req.ctx, "identity:list_grants")
    roles = cloud.roles_of(kind=m["kind"].rstrip("s"), target=m["target"], user_id=m["user"])
    return Response.json(
        200, {"roles": [ks_item(req, "roles", r) for r in roles], "links": ks_links(req)}
    )


@route("GET", r"/identity/v3/role_assignments")
def role_assignments(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    cloud.require_admin(req.ctx, "identity:list_role_assignments")
    rows = cloud.role_assignments(req.flat_query())
    return Response.json(200, {"role_assignments": rows, "links": ks_links(req)})


# -- Nova -------------------------------------------------------------------------------------

NOVA = r"/compute/v2\.1"


def nova_link(req: Request, kind: str, item_id: str) -> list[JsonDict]:
    return [
        {"rel": "self", "href": f"{req.base_url}/compute/v2.1/{kind}/{item_id}"},
        {"rel": "bookmark", "href": f"{req.base_url}/compute/{kind}/{item_id}"},
    ]


def flavor_view(req: Request, flavor: JsonDict, *, detail: bool) -> JsonDict:
    mv = req.microversion
    view: JsonDict = {
        "id": flavor["id"],
        "name": flavor["name"],
        "links": nova_link(req, "flavors", flavor["id"]),
    }
    if mv >= (2, 55):
        view["description"] = flavor.get("description")
    if not detail:
        return view
    view.update(
        {
            "ram": flavor["ram"],
            "disk": flavor["disk"],
            "vcpus": flavor["vcpus"],
            "swap": flavor["swap"] if mv >= (2, 75) else (flavor["swap"] or ""),
            "OS-FLV-EXT-DATA:ephemeral": flavor["ephemeral"],
            "OS-FLV-DISABLED:disabled": False,
            "os-flavor-access:is_public": flavor["is_public"],
            "rxtx_factor": 1.0,
        }
    )
    if mv >= (2, 61):
        view["extra_specs"] = {}
    return view


def _flavor_list(cloud: Cloud, req: Request, *, detail: bool) -> Response:
    flavors = cloud.flavors_list()
    if req.q("minRam"):
        flavors = [f for f in flavors if f["ram"] >= int(req.q("minRam") or 0)]
    if req.q("minDisk"):
        flavors = [f for f in flavors if f["disk"] >= int(req.q("minDisk") or 0)]
    page, marker = paginate(flavors, req, default_limit=1000)
    body: JsonDict = {"flavors": [flavor_view(req, f, detail=detail) for f in page]}
    if marker:
        path = f"/compute/v2.1/flavors{'/detail' if detail else ''}"
        body["flavors_links"] = [{"rel": "next", "href": next_link(req, path, marker)}]
    return Response.json(200, body)


@route("GET", NOVA + r"/flavors")
def flavors_index(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return _flavor_list(cloud, req, detail=False)


@route("GET", NOVA + r"/flavors/detail")
def flavors_detail(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return _flavor_list(cloud, req, detail=True)


@route("GET", NOVA + rf"/flavors/{ID}")
def flavors_show(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(200, {"flavor": flavor_view(req, cloud.flavor_get(m["id"]), detail=True)})


@route("GET", NOVA + rf"/flavors/{ID}/os-extra_specs")
def flavors_extra_specs(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    cloud.flavor_get(m["id"])
    return Response.json(200, {"extra_specs": {}})


def server_view(cloud: Cloud, req: Request, server: JsonDict) -> JsonDict:
    mv = req.microversion
    assert req.ctx is not None
    admin = req.ctx["is_admin"]
    status = server_status(server["vm_state"], server["task_state"])
    if mv >= (2, 47):
        flavor: JsonDict = {
            "vcpus": server["vcpus"],
            "ram": server["ram"],
            "disk": server["disk"],
            "ephemeral": 0,
            "swap": 0,
            "original_name": server["flavor_name"],
            "extra_specs": {},
        }
    else:
        flavor = {
            "id": server["flavor_id"],
            "links": nova_link(req, "flavors", server["flavor_id"]),
        }
    image: JsonDict = {
        "id": server["image_id"],
        "links": nova_link(req, "images", server["image_id"]),
    }
    if mv >= (2, 98):
        image["properties"] = {}
    view: JsonDict = {
        "id": server["id"],
        "name": server["name"],
        "status": status,
        "tenant_id": server["project_id"],
        "user_id": server["user_id"],
        "metadata": dict(server["metadata"]),
        "hostId": ""
        if not server.get("host")
        else catalogue.stable_id("hostid", server["project_id"] + server["host"], dashes=False)
        + "0" * 24,
        "image": image,
        "flavor": flavor,
        "created": iso(server["created"]),
        "updated": iso(server["updated"]),
        "addresses": server["addresses"] if server["vm_state"] != "building" else {},
        "accessIPv4": "",
        "accessIPv6": "",
        "links": nova_link(req, "servers", server["id"]),
        "OS-DCF:diskConfig": "MANUAL",
        "progress": 0,
        "OS-EXT-AZ:availability_zone": "nova" if server.get("host") else "",
        "config_drive": "",
        "key_name": server["key_name"],
        "OS-SRV-USG:launched_at": (
            iso(server["launched_at"]).replace("Z", ".000000") if server["launched_at"] else None
        ),
        "OS-SRV-USG:terminated_at": None,
        "security_groups": [{"name": "default"}],
        "OS-EXT-STS:task_state": server["task_state"],
        "OS-EXT-STS:vm_state": server["vm_state"],
        "OS-EXT-STS:power_state": server["power_state"],
        "os-extended-volumes:volumes_attached": [],
    }
    if server.get("fault") and status == "ERROR":
        view["fault"] = dict(server["fault"])
    if admin:
        view.update(
            {
                "OS-EXT-SRV-ATTR:host": server.get("host"),
                "OS-EXT-SRV-ATTR:hypervisor_hostname": server.get("host"),
                "OS-EXT-SRV-ATTR:instance_name": "instance-" + server["id"][:8],
            }
        )
    if mv >= (2, 9):
        view["locked"] = False
    if mv >= (2, 16) and admin:
        view["host_status"] = "UP" if server.get("host") else ""
    if mv >= (2, 19):
        view["description"] = server.get("description")
    if mv >= (2, 26):
        view["tags"] = []
    if mv >= (2, 63):
        view["trusted_image_certificates"] = None
    if mv >= (2, 71):
        view["server_groups"] = []
    if mv >= (2, 73):
        view["locked_reason"] = None
    if mv >= (2, 96):
        view["pinned_availability_zone"] = None
    if mv >= (2, 100):
        view["scheduler_hints"] = {}
    return view


def _server_list(cloud: Cloud, req: Request, *, detail: bool) -> Response:
    assert req.ctx is not None
    flat = req.flat_query()
    all_tenants = flat.get("all_tenants", flat.get("all_projects", "false")).lower() in (
        "1",
        "true",
        "",
        "yes",
    ) and ("all_tenants" in flat or "all_projects" in flat)
    servers = cloud.servers_list(req.ctx, all_tenants=all_tenants, filters=flat)
    page, marker = paginate(servers, req, default_limit=1000)
    if detail:
        items = [server_view(cloud, req, s) for s in page]
    else:
        items = [
            {"id": s["id"], "name": s["name"], "links": nova_link(req, "servers", s["id"])}
            for s in page
        ]
    body: JsonDict = {"servers": items}
    if marker:
        path = f"/compute/v2.1/servers{'/detail' if detail else ''}"
        body["servers_links"] = [{"rel": "next", "href": next_link(req, path, marker)}]
    return Response.json(200, body)


@route("GET", NOVA + r"/servers")
def servers_index(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return _server_list(cloud, req, detail=False)


@route("GET", NOVA + r"/servers/detail")
def servers_detail(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return _server_list(cloud, req, detail=True)


@route("POST", NOVA + r"/servers")
def servers_create(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    data = req.json().get("server")
    if not isinstance(data, dict):
        raise ApiError(
            400, "Invalid input for field/attribute server. 'server' is a required property"
        )
    server = cloud.server_create(req.ctx, data, req.microversion)
    body = {
        "server": {
            "id": server["id"],
            "links": nova_link(req, "servers", server["id"]),
            "OS-DCF:diskConfig": "MANUAL",
            "security_groups": [{"name": "default"}],
            "adminPass": server["admin_pass"],
        }
    }
    location = f"{req.base_url}/compute/v2.1/servers/{server['id']}"
    return Response.json(202, body, [("Location", location)])


@route("GET", NOVA + rf"/servers/{ID}")
def servers_show(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(
        200, {"server": server_view(cloud, req, cloud.server_get(req.ctx, m["id"]))}
    )


@route("PUT", NOVA + rf"/servers/{ID}")
def servers_update(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    data = req.json().get("server")
    if not isinstance(data, dict):
        raise ApiError(400, "Invalid input for field/attribute server.")
    server = cloud.server_update(req.ctx, m["id"], data)
    return Response.json(200, {"server": server_view(cloud, req, server)})


@route("DELETE", NOVA + rf"/servers/{ID}")
def servers_delete(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    cloud.server_delete(req.ctx, m["id"])
    return Response.empty()


@route("GET", NOVA + rf"/servers/{ID}/metadata")
def servers_metadata(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(200, {"metadata": cloud.server_get(req.ctx, m["id"])["metadata"]})


@route("POST", NOVA + rf"/servers/{ID}/action")
def servers_action(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    data = req.json()
    if len(data) != 1:
        raise ApiError(400, "Malformed request body")
    action, arg = next(iter(data.items()))
    if action in (
        "os-getVNCConsole",
        "os-getSPICEConsole",
        "os-getRDPConsole",
        "os-getSerialConsole",
    ):
        if req.microversion >= (2, 6):
            # Nova removed the legacy console actions at 2.6: the router does not know them.
            raise ApiError(404, "The resource could not be found.")
        cloud.server_get(req.ctx, m["id"])
        url = cloud.console_create(req.ctx, m["id"], req.base_url, (arg or {}).get("type", "novnc"))
        return Response.json(200, {"console": {"type": (arg or {}).get("type"), "url": url}})
    cloud.server_action(req.ctx, m["id"], action, arg)
    return Response.empty(202)


@route("POST", NOVA + rf"/servers/{ID}/remote-consoles")
def servers_remote_console(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    if req.microversion < (2, 6):
        raise ApiError(404, "The resource could not be found.")
    data = req.json().get("remote_console") or {}
    protocol, kind = data.get("protocol"), data.get("type")
    if protocol != "vnc" or kind not in ("novnc", "xvpvnc"):
        raise ApiError(400, f"Unavailable console type {kind}.")
    url = cloud.console_create(req.ctx, m["id"], req.base_url, kind)
    return Response.json(200, {"remote_console": {"protocol": protocol, "type": kind, "url": url}})


def quota_view(req: Request, project_id: str, values: JsonDict, *, with_id: bool) -> JsonDict:
    mv = req.microversion
    view = dict(values)
    if mv >= (2, 57):
        for key in catalogue.QUOTA_PRE_257:
            view.pop(key, None)
    if mv < (2, 36):
        view.update(catalogue.QUOTA_PRE_236)
    if with_id:
        view["id"] = project_id
    return view


def _require_project_or_admin(req: Request, project_id: str, action: str) -> None:
    assert req.ctx is not None
    if not req.ctx["is_admin"] and req.ctx["project_id"] != project_id:
        raise ApiError(403, f"Policy doesn't allow {action} to be performed.")


@route("GET", NOVA + rf"/os-quota-sets/{ID}")
def quota_show(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    _require_project_or_admin(req, m["id"], "os_compute_api:os-quota-sets:show")
    values = cloud.quota_get(m["id"])
    return Response.json(200, {"quota_set": quota_view(req, m["id"], values, with_id=True)})


@route("GET", NOVA + rf"/os-quota-sets/{ID}/detail")
def quota_detail(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    _require_project_or_admin(req, m["id"], "os_compute_api:os-quota-sets:detail")
    values = cloud.quota_get(m["id"], detail=True)
    view = quota_view(req, m["id"], values, with_id=True)
    for key, value in list(view.items()):
        if key != "id" and not isinstance(value, dict):
            view[key] = {"limit": value, "in_use": 0, "reserved": 0}
    return Response.json(200, {"quota_set": view})


@route("GET", NOVA + rf"/os-quota-sets/{ID}/defaults")
def quota_defaults(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    values = dict(catalogue.DEFAULT_QUOTA)
    return Response.json(200, {"quota_set": quota_view(req, m["id"], values, with_id=True)})


@route("PUT", NOVA + rf"/os-quota-sets/{ID}")
def quota_update(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    if not req.ctx["is_admin"]:
        raise ApiError(
            403, "Policy doesn't allow os_compute_api:os-quota-sets:update to be performed."
        )
    data = req.json().get("quota_set")
    if not isinstance(data, dict):
        raise ApiError(400, "Invalid input for field/attribute quota_set.")
    values = cloud.quota_update(m["id"], dict(data))
    return Response.json(200, {"quota_set": quota_view(req, m["id"], values, with_id=False)})


@route("GET", NOVA + r"/limits")
def limits(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    project = req.q("tenant_id") if req.ctx["is_admin"] else None
    absolute = cloud.limits(project or req.ctx["project_id"])
    return Response.json(200, {"limits": {"absolute": absolute, "rate": []}})


def hypervisor_view(req: Request, hv: JsonDict, *, detail: bool) -> JsonDict:
    mv = req.microversion
    hid: Any = catalogue.stable_id("hypervisor", hv["hypervisor_hostname"]) if mv >= (2, 53) else 1
    view: JsonDict = {
        "id": hid,
        "hypervisor_hostname": hv["hypervisor_hostname"],
        "state": "up",
        "status": "enabled",
    }
    if not detail:
        return view
    view.update(
        {
            "host_ip": hv["host_ip"],
            "hypervisor_type": hv["hypervisor_type"],
            "hypervisor_version": hv["hypervisor_version"],
            "service": {
                "host": hv["hypervisor_hostname"],
                "id": catalogue.stable_id("service", "nova-compute") if mv >= (2, 53) else 4,
                "disabled_reason": None,
            },
        }
    )
    if mv < (2, 88):
        cpu_info: Any = {
            "arch": "x86_64",
            "model": "EPYC-Rome",
            "vendor": "AMD",
            "topology": {"cells": 2, "sockets": 1, "cores": 16, "threads": 2},
            "features": [],
        }
        view.update(
            {
                "vcpus": hv["vcpus"],
                "vcpus_used": hv["vcpus_used"],
                "memory_mb": hv["memory_mb"],
                "memory_mb_used": hv["memory_mb_used"],
                "local_gb": hv["local_gb"],
                "local_gb_used": hv["local_gb_used"],
                "free_ram_mb": hv["free_ram_mb"],
                "free_disk_gb": hv["free_disk_gb"],
                "disk_available_least": hv["disk_available_least"],
                "current_workload": 0,
                "running_vms": hv["running_vms"],
                "cpu_info": cpu_info if mv >= (2, 28) else json.dumps(cpu_info),
            }
        )
    else:
        view["uptime"] = None
    return view


def _require_admin_nova(req: Request, action: str) -> None:
    assert req.ctx is not None
    if not req.ctx["is_admin"]:
        raise ApiError(403, f"Policy doesn't allow {action} to be performed.")


@route("GET", NOVA + r"/os-hypervisors")
def hypervisors_index(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    _require_admin_nova(req, "os_compute_api:os-hypervisors:list")
    return Response.json(
        200, {"hypervisors": [hypervisor_view(req, cloud.hypervisor(), detail=False)]}
    )


@route("GET", NOVA + r"/os-hypervisors/detail")
def hypervisors_detail(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    _require_admin_nova(req, "os_compute_api:os-hypervisors:list-detail")
    return Response.json(
        200, {"hypervisors": [hypervisor_view(req, cloud.hypervisor(), detail=True)]}
    )


@route("GET", NOVA + r"/os-hypervisors/statistics")
def hypervisors_statistics(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    _require_admin_nova(req, "os_compute_api:os-hypervisors:statistics")
    if req.microversion >= (2, 88):
        raise ApiError(404, "The resource could not be found.")
    hv = hypervisor_view(req, cloud.hypervisor(), detail=True)
    keys = (
        "vcpus",
        "vcpus_used",
        "memory_mb",
        "memory_mb_used",
        "local_gb",
        "local_gb_used",
        "free_ram_mb",
        "free_disk_gb",
        "disk_available_least",
        "current_workload",
        "running_vms",
    )
    stats = {k: hv[k] for k in keys}
    stats["count"] = 1
    return Response.json(200, {"hypervisor_statistics": stats})


@route("GET", NOVA + rf"/os-hypervisors/{ID}")
def hypervisors_show(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    _require_admin_nova(req, "os_compute_api:os-hypervisors:show")
    view = hypervisor_view(req, cloud.hypervisor(), detail=True)
    if str(view["id"]) != m["id"]:
        raise ApiError(404, f"Hypervisor with ID '{m['id']}' could not be found.")
    return Response.json(200, {"hypervisor": view})


def keypair_view(req: Request, kp: JsonDict, *, detail: bool) -> JsonDict:
    view = {"name": kp["name"], "public_key": kp["public_key"], "fingerprint": kp["fingerprint"]}
    if req.microversion >= (2, 2):
        view["type"] = kp["type"]
    if detail:
        view.update(
            {
                "user_id": kp["user_id"],
                "created_at": kp["created_at"],
                "deleted": False,
                "deleted_at": None,
                "updated_at": None,
                "id": 1,
            }
        )
    return view


@route("GET", NOVA + r"/os-keypairs")
def keypairs_index(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    pairs = cloud.keypairs_list(req.ctx["user_id"])
    return Response.json(
        200, {"keypairs": [{"keypair": keypair_view(req, k, detail=False)} for k in pairs]}
    )


@route("POST", NOVA + r"/os-keypairs")
def keypairs_create(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    data = req.json().get("keypair")
    if not isinstance(data, dict):
        raise ApiError(400, "Invalid input for field/attribute keypair.")
    kp = cloud.keypair_create(req.ctx["user_id"], data, req.microversion)
    view = keypair_view(req, kp, detail=False)
    view["user_id"] = kp["user_id"]
    if "private_key" in kp:
        view["private_key"] = kp["private_key"]
    return Response.json(201 if req.microversion >= (2, 2) else 200, {"keypair": view})


@route("GET", NOVA + rf"/os-keypairs/{ID}")
def keypairs_show(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    kp = cloud.keypair_get(req.ctx["user_id"], m["id"])
    return Response.json(200, {"keypair": keypair_view(req, kp, detail=True)})


@route("DELETE", NOVA + rf"/os-keypairs/{ID}")
def keypairs_delete(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    assert req.ctx is not None
    cloud.keypair_delete(req.ctx["user_id"], m["id"])
    return Response.empty(202 if req.microversion < (2, 2) else 204)


# -- Glance -----------------------------------------------------------------------------------


def image_view(image: JsonDict) -> JsonDict:
    view = dict(image)
    view["self"] = f"/v2/images/{image['id']}"
    view["file"] = f"/v2/images/{image['id']}/file"
    view["schema"] = "/v2/schemas/image"
    return view


@route("GET", r"/image/v2/images")
def images_index(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    images = cloud.images_list()
    for key in ("name", "status", "visibility", "os_distro"):
        value = req.q(key)
        if value is not None:
            images = [i for i in images if str(i.get(key)) == value]
    page, marker = paginate(images, req, default_limit=25)
    body: JsonDict = {
        "images": [image_view(i) for i in page],
        "first": "/v2/images" + (f"?limit={req.q('limit')}" if req.q("limit") else ""),
        "schema": "/v2/schemas/images",
    }
    if marker:
        query = {k: v for k, v in req.flat_query().items() if k != "marker"}
        query["marker"] = marker
        body["next"] = "/v2/images?" + urllib.parse.urlencode(query)
    return Response.json(200, body)


@route("GET", rf"/image/v2/images/{ID}")
def images_show(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(200, image_view(cloud.image_get(m["id"])))


@route("GET", r"/image/v2/schemas/(images|image)")
def images_schema(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(200, {"name": m.group(1), "properties": {}, "additionalProperties": True})


# -- Private API: /_devcloud ---------------------------------------------------------------------

PRIVATE = r"/_devcloud"


def _private_body(req: Request) -> JsonDict:
    return req.json() if req.body else {}


@route("GET", PRIVATE, auth=False)
def private_info(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(
        200,
        {
            "name": catalogue.DESCRIPTION,
            "simulated": True,
            "auth_url": f"{req.base_url}/identity/v3",
            "username": catalogue.ADMIN_USER,
            "project_name": catalogue.ADMIN_PROJECT,
            "region_name": catalogue.REGION,
            "delay": cloud.config.delay,
            "servers": len(cloud.raw_servers()),
            "faults": [f.as_dict() for f in cloud.faults],
        },
    )


@route("POST", PRIVATE + r"/reset", auth=False)
def private_reset(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    cloud.reset()
    return Response.empty()


@route("GET", PRIVATE + r"/faults", auth=False)
def private_faults(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    with cloud.lock:
        faults = [f.as_dict() for f in cloud.faults]
    return Response.json(200, {"faults": faults})


@route("POST", PRIVATE + r"/faults", auth=False)
def private_fault_add(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    data = _private_body(req)
    allowed = {"method", "path", "status", "delay", "times", "apply", "message"}
    unknown = set(data) - allowed
    if unknown:
        raise ApiError(400, f"Unknown fault fields: {', '.join(sorted(unknown))}")
    try:
        fault = cloud.add_fault(**data)
    except (re.error, ValueError, TypeError) as exc:
        raise ApiError(400, f"Invalid fault: {exc}") from None
    return Response.json(201, {"fault": fault.as_dict()})


@route("DELETE", PRIVATE + r"/faults", auth=False)
def private_faults_clear(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    cloud.clear_faults()
    return Response.empty()


@route("GET", PRIVATE + r"/servers", auth=False)
def private_servers(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(200, {"servers": cloud.raw_servers()})


@route("POST", PRIVATE + r"/servers", auth=False)
def private_server_create(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(201, {"server": cloud.raw_server_create(_private_body(req))})


@route("DELETE", PRIVATE + rf"/servers/{ID}", auth=False)
def private_server_delete(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    cloud.server_delete(None, m["id"], now=True)
    return Response.empty()


@route("POST", PRIVATE + rf"/servers/{ID}/status", auth=False)
def private_server_status(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(200, cloud.raw_set_status(m["id"], _private_body(req)))


@route("GET", PRIVATE + r"/requests", auth=False)
def private_requests(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    log = cloud.request_log(method=req.q("method"), path=req.q("path"))
    return Response.json(200, {"requests": log})


@route("POST", PRIVATE + r"/tokens/expire", auth=False)
def private_tokens_expire(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(200, {"expired": cloud.expire_tokens()})


@route("GET", PRIVATE + r"/config", auth=False)
def private_config(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    return Response.json(200, {"delay": cloud.config.delay, "token_ttl": cloud.config.token_ttl})


@route("POST", PRIVATE + r"/config", auth=False)
def private_config_set(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    data = _private_body(req)
    with cloud.lock:
        if "delay" in data:
            cloud.config.delay = float(data["delay"])
        if "token_ttl" in data:
            cloud.config.token_ttl = float(data["token_ttl"])
    return private_config(cloud, req, m)


@route("GET", PRIVATE + r"/vnc_lite\.html", auth=False)
def private_console_page(cloud: Cloud, req: Request, m: re.Match[str]) -> Response:
    inner = urllib.parse.parse_qs(urllib.parse.urlparse(req.q("path") or "").query)
    token = (inner.get("token") or [""])[0]
    server = cloud.console_server(token)
    if server is None:
        return Response.text(404, "Console token not found or expired.", "text/plain")
    status = server_status(server["vm_state"], server["task_state"])
    ips = ", ".join(a["addr"] for addrs in server["addresses"].values() for a in addrs) or "-"
    body = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(server["name"])} — simulated console</title>
<style>body{{background:#111;color:#ddd;font:14px monospace;padding:2em}}
.banner{{background:#664d03;color:#fff3cd;padding:.5em 1em;margin-bottom:1em}}</style></head>
<body><div class="banner">{html.escape(catalogue.DESCRIPTION)}: no virtual machine really runs
here.</div>
<pre>
{html.escape(server["name"])} login: _

server   {html.escape(server["id"])}
status   {status}
flavor   {html.escape(server["flavor_name"])}
address  {html.escape(ips)}
time     {iso(time.time())}
</pre></body></html>"""
    return Response.text(200, body, "text/html")
