"""SSH key pairs: validation of public keys (real keys made with ssh-keygen) and fingerprints as
ssh-keygen shows them; a VM booted with a key in the development cloud under the derived Nova
name; refusals (another user's key, a deleted key); deleting a key removes it from the cloud;
the API (own keys only) and the portal page and create form."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from billing.models import Holding
from compute import keypairs, services
from compute.cloud import get_backend
from compute.models import KeyPair, Server
from compute.tests.support import flavor, image, prepare
from teachcloud.errors import Conflict, ServiceError
from teachcloud.testing.factories import api_token

pytestmark = pytest.mark.django_db

API = "/api/v1"
SSH_KEYGEN = "/usr/bin/ssh-keygen"


def make_key(folder: Path, kind: str = "ed25519", bits: int | None = None) -> dict[str, str]:
    """A real key pair from ssh-keygen: public line, private text, and ssh-keygen's fingerprint."""
    path = folder / f"id_{kind}_{bits or 0}_{len(list(folder.iterdir()))}"
    args = [SSH_KEYGEN, "-q", "-t", kind, "-N", "", "-C", "me@laptop", "-f", str(path)]
    if bits:
        args[4:4] = ["-b", str(bits)]
    subprocess.run(args, check=True, capture_output=True)
    listed = subprocess.run(
        [SSH_KEYGEN, "-l", "-E", "sha256", "-f", f"{path}.pub"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return {
        "public": Path(f"{path}.pub").read_text().strip(),
        "private": path.read_text(),
        "fingerprint": listed[1],
    }


@pytest.fixture
def keys(tmp_path):
    return lambda kind="ed25519", bits=None: make_key(tmp_path, kind, bits)


@pytest.fixture
def w(world, settings):
    return prepare(world, settings)


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def client_for(user=None) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def cloud_keypair(name: str):
    """The Nova key pair of the service account (None when missing)."""
    return get_backend().conn.compute.find_keypair(name, ignore_missing=True)


# -- Validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "bits"), [("ed25519", None), ("rsa", 3072), ("ecdsa", 256), ("ecdsa", 521)]
)
def test_real_public_keys_are_accepted_with_ssh_keygens_fingerprint(world, keys, kind, bits):
    key = keys(kind, bits)
    keypair = keypairs.keypair_create(actor=world.member, name="laptop", public_key=key["public"])
    assert keypair.fingerprint == key["fingerprint"]
    assert keypair.public_key == key["public"]
    assert keypair.user == world.member


def test_a_known_key_has_the_fingerprint_ssh_keygen_computed():
    line = (
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEdjAnrf8TP+ZhYkIfAoRtqva9yBA+Apqc5aw375W9GS me@laptop"
    )
    key = keypairs.parse_public_key("  " + line + "\n")
    assert key.fingerprint == "SHA256:iGQrkHrJis2Bo9OalVWa+booPmMNoxL+LlXPfzCmtBY"
    assert key.text == line and key.comment == "me@laptop"


def test_a_private_key_is_refused_with_a_pointer_to_the_pub_file(world, keys):
    with pytest.raises(ServiceError) as refused:
        keypairs.keypair_create(actor=world.member, name="oops", public_key=keys()["private"])
    assert refused.value.code == "invalid_public_key"
    assert refused.value.detail == "This is a private key: paste the .pub file"
    assert not KeyPair.objects.exists()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello world",
        "ssh-ed25519 not*base64",
        "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
        # the blob of an ed25519 key announced as rsa
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIEdjAnrf8TP+ZhYkIfAoRtqva9yBA+Apqc5aw375W9GS",
        # truncated blob
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEdjAnrf8TP+ZhYkIfAoRtqva9yBA+Apqc5a",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEdjAnrf8TP+ZhYkIfAoRtqva9yBA+Apqc5aw375W9GS\n"
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEdjAnrf8TP+ZhYkIfAoRtqva9yBA+Apqc5aw375W9GS",
    ],
)
def test_garbage_is_refused(world, text):
    with pytest.raises(ServiceError) as refused:
        keypairs.keypair_create(actor=world.member, name="bad", public_key=text)
    assert refused.value.code == "invalid_public_key"
    assert refused.value.fields == {"public_key": [refused.value.detail]}


def test_a_short_rsa_key_is_refused(world, keys):
    with pytest.raises(ServiceError) as refused:
        keypairs.keypair_create(
            actor=world.member, name="old", public_key=keys("rsa", 1024)["public"]
        )
    assert refused.value.code == "invalid_public_key"
    assert "1024 bits" in refused.value.detail


def test_names_are_checked_and_unique_per_user(world, keys):
    key = keys()["public"]
    keypairs.keypair_create(actor=world.member, name="笔记本 laptop", public_key=key)
    with pytest.raises(Conflict) as taken:
        keypairs.keypair_create(actor=world.member, name=" 笔记本 laptop ", public_key=key)
    assert taken.value.code == "key_name_taken" and taken.value.status == 409
    for bad in ("", "a/b", "x" * 65):
        with pytest.raises(ServiceError) as refused:
            keypairs.keypair_create(actor=world.member, name=bad, public_key=key)
        assert refused.value.code == "invalid_key_name"
    # Another user may use the same name.
    keypairs.keypair_create(actor=world.project_admin, name="笔记本 laptop", public_key=key)
    assert KeyPair.objects.count() == 2


