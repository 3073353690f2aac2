"""The development cloud over raw HTTP: the answers openstacksdk relies on, in OpenStack's shapes
(see ../shared/openstack-ci/README.md for what real Keystone/Nova/Glance did), its labels, faults,
state file and behaviour under concurrent requests. No database needed."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from devcloud import DevCloud, catalogue
from devcloud.client import DevCloudClient, DevCloudError

ROOT = Path(__file__).resolve().parents[2]
CIRROS = catalogue.stable_id("image", "cirros-0.6")
UBUNTU = catalogue.stable_id("image", "ubuntu-24.04")

pytestmark = pytest.mark.needs_devcloud


def auth_body(project: dict | None = None, password: str = catalogue.ADMIN_PASSWORD) -> dict:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "admin", "domain": {"name": "Default"}, "password": password}
                },
            },
            "scope": {"project": project or {"name": "admin", "domain": {"name": "Default"}}},
        }
    }


class Api:
    """Raw HTTP to one devcloud, as the service account."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        response = self.http.post(f"{url}/identity/v3/auth/tokens", json=auth_body(), timeout=5)
        assert response.status_code == 201, response.text
        self.token = response.headers["X-Subject-Token"]
        self.body = response.json()

    def call(self, method: str, path: str, mv: str | None = "2.100", **kwargs) -> requests.Response:
        headers = {"X-Auth-Token": self.token, **kwargs.pop("headers", {})}
        if mv:
            headers["OpenStack-API-Version"] = f"compute {mv}"
        return self.http.request(method, f"{self.url}{path}", headers=headers, timeout=5, **kwargs)

    def project(self, name: str = "course") -> str:
        response = self.call("POST", "/identity/v3/projects", json={"project": {"name": name}})
        assert response.status_code == 201, response.text
        project_id = response.json()["project"]["id"]
        user = self.body["token"]["user"]["id"]
        role = catalogue.stable_id("role", "member", dashes=False)
        path = f"/identity/v3/projects/{project_id}/users/{user}/roles/{role}"
        assert self.call("PUT", path).status_code == 204
        return project_id

    def scoped(self, project_id: str) -> Api:
        scoped = Api.__new__(Api)
        scoped.url, scoped.http = self.url, requests.Session()
        response = scoped.http.post(
            f"{self.url}/identity/v3/auth/tokens", json=auth_body({"id": project_id}), timeout=5
        )
        assert response.status_code == 201, response.text
        scoped.token = response.headers["X-Subject-Token"]
        scoped.body = response.json()
        return scoped

    def boot(self, name: str = "vm", flavor: str = "1", image: str = CIRROS, **extra):
        server = {"name": name, "flavorRef": flavor, "imageRef": image, "networks": "auto", **extra}
        return self.call("POST", "/compute/v2.1/servers", json={"server": server})


@pytest.fixture
def api(devcloud) -> Api:
    return Api(devcloud.url)


def wait_status(api: Api, server_id: str, status: str) -> dict:
    deadline = time.monotonic() + 10
    while True:
        response = api.call("GET", f"/compute/v2.1/servers/{server_id}")
        if response.status_code == 200 and response.json()["server"]["status"] == status:
            return response.json()["server"]
        assert time.monotonic() < deadline, response.text
        time.sleep(0.02)


# -- Labels and version documents ------------------------------------------------------------


def test_every_answer_is_labelled_simulated(devcloud, api):
    for response in (
        requests.get(devcloud.url, timeout=5),
        requests.get(f"{devcloud.url}/compute/v2.1/flavors", timeout=5),  # 401
        api.call("GET", "/compute/v2.1/servers/nope"),  # 404
    ):
        assert response.headers["X-DevCloud"] == "simulated"
    root = requests.get(devcloud.url, timeout=5).json()
    assert root["name"] == "TeachCloud development cloud (simulated)"
    assert root["simulated"] is True


