"""Allocation requests (SPEC Allocations 6): services, API, portal and admin action."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied
from rest_framework.test import APIClient

from billing import services
from billing.models import Allocation, AllocationRequest, Level, Notification, RequestStatus
from billing.requests import (
    allocation_request_create,
    allocation_request_decide,
    allocation_requests_visible_to,
)
from teachcloud.errors import Conflict, ServiceError
from teachcloud.testing.factories import api_token
from tenancy.models import AuditEvent, Membership

API = "/api/v1"


@pytest.fixture
def w(world):
    services.platform_capacity_set(
        actor=world.platform, vcpus=1000, ram_gib=4000, disk_gib=100_000, overcommit="1"
    )
    for domain in (world.domain, world.other_domain):
        services.wallet_open(domain=domain)
    for project in (world.project, world.other_project):
        services.wallet_open(project=project)
    services.allocation_set(
        actor=world.platform,
        target=services.target_of(domain=world.domain),
        vcpus=20,
        ram_gib=40,
        disk_gib=200,
    )
    return world


def membership(w, user=None) -> Membership:
    return Membership.objects.get(project=w.project, user=user or w.member)


def project_request(w, vcpus=8, ram=16, disk=100, **kwargs):
    return allocation_request_create(
        actor=w.project_admin,
        project=w.project,
        vcpus=vcpus,
        ram_gib=ram,
        disk_gib=disk,
        justification=kwargs.pop("justification", "A second lab group this term."),
        **kwargs,
    )


def member_request(w, vcpus=4, ram=8, disk=40, budget=None):
    return allocation_request_create(
        actor=w.member,
        membership=membership(w),
        vcpus=vcpus,
        ram_gib=ram,
        disk_gib=disk,
        budget=budget,
        justification="My thesis needs a bigger VM.",
    )


def current(**filters) -> Allocation | None:
    return Allocation.objects.filter(end__isnull=True, **filters).first()


# -- Services: creating -----------------------------------------------------------------------


def test_project_admin_requests_and_domain_admins_are_notified(w):
    request = project_request(w)
    assert (request.level, request.status) == (Level.PROJECT, RequestStatus.PENDING)
    assert (request.vcpus, request.ram_gib, request.disk_gib) == (8, 16, 100)
    assert request.domain == w.domain and request.requested_by == w.project_admin
    told = set(
        Notification.objects.filter(
            event="allocation_request.created", channel="email"
        ).values_list("recipient__username", flat=True)
    )
    assert told == {"domain_admin"}
    assert AuditEvent.objects.filter(action="allocation_request.create").count() == 1


def test_member_requests_own_limit_with_budget_and_project_staff_are_notified(w):
    request = member_request(w, budget="25.5")
    assert request.level == Level.MEMBER and request.membership == membership(w)
    assert request.budget == Decimal("25.5000")
    told = set(
        Notification.objects.filter(
            event="allocation_request.created", channel="email"
        ).values_list("recipient__username", flat=True)
    )
    assert told == {"project_admin", "project_assistant"}


@pytest.mark.parametrize("actor", ["project_assistant", "member", "domain_admin", "other_admin"])
def test_only_project_admins_request_project_allocation(w, actor):
    with pytest.raises(PermissionDenied):
        allocation_request_create(
            actor=getattr(w, actor),
            project=w.project,
            vcpus=1,
            ram_gib=1,
            disk_gib=1,
            justification="x",
        )
    assert not AllocationRequest.objects.exists()


def test_a_member_asks_only_for_their_own_limit(w):
    with pytest.raises(ServiceError) as exc:
        allocation_request_create(
            actor=w.project_admin,
            membership=membership(w),
            vcpus=1,
            ram_gib=1,
            disk_gib=1,
            justification="x",
        )
    assert exc.value.code == "not_own_membership"
    assert not AllocationRequest.objects.exists()


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"justification": "   "}, "justification_required"),
        ({"vcpus": -1}, "invalid_quantity"),
        ({"ram": 1.5}, "invalid_quantity"),
        ({"budget": "10"}, "budget_not_member"),
    ],
)
def test_invalid_project_requests_write_nothing(w, kwargs, code):
    with pytest.raises(ServiceError) as exc:
        project_request(w, **kwargs)
    assert exc.value.code == code
    assert not AllocationRequest.objects.exists()
    assert not Notification.objects.filter(event__startswith="allocation_request").exists()


def test_bad_member_budget_is_refused(w):
    with pytest.raises(ServiceError) as exc:
        member_request(w, budget="1.23456")
    assert exc.value.fields and "budget" in exc.value.fields
    assert not AllocationRequest.objects.exists()


def test_one_pending_request_per_target(w):
    project_request(w)
    member_request(w)
    with pytest.raises(Conflict) as exc:
        project_request(w, vcpus=9)
    assert exc.value.code == "request_pending"
    with pytest.raises(Conflict):
        member_request(w, vcpus=5)
    assert AllocationRequest.objects.count() == 2
    # Once decided, a new one may be filed.
    allocation_request_decide(
        actor=w.domain_admin, request=AllocationRequest.objects.get(level="project"), approve=False
    )
    assert project_request(w, vcpus=9).vcpus == 9


# -- Services: deciding -----------------------------------------------------------------------


def test_domain_admin_approves_project_request_and_allocation_is_applied(w):
    request = project_request(w)
    decided = allocation_request_decide(
        actor=w.domain_admin, request=request, approve=True, note="Granted for the term."
    )
    assert decided.status == RequestStatus.APPROVED
    assert decided.decided_by == w.domain_admin and decided.decided_at is not None
    assert decided.decision_note == "Granted for the term."
    allocation = current(level=Level.PROJECT, project=w.project)
    assert (allocation.vcpus, allocation.ram_gib, allocation.disk_gib) == (8, 16, 100)
    note = Notification.objects.get(event="allocation_request.approved", channel="email")
    assert note.recipient == w.project_admin and "Granted for the term." in note.body
    assert AuditEvent.objects.filter(action="allocation_request.approved").count() == 1


def test_project_staff_approve_member_request_limit_and_budget_applied(w):
    request = member_request(w, budget="30")
    allocation_request_decide(actor=w.project_assistant, request=request, approve=True)
    limit = current(level=Level.MEMBER, user=w.member, project=w.project)
    assert (limit.vcpus, limit.ram_gib, limit.disk_gib, limit.budget) == (
        4,
        8,
        40,
        Decimal("30.0000"),
    )
    assert Notification.objects.get(
        event="allocation_request.approved", channel="email"
    ).recipient == (w.member)


def test_deny_records_and_changes_no_allocation(w):
    request = project_request(w)
    before = Allocation.objects.count()
    decided = allocation_request_decide(
        actor=w.domain_admin, request=request, approve=False, note="Not this term."
    )
    assert decided.status == RequestStatus.DENIED and decided.decision_note == "Not this term."
    assert Allocation.objects.count() == before
    note = Notification.objects.get(event="allocation_request.denied", channel="email")
    assert note.recipient == w.project_admin


@pytest.mark.parametrize("actor", ["domain_assistant", "project_admin", "project_assistant"])
def test_only_domain_admins_decide_project_requests(w, actor):
    request = project_request(w)
    with pytest.raises((PermissionDenied, ServiceError)):
        allocation_request_decide(actor=getattr(w, actor), request=request, approve=True)
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING
    assert current(level=Level.PROJECT, project=w.project) is None


def test_member_cannot_decide_and_nobody_decides_their_own(w):
    request = member_request(w)
    with pytest.raises(PermissionDenied):
        allocation_request_decide(actor=w.member, request=request, approve=True)
    # A project admin who is a member of the project asks for their own limit...
    own = allocation_request_create(
        actor=w.project_admin,
        membership=membership(w, w.project_admin),
        vcpus=2,
        ram_gib=2,
        disk_gib=2,
        justification="demo VM",
    )
    with pytest.raises(ServiceError) as exc:
        allocation_request_decide(actor=w.project_admin, request=own, approve=True)
    assert exc.value.code == "own_request" and exc.value.status == 403
    own.refresh_from_db()
    assert own.status == RequestStatus.PENDING


def test_a_decided_request_is_a_conflict(w):
    request = project_request(w)
    allocation_request_decide(actor=w.domain_admin, request=request, approve=False)
    with pytest.raises(Conflict) as exc:
        allocation_request_decide(actor=w.domain_admin, request=request, approve=True)
    assert exc.value.code == "already_decided"
    assert current(level=Level.PROJECT, project=w.project) is None


def test_bounds_still_apply_on_approve_and_request_stays_pending(w):
    # The domain has 20 vCPU; another project already holds 15 of them.
    from teachcloud.testing.factories import ProjectFactory

    sibling = ProjectFactory(domain=w.domain, name="Other course", code="oc1")
    services.allocation_set(
        actor=w.domain_admin,
        target=services.target_of(project=sibling),
        vcpus=15,
        ram_gib=10,
        disk_gib=10,
    )
    request = project_request(w, vcpus=8, ram=16, disk=100)
    notes_before = Notification.objects.count()
    audits_before = AuditEvent.objects.count()
    with pytest.raises(Conflict) as exc:
        allocation_request_decide(actor=w.domain_admin, request=request, approve=True)
    assert exc.value.code == "domain_allocation_exceeded"
    assert "23 / 20" in str(exc.value.detail)
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING and request.decided_by is None
    assert current(level=Level.PROJECT, project=w.project) is None
    assert Notification.objects.count() == notes_before
    assert AuditEvent.objects.count() == audits_before


def test_visibility(w):
    project = project_request(w)
    member = member_request(w)

    def seen(user):
        return set(allocation_requests_visible_to(user).values_list("pk", flat=True))

    assert seen(w.platform) == {project.pk, member.pk}
    assert seen(w.domain_admin) == {project.pk, member.pk}
    assert seen(w.domain_assistant) == {member.pk}
    assert seen(w.project_admin) == {project.pk, member.pk}
    assert seen(w.project_assistant) == {member.pk}
    assert seen(w.member) == {member.pk}
    assert seen(w.other_admin) == set()


# -- API --------------------------------------------------------------------------------------


def client_for(user) -> APIClient:
    client = APIClient(HTTP_ACCEPT_LANGUAGE="en")
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(user)}")
    return client


def test_api_request_list_and_approve(w):
    response = client_for(w.member).post(
        f"{API}/allocation-requests/",
        {
            "membership": membership(w).pk,
            "vcpus": 4,
            "ram_gib": 8,
            "disk_gib": 40,
            "budget": "12.50",
            "justification": "thesis",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["level"] == "member" and body["budget"] == "12.5000"
    assert body["status"] == "pending" and body["decided_by"] is None
    pk = body["id"]

    listing = client_for(w.project_admin).get(f"{API}/allocation-requests/?status=pending")
    assert [row["id"] for row in listing.json()["results"]] == [pk]
    assert client_for(w.other_admin).get(f"{API}/allocation-requests/{pk}/").status_code == 404

    response = client_for(w.project_admin).post(
        f"{API}/allocation-requests/{pk}/approve/", {"note": "fine"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "approved"
    assert response.json()["decision_note"] == "fine"
    limit = current(level=Level.MEMBER, user=w.member)
    assert (limit.vcpus, limit.budget) == (4, Decimal("12.5000"))

    again = client_for(w.project_admin).post(
        f"{API}/allocation-requests/{pk}/reject/", {}, format="json"
    )
    assert again.status_code == 409 and again.json()["code"] == "already_decided"


def test_api_refuses_float_budget_and_missing_justification(w):
    client = client_for(w.member)
    response = client.post(
        f"{API}/allocation-requests/",
        {"membership": membership(w).pk, "vcpus": 1, "ram_gib": 1, "disk_gib": 1, "budget": 1.5},
        format="json",
    )
    assert response.status_code == 400
    assert set(response.json()["fields"]) == {"budget", "justification"}
    assert not AllocationRequest.objects.exists()


def test_api_bound_refusal_is_409_with_numbers(w):
    request = project_request(w, vcpus=30)
    response = client_for(w.domain_admin).post(
        f"{API}/allocation-requests/{request.pk}/approve/", {}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "domain_allocation_exceeded"
    assert "30 / 20" in response.json()["detail"]
    request.refresh_from_db()
    assert request.status == RequestStatus.PENDING


# -- Portal -----------------------------------------------------------------------------------


def test_portal_project_admin_asks_and_domain_admin_approves(w, client):
    from django.urls import reverse

    client.force_login(w.project_admin)
    page = client.get(reverse("portal:project_billing", args=[w.project.pk]))
    assert b"allocation-request" in page.content
    response = client.post(
        reverse("portal:billing_project_allocation_request", args=[w.project.pk]),
        {
            "ask-vcpus": "6",
            "ask-ram_gib": "12",
            "ask-disk_gib": "60",
            "ask-justification": "Lab 2 starts in May.",
        },
    )
    assert response.status_code == 302
    request = AllocationRequest.objects.get()
    assert (request.level, request.vcpus, request.justification) == (
        "project",
        6,
        "Lab 2 starts in May.",
    )

    client.force_login(w.domain_admin)
    page = client.get(reverse("portal:domain_billing", args=[w.domain.pk]))
    assert b"Lab 2 starts in May." in page.content
    response = client.post(
        reverse("portal:billing_allocation_request_decide", args=[request.pk]),
        {"decision": "approve", "note": "ok"},
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("portal:domain_billing", args=[w.domain.pk])
    request.refresh_from_db()
    assert request.status == "approved" and request.decision_note == "ok"
    allocation = current(level=Level.PROJECT, project=w.project)
    assert (allocation.vcpus, allocation.ram_gib, allocation.disk_gib) == (6, 12, 60)


def test_portal_member_asks_and_project_admin_denies(w, client):
    from django.urls import reverse

    client.force_login(w.member)
    page = client.get(reverse("portal:my_usage"))
    assert b"allocation-request" in page.content
    response = client.post(
        reverse("portal:billing_member_allocation_request"),
        {
            "ask-membership": str(membership(w).pk),
            "ask-vcpus": "4",
            "ask-ram_gib": "8",
            "ask-disk_gib": "40",
            "ask-budget": "20",
            "ask-justification": "Thesis experiments.",
        },
    )
    assert response.status_code == 302, response.content
    request = AllocationRequest.objects.get()
    assert request.membership == membership(w) and request.budget == Decimal("20.0000")

    client.force_login(w.project_admin)
    page = client.get(reverse("portal:project_billing", args=[w.project.pk]))
    assert b"Thesis experiments." in page.content
    response = client.post(
        reverse("portal:billing_allocation_request_decide", args=[request.pk]),
        {"decision": "deny", "note": "Use the shared VM."},
    )
    assert response["Location"] == reverse("portal:project_billing", args=[w.project.pk])
    request.refresh_from_db()
    assert request.status == "denied" and request.decided_by == w.project_admin
    assert current(level=Level.MEMBER, user=w.member, vcpus=4) is None

    client.force_login(w.member)
    assert b"Use the shared VM." in client.get(reverse("portal:my_usage")).content


def test_portal_bad_justification_rerenders_with_errors(w, client):
    from django.urls import reverse

    client.force_login(w.project_admin)
    response = client.post(
        reverse("portal:billing_project_allocation_request", args=[w.project.pk]),
        {"ask-vcpus": "6", "ask-ram_gib": "12", "ask-disk_gib": "60", "ask-justification": ""},
    )
    assert response.status_code == 200
    assert not AllocationRequest.objects.exists()


# -- Admin ------------------------------------------------------------------------------------


def test_admin_action_approves_and_reports_refusals(w, client):
    from django.urls import reverse

    fits = project_request(w, vcpus=8)
    too_big = member_request(w, vcpus=3)
    # The member's VMs already hold 5 vCPU: a limit of 3 breaks a bound and stays pending.
    from billing.models import Holding

    Holding.objects.create(
        membership=membership(w),
        project=w.project,
        user=w.member,
        server_ref="vm-1",
        vcpus=5,
        ram_gib=1,
        disk_gib=1,
        start=fits.created_at,
    )
    client.force_login(w.platform)
    response = client.post(
        reverse("admin:billing_allocationrequest_changelist"),
        {"action": "approve", "_selected_action": [fits.pk, too_big.pk]},
    )
    assert response.status_code == 302
    fits.refresh_from_db()
    too_big.refresh_from_db()
    assert fits.status == "approved" and fits.decided_by == w.platform
    assert current(level=Level.PROJECT, project=w.project).vcpus == 8
    assert too_big.status == "pending"
    assert current(level=Level.MEMBER, user=w.member, vcpus=3) is None
