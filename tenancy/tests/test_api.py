"""The tenancy API: domains, projects, memberships and domain roles under /api/v1/."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from teachcloud.testing.factories import DomainFactory, ProjectFactory, UserFactory, api_token
from tenancy.models import AuditEvent, Domain, DomainRole, Membership, Project
from tenancy.services import domain_role_set, membership_add

API = "/api/v1"


def client_for(user=None) -> APIClient:
    """A client that authenticates like an API user (`Authorization: Token <key>`), in English."""
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    if user is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def ids(response) -> list[int]:
    return [row["id"] for row in response.json()["results"]]


# -- Domains ----------------------------------------------------------------------------------


def test_platform_staff_create_a_domain(world):
    response = client_for(world.platform).post(
        f"{API}/domains/", {"name": " East School ", "code": "East"}, format="json"
    )
    assert response.status_code == 201
    domain = Domain.objects.get(code="east")
    assert response.json() == {
        "id": domain.pk,
        "name": "East School",
        "code": "east",
        "status": "active",
    }
    assert AuditEvent.objects.filter(action="domain.create", target_id=str(domain.pk)).exists()


def test_domain_code_taken_is_a_conflict(world):
    response = client_for(world.platform).post(
        f"{API}/domains/", {"name": "Another North", "code": "north"}, format="json"
    )
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "code_taken"
    assert body["fields"] == {"code": [body["fields"]["code"][0]]}
    assert Domain.objects.count() == 2


@pytest.mark.parametrize(
    ("payload", "bad_fields"),
    [
        ({}, {"name", "code"}),
        ({"name": "", "code": "ok"}, {"name"}),
        ({"name": "X", "code": "not a slug!"}, {"code"}),
        ({"name": "X" * 201, "code": "x"}, {"name"}),
        ({"name": "X\x00", "code": "x"}, {"name"}),
    ],
)
def test_domain_create_validation_errors(world, payload, bad_fields):
    response = client_for(world.platform).post(f"{API}/domains/", payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert set(body["fields"]) == bad_fields
    assert body["detail"]
    assert Domain.objects.count() == 2


def test_domain_list_is_scoped(world):
    assert ids(client_for(world.platform).get(f"{API}/domains/")) == [
        world.domain.pk,
        world.other_domain.pk,
    ]
    assert ids(client_for(world.domain_admin).get(f"{API}/domains/")) == [world.domain.pk]
    assert ids(client_for(world.member).get(f"{API}/domains/")) == [world.domain.pk]
    assert ids(client_for(world.other_admin).get(f"{API}/domains/")) == [world.other_domain.pk]


def test_domain_admin_renames_their_domain(world):
    client = client_for(world.domain_admin)
    response = client.patch(
        f"{API}/domains/{world.domain.pk}/", {"name": "North High"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["name"] == "North High"
    world.domain.refresh_from_db()
    assert world.domain.name == "North High"
    event = AuditEvent.objects.get(action="domain.update")
    assert (event.before["name"], event.after["name"]) == ("North School", "North High")

    response = client.patch(f"{API}/domains/{world.domain.pk}/", {"name": "  "}, format="json")
    assert response.status_code == 400
    assert response.json()["fields"] == {"name": ["This field may not be blank."]}


def test_domain_detail_foreign_is_404_and_forbidden_is_403(world):
    client = client_for(world.domain_assistant)
    assert client.get(f"{API}/domains/{world.other_domain.pk}/").status_code == 404
    response = client.patch(f"{API}/domains/{world.domain.pk}/", {"name": "Y"}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


@pytest.mark.parametrize("bad_id", ["abc", "0", "-3", "99999999999999999999999999", "1.5"])
def test_invalid_ids_in_paths_are_404(world, bad_id):
    client = client_for(world.platform)
    for resource in ("domains", "projects", "memberships", "domain-roles", "users"):
        response = client.get(f"{API}/{resource}/{bad_id}/")
        assert response.status_code == 404, (resource, response.content)
        assert response.json()["code"] == "not_found"


def test_no_put_and_no_domain_delete(world):
    client = client_for(world.platform)
    url = f"{API}/domains/{world.domain.pk}/"
    assert client.put(url, {"name": "x"}, format="json").status_code == 405
    response = client.delete(url)
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


# -- Projects ---------------------------------------------------------------------------------


def test_domain_assistant_creates_a_project(world):
    response = client_for(world.domain_assistant).post(
        f"{API}/projects/",
        {
            "domain": world.domain.pk,
            "name": "Operating Systems",
            "code": "os300",
            "description": "Spring term",
        },
        format="json",
    )
    assert response.status_code == 201
    project = Project.objects.get(domain=world.domain, code="os300")
    assert response.json() == {
        "id": project.pk,
        "domain": world.domain.pk,
        "name": "Operating Systems",
        "code": "os300",
        "status": "active",
        "description": "Spring term",
        "end_date": None,
    }


@pytest.mark.parametrize(
    ("domain_value", "message"),
    [
        ("other", "not found"),
        (999999999, "not found"),
        (2**70, "not found"),
        ("abc", "integer"),
        (None, "null"),
        (True, "integer"),
    ],
)
def test_project_create_with_unusable_domain_is_400(world, domain_value, message):
    if domain_value == "other":
        domain_value = world.other_domain.pk
    response = client_for(world.domain_admin).post(
        f"{API}/projects/", {"domain": domain_value, "name": "X", "code": "x"}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert list(body["fields"]) == ["domain"]
    assert message in body["fields"]["domain"][0]
    assert Project.objects.count() == 2


def test_project_foreign_domain_message_names_the_id(world):
    response = client_for(world.domain_admin).post(
        f"{API}/projects/",
        {"domain": world.other_domain.pk, "name": "X", "code": "x"},
        format="json",
    )
    assert response.json()["fields"] == {"domain": [f"Object {world.other_domain.pk} not found."]}


def test_project_admin_may_not_create_projects(world):
    response = client_for(world.project_admin).post(
        f"{API}/projects/", {"domain": world.domain.pk, "name": "X", "code": "x"}, format="json"
    )
    assert response.status_code == 403
    assert Project.objects.count() == 2


def test_project_list_filter_by_domain(world):
    client = client_for(world.platform)
    assert ids(client.get(f"{API}/projects/")) == [world.project.pk, world.other_project.pk]
    assert ids(client.get(f"{API}/projects/", {"domain": world.other_domain.pk})) == [
        world.other_project.pk
    ]
    # A domain the caller cannot see filters to nothing (no hint that it exists).
    assert (
        ids(client_for(world.member).get(f"{API}/projects/", {"domain": world.other_domain.pk}))
        == []
    )


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1.5", str(2**64), ""])
def test_bad_filter_values_are_400(world, value):
    client = client_for(world.platform)
    for url, name in [
        ("projects", "domain"),
        ("memberships", "project"),
        ("memberships", "user"),
        ("domain-roles", "domain"),
        ("domain-roles", "user"),
        ("users", "domain"),
    ]:
        response = client.get(f"{API}/{url}/", {name: value})
        assert response.status_code == 400, (url, name, response.content)
        body = response.json()
        assert body["code"] == "invalid"
        assert list(body["fields"]) == [name]


def test_project_admin_edits_project_and_code_conflicts(world):
    client = client_for(world.project_admin)
    url = f"{API}/projects/{world.project.pk}/"
    response = client.patch(url, {"name": "Networks 102", "description": "new"}, format="json")
    assert response.status_code == 200
    assert response.json()["name"] == "Networks 102"
    assert response.json()["description"] == "new"
    assert response.json()["code"] == "net101"

    ProjectFactory(domain=world.domain, code="taken")
    response = client.patch(url, {"code": "taken"}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "code_taken"
    world.project.refresh_from_db()
    assert world.project.code == "net101"


def test_member_may_see_but_not_edit_the_project(world):
    client = client_for(world.member)
    url = f"{API}/projects/{world.project.pk}/"
    assert client.get(url).json()["id"] == world.project.pk
    assert client.patch(url, {"name": "mine"}, format="json").status_code == 403
    assert client.get(f"{API}/projects/{world.other_project.pk}/").status_code == 404


# -- Memberships ------------------------------------------------------------------------------


def test_project_admin_adds_a_member(world):
    response = client_for(world.project_admin).post(
        f"{API}/memberships/",
        {"project": world.project.pk, "user": world.outsider.pk, "role": "member"},
        format="json",
    )
    assert response.status_code == 201
    membership = Membership.objects.get(project=world.project, user=world.outsider)
    assert response.json() == {
        "id": membership.pk,
        "project": world.project.pk,
        "user": world.outsider.pk,
        "role": "member",
        "locked": False,
        "consumption": "0.0000",
        "expires_at": None,
    }
    assert AuditEvent.objects.filter(action="membership.add", target_id=str(membership.pk)).exists()


def test_assistant_until_a_date_serialises_with_offset(world):
    until = timezone.now() + timedelta(days=30)
    response = client_for(world.project_admin).post(
        f"{API}/memberships/",
        {
            "project": world.project.pk,
            "user": world.outsider.pk,
            "role": "assistant",
            "expires_at": until.isoformat(),
        },
        format="json",
    )
    assert response.status_code == 201
    expires_at = response.json()["expires_at"]
    assert expires_at.endswith("+08:00")  # Asia/Shanghai
    assert abs(timezone.datetime.fromisoformat(expires_at) - until) < timedelta(seconds=1)


def test_membership_errors(world):
    client = client_for(world.project_admin)
    url = f"{API}/memberships/"
    future = (timezone.now() + timedelta(days=3)).isoformat()

    response = client.post(
        url,
        {
            "project": world.project.pk,
            "user": world.outsider.pk,
            "role": "member",
            "expires_at": future,
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "expiry_not_allowed"
    assert set(response.json()["fields"]) == {"expires_at"}

    response = client.post(
        url, {"project": world.project.pk, "user": world.member.pk, "role": "member"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "already_member"

    response = client.post(
        url,
        {"project": world.project.pk, "user": world.other_admin.pk, "role": "member"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["fields"] == {"user": [f"Object {world.other_admin.pk} not found."]}

    response = client.post(
        url,
        {"project": world.project.pk, "user": world.outsider.pk, "role": "owner"},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"role"}
    assert Membership.objects.filter(user=world.outsider).count() == 0


def test_membership_role_change_and_removal(world):
    membership = Membership.objects.get(user=world.member)
    client = client_for(world.project_admin)
    url = f"{API}/memberships/{membership.pk}/"
    until = timezone.now() + timedelta(days=10)

    response = client.patch(
        url, {"role": "assistant", "expires_at": until.isoformat()}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["role"] == "assistant"
    assert response.json()["expires_at"] is not None

    # An end date left out is kept while the role stays; changing the role drops it.
    response = client.patch(url, {"role": "assistant"}, format="json")
    assert response.json()["expires_at"] is not None
    response = client.patch(url, {"role": "member"}, format="json")
    assert response.status_code == 200
    assert response.json() == {**response.json(), "role": "member", "expires_at": None}

    response = client.delete(url)
    assert response.status_code == 204
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert client.get(url).status_code == 404


def test_project_assistant_may_not_appoint(world):
    client = client_for(world.project_assistant)
    membership = Membership.objects.get(user=world.member)
    response = client.patch(f"{API}/memberships/{membership.pk}/", {"role": "admin"}, format="json")
    assert response.status_code == 403
    response = client.post(
        f"{API}/memberships/",
        {"project": world.project.pk, "user": world.outsider.pk, "role": "admin"},
        format="json",
    )
    assert response.status_code == 403
    assert Membership.objects.get(pk=membership.pk).role == "member"


def test_last_project_admin_is_refused(world):
    admin = Membership.objects.get(user=world.project_admin)
    client = client_for(world.project_admin)
    response = client.delete(f"{API}/memberships/{admin.pk}/")
    assert response.status_code == 409
    assert response.json()["code"] == "last_admin"
    response = client.patch(f"{API}/memberships/{admin.pk}/", {"role": "member"}, format="json")
    assert response.status_code == 409
    assert Membership.objects.get(pk=admin.pk).role == "admin"


def test_membership_filters(world):
    membership_add(
        actor=world.platform,
        project=world.other_project,
        user=UserFactory(home_domain=world.other_domain),
        role="member",
    )
    client = client_for(world.platform)
    all_ids = ids(client.get(f"{API}/memberships/"))
    assert len(all_ids) == 4
    project_ids = ids(client.get(f"{API}/memberships/", {"project": world.project.pk}))
    assert set(project_ids) == set(
        Membership.objects.filter(project=world.project).values_list("pk", flat=True)
    )
    assert ids(client.get(f"{API}/memberships/", {"user": world.member.pk})) == [
        Membership.objects.get(user=world.member).pk
    ]
    assert (
        ids(
            client.get(
                f"{API}/memberships/", {"user": world.member.pk, "project": world.other_project.pk}
            )
        )
        == []
    )
    # A member sees only their own membership.
    assert ids(client_for(world.member).get(f"{API}/memberships/")) == [
        Membership.objects.get(user=world.member).pk
    ]


# -- Domain roles -----------------------------------------------------------------------------


def test_domain_admin_appoints_and_removes_an_assistant(world):
    client = client_for(world.domain_admin)
    until = timezone.now() + timedelta(days=5)
    response = client.post(
        f"{API}/domain-roles/",
        {
            "domain": world.domain.pk,
            "user": world.outsider.pk,
            "role": "assistant",
            "expires_at": until.isoformat(),
        },
        format="json",
    )
    assert response.status_code == 201
    grant = DomainRole.objects.get(user=world.outsider)
    body = response.json()
    assert {k: body[k] for k in ("id", "domain", "user", "role")} == {
        "id": grant.pk,
        "domain": world.domain.pk,
        "user": world.outsider.pk,
        "role": "assistant",
    }
    assert body["expires_at"].endswith("+08:00")

    assert client.get(f"{API}/domain-roles/{grant.pk}/").json()["id"] == grant.pk
    response = client.delete(f"{API}/domain-roles/{grant.pk}/")
    assert response.status_code == 204
    assert not DomainRole.objects.filter(pk=grant.pk).exists()


def test_domain_assistant_may_not_appoint(world):
    response = client_for(world.domain_assistant).post(
        f"{API}/domain-roles/",
        {"domain": world.domain.pk, "user": world.outsider.pk, "role": "assistant"},
        format="json",
    )
    assert response.status_code == 403
    assert not DomainRole.objects.filter(user=world.outsider).exists()


def test_last_domain_admin_is_refused(world):
    grant = DomainRole.objects.get(user=world.domain_admin)
    client = client_for(world.platform)
    response = client.delete(f"{API}/domain-roles/{grant.pk}/")
    assert response.status_code == 409
    assert response.json() == {"code": "last_admin", "detail": response.json()["detail"]}
    response = client.post(
        f"{API}/domain-roles/",
        {"domain": world.domain.pk, "user": world.domain_admin.pk, "role": "assistant"},
        format="json",
    )
    assert response.status_code == 409
    assert DomainRole.objects.get(pk=grant.pk).role == "admin"

    # With a second admin the first may go.
    domain_role_set(actor=world.platform, domain=world.domain, user=world.outsider, role="admin")
    assert client.delete(f"{API}/domain-roles/{grant.pk}/").status_code == 204


def test_domain_role_filters_and_scope(world):
    client = client_for(world.platform)
    assert len(ids(client.get(f"{API}/domain-roles/"))) == 3
    assert ids(client.get(f"{API}/domain-roles/", {"domain": world.other_domain.pk})) == [
        DomainRole.objects.get(user=world.other_admin).pk
    ]
    assert ids(client.get(f"{API}/domain-roles/", {"user": world.domain_assistant.pk})) == [
        DomainRole.objects.get(user=world.domain_assistant).pk
    ]
    assert ids(client_for(world.member).get(f"{API}/domain-roles/")) == []
    assert set(ids(client_for(world.domain_assistant).get(f"{API}/domain-roles/"))) == set(
        DomainRole.objects.filter(domain=world.domain).values_list("pk", flat=True)
    )


# -- Pagination -------------------------------------------------------------------------------


def test_pagination_size_and_links(world):
    ProjectFactory.create_batch(33, domain=world.domain)
    client = client_for(world.domain_admin)
    body = client.get(f"{API}/projects/").json()
    assert body["count"] == 34
    assert len(body["results"]) == 30  # default size
    assert body["previous"] is None
    assert body["next"].endswith("/api/v1/projects/?page=2")

    body = client.get(f"{API}/projects/", {"size": 10, "page": 4}).json()
    assert len(body["results"]) == 4
    assert body["next"] is None
    assert "page=3" in body["previous"]
    assert "size=10" in body["previous"]

    response = client.get(f"{API}/projects/", {"page": 5, "size": 10})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_pagination_max_size_is_100(world):
    ProjectFactory.create_batch(104, domain=world.domain)
    body = client_for(world.domain_admin).get(f"{API}/projects/", {"size": 1000}).json()
    assert body["count"] == 105
    assert len(body["results"]) == 100


@pytest.mark.parametrize(
    ("params", "status", "results"),
    [
        ({"page": 0}, 404, None),
        ({"page": -1}, 404, None),
        ({"page": "abc"}, 404, None),
        ({"page": str(10**30)}, 404, None),
        ({"page": "9" * 5000}, 404, None),
        ({"size": -1}, 400, None),
        ({"size": 0}, 400, None),
        ({"size": "abc"}, 400, None),
        ({"size": "1.5"}, 400, None),
        ({"size": ""}, 400, None),
        ({"size": str(10**30)}, 200, 2),  # capped at 100
        ({"size": "9" * 5000}, 200, 2),
    ],
)
def test_odd_pagination_values_never_fail(world, params, status, results):
    response = client_for(world.platform).get(f"{API}/projects/", params)
    assert response.status_code == status
    if status == 404:
        assert response.json()["code"] == "not_found"
    elif status == 400:
        assert response.json()["code"] == "invalid"
        assert list(response.json()["fields"]) == ["size"]
    else:
        assert len(response.json()["results"]) == results


# -- Query counts -----------------------------------------------------------------------------


def _add_domains(world, n):
    DomainFactory.create_batch(n)


def _add_projects(world, n):
    ProjectFactory.create_batch(n, domain=world.domain)


def _add_memberships(world, n):
    for user in UserFactory.create_batch(n, home_domain=world.domain):
        membership_add(actor=world.platform, project=world.project, user=user, role="member")


def _add_domain_roles(world, n):
    for user in UserFactory.create_batch(n, home_domain=world.domain):
        domain_role_set(actor=world.platform, domain=world.domain, user=user, role="assistant")


@pytest.mark.parametrize(
    ("url", "viewer", "add_rows"),
    [
        ("domains", "platform", _add_domains),
        ("projects", "domain_admin", _add_projects),
        ("projects", "member", _add_projects),
        ("memberships", "domain_admin", _add_memberships),
        ("memberships", "project_assistant", _add_memberships),
        ("domain-roles", "domain_admin", _add_domain_roles),
    ],
)
def test_list_query_count_does_not_grow_with_rows(
    world, django_assert_max_num_queries, url, viewer, add_rows
):
    client = client_for(getattr(world, viewer))
    add_rows(world, 5)
    with CaptureQueriesContext(connection) as small:
        first = client.get(f"{API}/{url}/", {"size": 100})
    assert first.status_code == 200
    add_rows(world, 45)
    with django_assert_max_num_queries(len(small.captured_queries)):
        second = client.get(f"{API}/{url}/", {"size": 100})
    assert second.status_code == 200
    if viewer != "member":
        assert second.json()["count"] >= first.json()["count"] + 45


@pytest.mark.parametrize(
    "payload",
    [
        {"domain": "DOMAIN", "name": 0, "code": "x"},  # a number is not a string
        {"domain": "DOMAIN", "name": "X", "code": 7},
        {"domain": "1", "name": "X", "code": "x"},  # an id in quotes is not an id
        {"domain": 1.0, "name": "X", "code": "x"},
    ],
)
def test_json_types_are_strict(world, payload):
    payload = {k: (world.domain.pk if v == "DOMAIN" else v) for k, v in payload.items()}
    if payload["domain"] == "1":
        payload["domain"] = str(world.domain.pk)
    response = client_for(world.domain_admin).post(f"{API}/projects/", payload, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert Project.objects.count() == 2


def test_form_bodies_are_refused(world):
    response = client_for(world.platform).post(
        f"{API}/domains/", {"name": "East", "code": "east"}, format="multipart"
    )
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