def test_version_documents_like_keystone_nova_and_glance(devcloud):
    versions = requests.get(f"{devcloud.url}/identity", timeout=5)
    assert versions.status_code == 300
    (v3,) = versions.json()["versions"]["values"]
    assert v3["id"] == "v3.14" and v3["links"][0]["href"].endswith("/identity/v3/")
    assert "simulated" in v3["description"]
    nova = requests.get(f"{devcloud.url}/compute/v2.1", timeout=5).json()["version"]
    assert (nova["min_version"], nova["version"], nova["status"]) == ("2.1", "2.100", "CURRENT")
    glance = requests.get(f"{devcloud.url}/image", timeout=5)
    assert glance.status_code == 300
    assert glance.json()["versions"][0]["id"] == "v2.17"


def test_the_token_carries_the_catalogue_of_region_one(api, devcloud):
    token = api.body["token"]
    assert token["project"]["name"] == "admin"
    assert [r["name"] for r in token["roles"]] == ["admin"]
    services = {s["type"]: s for s in token["catalog"]}
    assert set(services) == {"identity", "compute", "image"}
    endpoints = services["compute"]["endpoints"]
    assert {e["interface"] for e in endpoints} == {"public", "internal", "admin"}
    assert {e["region_id"] for e in endpoints} == {"RegionOne"}
    assert endpoints[0]["url"] == f"{devcloud.url}/compute/v2.1"


def test_a_wrong_password_is_401_in_keystones_shape(devcloud):
    response = requests.post(
        f"{devcloud.url}/identity/v3/auth/tokens", json=auth_body(password="nope"), timeout=5
    )
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": 401,
            "message": "The request you have made requires authentication.",
            "title": "Unauthorized",
        }
    }


def test_services_refuse_a_missing_or_revoked_token(devcloud, api):
    response = requests.get(f"{devcloud.url}/compute/v2.1/flavors", timeout=5)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Keystone uri=")
    assert response.json()["error"]["code"] == 401
    assert api.call("GET", "/compute/v2.1/flavors").status_code == 200
    devcloud.expire_tokens()
    assert api.call("GET", "/compute/v2.1/flavors").status_code == 401


def test_a_member_token_is_not_admin(api, devcloud):
    project = api.project()
    user = api.call(
        "POST",
        "/identity/v3/users",
        json={"user": {"name": "student", "password": "pw", "default_project_id": project}},
    ).json()["user"]
    role = catalogue.stable_id("role", "member", dashes=False)
    api.call("PUT", f"/identity/v3/projects/{project}/users/{user['id']}/roles/{role}")
    body = auth_body({"id": project}, password="pw")
    body["auth"]["identity"]["password"]["user"]["name"] = "student"
    token = requests.post(f"{devcloud.url}/identity/v3/auth/tokens", json=body, timeout=5)
    headers = {"X-Auth-Token": token.headers["X-Subject-Token"]}
    quota = requests.put(
        f"{devcloud.url}/compute/v2.1/os-quota-sets/{project}",
        json={"quota_set": {"cores": 100}},
        headers=headers,
        timeout=5,
    )
    assert quota.status_code == 403
    assert "forbidden" in quota.json()
    domains = requests.get(f"{devcloud.url}/identity/v3/domains", headers=headers, timeout=5)
    assert domains.status_code == 403


# -- Keystone ---------------------------------------------------------------------------------