def test_the_cloud_name_is_ascii_and_unique_per_key_pair(world, keys, settings):
    settings.TEACHCLOUD_COMPUTE_NAME_PREFIX = "tc-"
    keypair = keypairs.keypair_create(
        actor=world.member, name="笔记本", public_key=keys()["public"]
    )
    assert keypairs.cloud_name(keypair) == f"tc-u{world.member.pk}-k{keypair.pk}"


# -- Booting with a key -----------------------------------------------------------------------


def test_a_vm_created_with_a_key_boots_with_it_in_the_cloud(w, run, keys, devcloud):
    key = keys()
    keypair = keypairs.keypair_create(actor=w.member, name="laptop", public_key=key["public"])
    with run():
        server = services.server_create(
            actor=w.member,
            project=w.project,
            name="vm1",
            flavor=flavor("m1.tiny"),
            image=image(),
            key_name="laptop",
        )
    server.refresh_from_db()
    assert server.status == "active", server.fault
    assert server.key_name == "laptop"
    nova_name = keypairs.cloud_name(keypair)
    assert devcloud.server(server.cloud_id)["key_name"] == nova_name
    there = cloud_keypair(nova_name)
    assert there is not None and there.public_key.split()[:2] == key["public"].split()[:2]


def test_ensure_replaces_a_cloud_key_pair_holding_another_key(w, keys):
    backend = get_backend()
    first, second = keys()["public"], keys("ecdsa", 256)["public"]
    backend.keypair_ensure(name="tc-test-replace", public_key=first)
    backend.keypair_ensure(name="tc-test-replace", public_key=first)  # idempotent
    assert cloud_keypair("tc-test-replace").public_key.split()[1] == first.split()[1]
    backend.keypair_ensure(name="tc-test-replace", public_key=second)
    assert cloud_keypair("tc-test-replace").public_key.split()[1] == second.split()[1]
    backend.keypair_delete(name="tc-test-replace")
    backend.keypair_delete(name="tc-test-replace")  # missing is fine
    assert cloud_keypair("tc-test-replace") is None


def test_another_users_key_name_is_refused_and_nothing_is_reserved(w, run, keys):
    keypairs.keypair_create(actor=w.project_admin, name="teacher", public_key=keys()["public"])
    with pytest.raises(ServiceError) as refused, run():
        services.server_create(
            actor=w.member,
            project=w.project,
            name="vm1",
            flavor=flavor("m1.tiny"),
            image=image(),
            key_name="teacher",
        )
    assert refused.value.code == "invalid_key_name" and refused.value.status == 400
    assert refused.value.detail == "You have no key pair named teacher."
    assert not Server.objects.exists() and not Holding.objects.exists()


def test_a_key_deleted_before_the_build_fails_it_cleanly(w, run, keys):
    keypair = keypairs.keypair_create(actor=w.member, name="laptop", public_key=keys()["public"])
    server = services.server_create(
        actor=w.member,
        project=w.project,
        name="vm1",
        flavor=flavor("m1.tiny"),
        image=image(),
        key_name="laptop",
    )  # the on-commit build never ran
    with run():
        keypairs.keypair_delete(actor=w.member, keypair=keypair)
    services.server_build(server_id=server.pk)
    server.refresh_from_db()
    assert server.status == "error" and server.cloud_id is None
    assert "laptop" in server.fault and "deleted" in server.fault
    holding = Holding.objects.get(pk=server.holding_id)
    assert holding.end == holding.start  # released: held for zero seconds
    assert not [s for s in get_backend().list_servers() if s.name == "vm1"]


def test_deleting_a_key_removes_it_from_the_cloud_and_keeps_the_vm(w, run, keys, devcloud):
    keypair = keypairs.keypair_create(actor=w.member, name="laptop", public_key=keys()["public"])
    nova_name = keypairs.cloud_name(keypair)
    with run():
        server = services.server_create(
            actor=w.member,
            project=w.project,
            name="vm1",
            flavor=flavor("m1.tiny"),
            image=image(),
            key_name="laptop",
        )
    assert cloud_keypair(nova_name) is not None
    with run():
        keypairs.keypair_delete(actor=w.member, keypair=keypair)
    assert not KeyPair.objects.exists()
    assert cloud_keypair(nova_name) is None
    server.refresh_from_db()
    assert server.status == "active"
    assert devcloud.server(server.cloud_id)["key_name"] == nova_name


# -- API --------------------------------------------------------------------------------------