def test_domains_and_projects_behave_like_keystone(api):
    created = api.call("POST", "/identity/v3/domains", json={"domain": {"name": "tc-pku"}})
    assert created.status_code == 201
    domain = created.json()["domain"]
    again = api.call("POST", "/identity/v3/domains", json={"domain": {"name": "tc-pku"}})
    assert again.status_code == 409
    listed = api.call("GET", "/identity/v3/domains", params={"name": "tc-pku"}).json()
    assert [d["id"] for d in listed["domains"]] == [domain["id"]]
    body = {"project": {"name": "cs101", "domain_id": domain["id"]}}
    project = api.call("POST", "/identity/v3/projects", json=body).json()["project"]
    duplicate = api.call("POST", "/identity/v3/projects", json=body)
    assert duplicate.status_code == 409
    assert "same name in the same domain" in duplicate.json()["error"]["message"]
    found = api.call(
        "GET", "/identity/v3/projects", params={"name": "cs101", "domain_id": domain["id"]}
    ).json()["projects"]
    assert [p["id"] for p in found] == [project["id"]]
    enabled = api.call("DELETE", f"/identity/v3/domains/{domain['id']}")
    assert enabled.status_code == 403
    assert "disable it first" in enabled.json()["error"]["message"]
    patch = {"domain": {"enabled": False}}
    assert api.call("PATCH", f"/identity/v3/domains/{domain['id']}", json=patch).ok
    assert api.call("DELETE", f"/identity/v3/domains/{domain['id']}").status_code == 204
    assert api.call("GET", f"/identity/v3/projects/{project['id']}").status_code == 404
    missing = api.call("GET", f"/identity/v3/domains/{domain['id']}")
    assert missing.json()["error"]["title"] == "Not Found"


def test_role_assignments_can_be_checked(api):
    project = api.project()
    user = api.body["token"]["user"]["id"]
    member = catalogue.stable_id("role", "member", dashes=False)
    reader = catalogue.stable_id("role", "reader", dashes=False)
    base = f"/identity/v3/projects/{project}/users/{user}/roles"
    assert api.call("HEAD", f"{base}/{member}").status_code == 204
    assert api.call("HEAD", f"{base}/{reader}").status_code == 404
    assert [r["name"] for r in api.call("GET", base).json()["roles"]] == ["member"]
    scoped = api.scoped(project)
    assert scoped.body["token"]["project"]["id"] == project


# -- Nova -----------------------------------------------------------------------------------------


def test_microversions_are_negotiated_like_nova(api):
    old = api.call("GET", "/compute/v2.1/flavors/1", mv=None)
    assert old.headers["OpenStack-API-Version"] == "compute 2.1"
    assert "extra_specs" not in old.json()["flavor"]
    legacy = api.call(
        "GET", "/compute/v2.1/flavors/1", mv=None, headers={"X-OpenStack-Nova-API-Version": "2.61"}
    )
    assert legacy.headers["X-OpenStack-Nova-API-Version"] == "2.61"
    assert legacy.json()["flavor"]["extra_specs"] == {}
    latest = api.call("GET", "/compute/v2.1/flavors/1", mv="latest")
    assert latest.headers["OpenStack-API-Version"] == "compute 2.100"
    too_new = api.call("GET", "/compute/v2.1/flavors/1", mv="2.101")
    assert too_new.status_code == 406
    assert "maximum is 2.100" in too_new.json()["notAcceptable"]["message"]


def test_a_server_shows_its_flavor_by_id_before_2_47_and_embedded_after(api):
    server_id = api.boot(flavor="2").json()["server"]["id"]
    old = api.call("GET", f"/compute/v2.1/servers/{server_id}", mv="2.46").json()["server"]
    assert old["flavor"]["id"] == "2"
    new = api.call("GET", f"/compute/v2.1/servers/{server_id}", mv="2.47").json()["server"]
    assert new["flavor"]["original_name"] == "m1.small"
    assert "id" not in new["flavor"]
    assert (new["flavor"]["vcpus"], new["flavor"]["ram"]) == (1, 2048)
    assert new["tenant_id"] == api.body["token"]["project"]["id"]
    assert new["OS-EXT-STS:vm_state"] == "building"


def test_create_validates_like_nova(api):
    unknown = api.boot(flavor="999")
    assert unknown.status_code == 400
    assert unknown.json() == {"badRequest": {"code": 400, "message": "Invalid flavorRef provided."}}
    no_image = api.boot(image="0e1c0e1c-0000-0000-0000-000000000000")
    assert no_image.status_code == 400
    assert "could not be found" in no_image.json()["badRequest"]["message"]
    too_small = api.boot(flavor="1", image=UBUNTU)
    assert too_small.status_code == 400
    server = {"name": "x", "flavorRef": "1", "imageRef": CIRROS}
    no_networks = api.call("POST", "/compute/v2.1/servers", json={"server": server})
    assert no_networks.status_code == 400
    assert "'networks' is a required property" in no_networks.json()["badRequest"]["message"]
    old = api.call("POST", "/compute/v2.1/servers", json={"server": server}, mv="2.36")
    assert old.status_code == 202
    no_key = api.boot(key_name="missing")
    assert no_key.json()["badRequest"]["message"] == "Invalid key_name provided."


def test_networks_none_gives_no_address_and_auto_a_private_one(api):
    none = api.boot(networks="none").json()["server"]["id"]
    auto = api.boot().json()["server"]["id"]
    assert wait_status(api, none, "ACTIVE")["addresses"] == {}
    (address,) = wait_status(api, auto, "ACTIVE")["addresses"]["private"]
    assert address["addr"].startswith("10.0.") and address["version"] == 4


def test_quota_is_enforced_on_create_with_novas_message(api):
    project = api.project()
    quota = {"quota_set": {"cores": 4, "ram": 51200, "instances": 10}}
    assert api.call("PUT", f"/compute/v2.1/os-quota-sets/{project}", json=quota).ok
    scoped = api.scoped(project)
    assert scoped.boot(flavor="3").status_code == 202
    assert scoped.boot(flavor="3").status_code == 202
    refused = scoped.boot(flavor="3")
    assert refused.status_code == 403
    assert refused.json() == {
        "forbidden": {
            "code": 403,
            "message": "Quota exceeded for cores: Requested 2, but already used 4 of 4 cores",
        }
    }
    detail = api.call("GET", f"/compute/v2.1/os-quota-sets/{project}/detail").json()
    assert detail["quota_set"]["cores"] == {"limit": 4, "in_use": 4, "reserved": 0}
    assert detail["quota_set"]["instances"] == {"limit": 10, "in_use": 2, "reserved": 0}
    lower = api.call(
        "PUT", f"/compute/v2.1/os-quota-sets/{project}", json={"quota_set": {"cores": 2}}
    )
    assert lower.status_code == 400
    assert "must be greater than or equal to already used" in lower.json()["badRequest"]["message"]
    forced = {"quota_set": {"cores": 2, "force": True}}
    assert api.call("PUT", f"/compute/v2.1/os-quota-sets/{project}", json=forced).ok


def test_quota_sets_change_shape_with_the_microversion(api):
    project = api.project()
    old = api.call("GET", f"/compute/v2.1/os-quota-sets/{project}", mv="2.35").json()
    assert old["quota_set"]["floating_ips"] == 10 and old["quota_set"]["injected_files"] == 5
    mid = api.call("GET", f"/compute/v2.1/os-quota-sets/{project}", mv="2.56").json()
    assert "floating_ips" not in mid["quota_set"] and mid["quota_set"]["injected_files"] == 5
    new = api.call("GET", f"/compute/v2.1/os-quota-sets/{project}", mv="2.57").json()
    assert "injected_files" not in new["quota_set"]
    assert new["quota_set"]["id"] == project
    assert (new["quota_set"]["cores"], new["quota_set"]["ram"]) == (20, 51200)