def test_api_create_list_show_delete_own_keys_only(world, keys, run):
    key = keys()
    me, other = client_for(world.member), client_for(world.project_admin)
    created = me.post(
        f"{API}/keypairs/", {"name": "laptop", "public_key": key["public"]}, format="json"
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert set(body) == {"id", "name", "fingerprint", "public_key", "created_at"}
    assert body["fingerprint"] == key["fingerprint"] and body["public_key"] == key["public"]
    listed = me.get(f"{API}/keypairs/").json()
    assert [k["name"] for k in listed["results"]] == ["laptop"]
    assert other.get(f"{API}/keypairs/").json()["results"] == []
    assert client_for(world.platform).get(f"{API}/keypairs/").json()["results"] == []
    url = f"{API}/keypairs/{body['id']}/"
    assert me.get(url).json()["name"] == "laptop"
    for stranger in (world.project_admin, world.platform):
        assert client_for(stranger).get(url).status_code == 404
        assert client_for(stranger).delete(url).status_code == 404
    duplicate = me.post(
        f"{API}/keypairs/", {"name": "laptop", "public_key": key["public"]}, format="json"
    )
    assert duplicate.status_code == 409 and duplicate.json()["code"] == "key_name_taken"
    private = me.post(
        f"{API}/keypairs/", {"name": "x", "public_key": key["private"]}, format="json"
    )
    assert private.status_code == 400
    assert private.json()["code"] == "invalid_public_key"
    assert private.json()["detail"] == "This is a private key: paste the .pub file"
    bad_name = me.post(
        f"{API}/keypairs/", {"name": "a/b", "public_key": key["public"]}, format="json"
    )
    assert bad_name.status_code == 400 and bad_name.json()["code"] == "invalid_key_name"
    with run():
        assert me.delete(url).status_code == 204
    assert me.get(url).status_code == 404
    assert client_for().get(f"{API}/keypairs/").status_code == 401


def test_api_server_create_with_a_foreign_key_name_is_400(w, keys):
    keypairs.keypair_create(actor=w.project_admin, name="teacher", public_key=keys()["public"])
    response = client_for(w.member).post(
        f"{API}/servers/",
        {
            "project": w.project.pk,
            "name": "vm1",
            "flavor": flavor("m1.tiny").pk,
            "image": image().pk,
            "key_name": "teacher",
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_key_name"
    assert not Server.objects.exists()


# -- Portal -----------------------------------------------------------------------------------


def test_portal_page_adds_lists_and_deletes_keys(world, client, keys, run):
    key = keys()
    client.force_login(world.member)
    url = reverse("portal:keypairs")
    page = client.get(url).content.decode()
    assert "paste the contents of ~/.ssh/id_ed25519.pub" in page.lower()
    added = client.post(url, {"name": "laptop", "public_key": key["public"]}, follow=True)
    page = added.content.decode()
    assert "laptop" in page and key["fingerprint"] in page
    keypair = KeyPair.objects.get(user=world.member)
    delete_url = reverse("portal:keypair_delete", args=[keypair.pk])
    assert f'action="{delete_url}"' in page and "data-confirm=" in page
    refused = client.post(url, {"name": "bad", "public_key": key["private"]})
    assert refused.status_code == 200
    assert "This is a private key: paste the .pub file" in refused.content.decode()
    assert KeyPair.objects.count() == 1
    # Somebody else cannot delete it (404) and does not see it.
    client.force_login(world.project_admin)
    assert client.post(delete_url).status_code == 404
    assert key["fingerprint"] not in client.get(url).content.decode()
    client.force_login(world.member)
    with run():
        client.post(delete_url)
    assert not KeyPair.objects.exists()
    assert client.get(reverse("portal:my_servers")).content.decode().count(url) >= 1


def test_the_create_form_offers_only_own_keys(w, client, keys, run, devcloud):
    keypairs.keypair_create(actor=w.member, name="mine", public_key=keys()["public"])
    keypairs.keypair_create(actor=w.project_admin, name="teachers", public_key=keys()["public"])
    client.force_login(w.member)
    url = reverse("portal:server_create", args=[w.project.pk])
    page = client.get(url).content.decode()
    assert '<select name="key_name"' in page
    assert 'value="mine"' in page and 'value="teachers"' not in page
    assert "none — use the console" in page
    refused = client.post(
        url,
        {
            "name": "vm1",
            "flavor": flavor("m1.tiny").pk,
            "image": image().pk,
            "key_name": "teachers",
        },
    )
    assert refused.status_code == 200 and not Server.objects.exists()
    with run():
        created = client.post(
            url,
            {
                "name": "vm1",
                "flavor": flavor("m1.tiny").pk,
                "image": image().pk,
                "key_name": "mine",
            },
        )
    assert created.status_code == 302
    server = Server.objects.get()
    assert server.key_name == "mine" and server.status == "active"
    # Without a key, the form links to the key page.
    client.force_login(w.project_admin)
    KeyPair.objects.filter(user=w.project_admin).delete()
    page = client.get(url).content.decode()
    assert "Add an SSH key" in page and reverse("portal:keypairs") in page


def test_blob_helpers_reject_trailing_bytes():
    blob = base64.b64decode("AAAAC3NzaC1lZDI1NTE5AAAAIEdjAnrf8TP+ZhYkIfAoRtqva9yBA+Apqc5aw375W9GS")
    line = "ssh-ed25519 " + base64.b64encode(blob + b"\x00\x00\x00\x01x").decode()
    with pytest.raises(ServiceError):
        keypairs.parse_public_key(line)