def test_actions_move_through_novas_states_and_refuse_conflicts(api, devcloud):
    server_id = api.boot().json()["server"]["id"]
    early = api.call("POST", f"/compute/v2.1/servers/{server_id}/action", json={"os-stop": None})
    assert early.status_code == 409
    assert "while it is in vm_state building" in early.json()["conflictingRequest"]["message"]
    wait_status(api, server_id, "ACTIVE")
    assert (
        api.call(
            "POST", f"/compute/v2.1/servers/{server_id}/action", json={"os-stop": None}
        ).status_code
        == 202
    )
    stopped = wait_status(api, server_id, "SHUTOFF")
    assert (stopped["OS-EXT-STS:vm_state"], stopped["OS-EXT-STS:power_state"]) == ("stopped", 4)
    again = api.call("POST", f"/compute/v2.1/servers/{server_id}/action", json={"os-stop": None})
    assert again.status_code == 409
    assert again.json()["conflictingRequest"]["message"] == (
        f"Cannot 'stop' instance {server_id} while it is in vm_state stopped"
    )
    soft = {"reboot": {"type": "SOFT"}}
    assert (
        api.call("POST", f"/compute/v2.1/servers/{server_id}/action", json=soft).status_code == 409
    )
    unknown = api.call("POST", f"/compute/v2.1/servers/{server_id}/action", json={"os-fly": {}})
    assert unknown.status_code == 400
    assert (
        api.call(
            "PUT", f"/compute/v2.1/servers/{server_id}", json={"server": {"name": "renamed"}}
        ).json()["server"]["name"]
        == "renamed"
    )
    assert api.call("DELETE", f"/compute/v2.1/servers/{server_id}").status_code == 204
    deadline = time.monotonic() + 10
    while api.call("GET", f"/compute/v2.1/servers/{server_id}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    gone = api.call("GET", f"/compute/v2.1/servers/{server_id}")
    assert gone.json() == {
        "itemNotFound": {"code": 404, "message": f"Instance {server_id} could not be found."}
    }


def test_consoles_come_from_remote_consoles_and_the_legacy_action_is_gone(api, devcloud):
    server_id = api.boot().json()["server"]["id"]
    wait_status(api, server_id, "ACTIVE")
    legacy = api.call(
        "POST",
        f"/compute/v2.1/servers/{server_id}/action",
        json={"os-getVNCConsole": {"type": "novnc"}},
    )
    assert legacy.status_code == 404
    old = api.call(
        "POST",
        f"/compute/v2.1/servers/{server_id}/action",
        json={"os-getVNCConsole": {"type": "novnc"}},
        mv="2.5",
    )
    assert old.status_code == 200 and "token" in old.json()["console"]["url"]
    body = {"remote_console": {"protocol": "vnc", "type": "novnc"}}
    console = api.call("POST", f"/compute/v2.1/servers/{server_id}/remote-consoles", json=body)
    url = console.json()["remote_console"]["url"]
    assert url.startswith(f"{devcloud.url}/_devcloud/vnc_lite.html?path=%3Ftoken%3D")
    page = requests.get(url, timeout=5)
    assert page.status_code == 200
    assert "simulated" in page.text and server_id in page.text


def test_hypervisor_statistics_exist_until_2_87(api):
    api.boot(flavor="3")
    old = api.call("GET", "/compute/v2.1/os-hypervisors/detail", mv="2.87").json()
    (hv,) = old["hypervisors"]
    assert (hv["vcpus"], hv["vcpus_used"], hv["memory_mb"]) == (64, 2, 262144)
    assert hv["running_vms"] == 1
    new = api.call("GET", "/compute/v2.1/os-hypervisors/detail", mv="2.88").json()
    assert "vcpus" not in new["hypervisors"][0]
    assert new["hypervisors"][0]["state"] == "up"
    stats = api.call("GET", "/compute/v2.1/os-hypervisors/statistics", mv="2.87")
    assert stats.json()["hypervisor_statistics"]["count"] == 1
    assert api.call("GET", "/compute/v2.1/os-hypervisors/statistics", mv="2.88").status_code == 404


def test_listing_servers_is_per_project_unless_all_tenants(api):
    project = api.project()
    scoped = api.scoped(project)
    mine = scoped.boot(name="mine").json()["server"]["id"]
    other = api.boot(name="admins").json()["server"]["id"]
    own = scoped.call("GET", "/compute/v2.1/servers/detail").json()["servers"]
    assert [s["id"] for s in own] == [mine]
    assert scoped.call("GET", f"/compute/v2.1/servers/{other}").status_code == 404
    everything = api.call("GET", "/compute/v2.1/servers/detail", params={"all_tenants": "True"})
    assert {s["id"] for s in everything.json()["servers"]} == {mine, other}
    only = api.call(
        "GET", "/compute/v2.1/servers/detail", params={"all_tenants": "1", "project_id": project}
    )
    assert [s["id"] for s in only.json()["servers"]] == [mine]
    refused = scoped.call("GET", "/compute/v2.1/servers/detail", params={"all_tenants": "1"})
    assert refused.status_code == 403


def test_server_lists_paginate_with_links(api):
    ids = {api.boot(name=f"vm{n}").json()["server"]["id"] for n in range(5)}
    page = api.call("GET", "/compute/v2.1/servers", params={"limit": 2}).json()
    assert len(page["servers"]) == 2
    (link,) = page["servers_links"]
    seen = [s["id"] for s in page["servers"]]
    while link:
        page = api.http.get(link["href"], headers={"X-Auth-Token": api.token}, timeout=5).json()
        seen += [s["id"] for s in page["servers"]]
        link = (page.get("servers_links") or [None])[0]
    assert sorted(seen) == sorted(ids)


# -- Glance -------------------------------------------------------------------------------------


def test_images_page_like_glance(api):
    first = api.call("GET", "/image/v2/images", mv=None, params={"limit": 3}).json()
    assert len(first["images"]) == 3
    assert first["next"].startswith("/v2/images?")
    rest = api.call("GET", "/image" + first["next"], mv=None).json()
    names = {i["name"] for i in first["images"] + rest["images"]}
    assert names == {"cirros-0.6", "ubuntu-24.04", "debian-12", "rocky-9"}
    assert "next" not in rest
    one = api.call("GET", f"/image/v2/images/{CIRROS}", mv=None).json()
    assert (one["status"], one["disk_format"], one["visibility"]) == ("active", "qcow2", "public")
    missing = api.call("GET", "/image/v2/images/nope", mv=None)
    assert missing.status_code == 404 and "No image found with ID nope" in missing.text


# -- Faults, private controls ---------------------------------------------------------------------


def test_faults_match_method_and_path_and_heal_after_times(devcloud, api):
    devcloud.fail("GET", r"/flavors/detail$", status=503, times=2)
    assert api.call("GET", "/compute/v2.1/flavors").status_code == 200
    assert api.call("POST", "/compute/v2.1/flavors/detail").status_code == 405
    first = api.call("GET", "/compute/v2.1/flavors/detail")
    assert first.status_code == 503 and first.json()["serviceUnavailable"]["code"] == 503
    assert api.call("GET", "/compute/v2.1/flavors/detail").status_code == 503
    assert api.call("GET", "/compute/v2.1/flavors/detail").status_code == 200
    assert devcloud.faults() == []
    devcloud.fail("*", r"/identity/v3/projects$", status=500)
    failed = api.call("GET", "/identity/v3/projects")
    assert failed.json()["error"]["title"] == "Internal Server Error"
    devcloud.fail("GET", r"/image/v2/images$", status=502)
    gateway = api.call("GET", "/image/v2/images", mv=None)
    assert gateway.status_code == 502 and "text/html" in gateway.headers["Content-Type"]
    assert [r["status"] for r in devcloud.requests("GET", r"/flavors/detail$")] == [503, 503, 200]


def test_a_lost_answer_still_does_the_work(devcloud, api):
    devcloud.fail("POST", r"/servers$", status=500, apply=True, times=1)
    response = api.boot()
    assert response.status_code == 500
    assert "computeFault" in response.json()
    assert len(devcloud.servers()) == 1


def test_a_timeout_hangs_until_the_client_gives_up(devcloud, api):
    devcloud.fail("GET", r"/flavors$", status="timeout")
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.http.get(
            f"{devcloud.url}/compute/v2.1/flavors", headers={"X-Auth-Token": api.token}, timeout=0.3
        )
    (logged,) = devcloud.requests("GET", r"/flavors$")
    assert logged["status"] == 0 and logged["fault"] is not None
    devcloud.clear_faults()
    assert api.call("GET", "/compute/v2.1/flavors").status_code == 200


def test_the_http_controls_match_the_in_process_ones(devcloud, api):
    client = DevCloudClient(devcloud.url)
    assert client.info()["simulated"] is True
    project = api.project()
    made = client.create_server_behind_back(project_id=project, name="rogue", status="SHUTOFF")
    assert [(s["name"], s["status"]) for s in client.servers()] == [("rogue", "SHUTOFF")]
    client.set_status(made["id"], "ERROR", fault="disk on fire")
    shown = api.call("GET", f"/compute/v2.1/servers/{made['id']}").json()["server"]
    assert shown["status"] == "ERROR" and shown["fault"]["message"] == "disk on fire"
    fault = client.fail("GET", r"/limits$", status=500, times=1)
    assert fault["hits"] == 0 and client.faults()[0]["path"] == r"/limits$"
    client.clear_faults()
    assert client.faults() == []
    with pytest.raises(DevCloudError):
        client.fail("GET", r"(", status=500)
    client.delete_server_behind_back(made["id"])
    assert client.servers() == []
    client.reset()
    assert api.call("GET", f"/identity/v3/projects/{project}").status_code == 404


# -- Concurrency, persistence, the command --------------------------------------------------------


def test_concurrent_creates_never_pass_the_quota(api):
    project = api.project()
    quota = {"quota_set": {"instances": 5, "cores": 100, "ram": 512000}}
    api.call("PUT", f"/compute/v2.1/os-quota-sets/{project}", json=quota)
    scoped = api.scoped(project)
    results: list[int] = []

    def boot(n: int) -> None:
        client = Api.__new__(Api)
        client.url, client.token, client.http = scoped.url, scoped.token, requests.Session()
        results.append(client.boot(name=f"vm{n}").status_code)

    threads = [threading.Thread(target=boot, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [202] * 5 + [403] * 15
    listed = scoped.call("GET", "/compute/v2.1/servers").json()["servers"]
    assert len(listed) == 5


def test_the_state_file_keeps_servers_and_tokens_across_a_restart(tmp_path):
    state = tmp_path / "devcloud.json"
    with DevCloud(port=0, delay=0.05, state_file=str(state)) as first:
        api = Api(first.url)
        server_id = api.boot(name="survivor").json()["server"]["id"]
        wait_status(api, server_id, "ACTIVE")
    assert state.exists()
    with DevCloud(port=0, delay=0.05, state_file=str(state)) as second:
        api.url = second.url
        shown = api.call("GET", f"/compute/v2.1/servers/{server_id}").json()["server"]
        assert (shown["name"], shown["status"]) == ("survivor", "ACTIVE")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_python_m_devcloud_serves_and_saves_on_sigterm(tmp_path):
    port = _free_port()
    state = tmp_path / "state.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devcloud",
            "--port",
            str(port),
            "--state",
            str(state),
            "--delay",
            "0",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                info = requests.get(f"http://127.0.0.1:{port}/_devcloud", timeout=1).json()
                break
            except requests.exceptions.ConnectionError:
                assert time.monotonic() < deadline, "devcloud did not start"
                time.sleep(0.1)
        assert info["auth_url"] == f"http://127.0.0.1:{port}/identity/v3"
        api = Api(f"http://127.0.0.1:{port}")
        api.boot(name="kept")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "TeachCloud development cloud (simulated)" in output
    saved = json.loads(state.read_text())
    assert [s["name"] for s in saved["servers"].values()] == ["kept"]
