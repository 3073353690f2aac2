"""The reservation of SPEC Compute 2–3: a create is checked against the member's limit and the
project's allocation and held (billing.Holding) in the same transaction; refusals name the
resource and the numbers; locked members and tenants, foreign flavors and images, bad names are
refused before anything is written."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from billing.enforcement import tenant_lock
from billing.models import Holding
from billing.services import allocation_set, target_of
from compute.models import Server
from compute.selectors import flavor_fits, member_room
from compute.services import server_create, server_delete
from compute.tests.support import flavor, image, prepare, set_limit
from teachcloud.errors import Conflict, ServiceError
from teachcloud.testing.clock import pinned
from teachcloud.testing.factories import UserFactory
from tenancy.models import Membership
from tenancy.services import membership_add, project_update

pytestmark = pytest.mark.django_db


@pytest.fixture
def w(world, settings):
    return prepare(world, settings)


def create(world, *, user=None, name="vm1", flavor_name="c1.small", image_name="cirros-0.6"):
    return server_create(
        actor=user or world.member,
        project=world.project,
        name=name,
        flavor=flavor(flavor_name),
        image=image(image_name),
    )


def open_holdings(project, user=None):
    qs = Holding.objects.filter(project=project, end__isnull=True)
    return qs.filter(user=user) if user is not None else qs


def test_spec_example_limit_3_vcpu_8_gib(w, django_capture_on_commit_callbacks):
    """SPEC Compute 3: limit 3 vCPU / 8 GiB, holding 2 / 4: a 2/4 VM is refused, a 1/4 VM is
    created (and both run in the cloud)."""
    set_limit(w, w.member, (3, 8, 100))
    with django_capture_on_commit_callbacks(execute=True):
        held = create(w, name="held", flavor_name="c2.medium")  # 2 vCPU, 4 GiB, 20 GiB
    held.refresh_from_db()
    assert held.status == "active"
    assert member_room(project=w.project, user=w.member)["held"] == {
        "vcpus": 2,
        "ram_gib": 4,
        "disk_gib": 20,
    }

    with pytest.raises(Conflict) as refused:
        create(w, name="second", flavor_name="c2.medium")
    assert refused.value.code == "over_member_limit"
    assert refused.value.status == 409
    assert refused.value.detail == (
        "Your limit in this project would be exceeded (vCPU: 2 held + 2 asked > 3)"
    )
    assert refused.value.fields == {"vcpus": ["2 held + 2 asked > 3"]}
    assert Server.objects.filter(project=w.project).count() == 1

    with django_capture_on_commit_callbacks(execute=True):
        second = create(w, name="second", flavor_name="c1.small")  # 1 vCPU, 4 GiB, 20 GiB
    second.refresh_from_db()
    assert second.status == "active"
    assert (second.vcpus, second.ram_gib, second.disk_gib) == (1, 4, 20)
    room = member_room(project=w.project, user=w.member)
    assert room["held"] == {"vcpus": 3, "ram_gib": 8, "disk_gib": 40}
    assert room["remaining"] == {"vcpus": 0, "ram_gib": 0, "disk_gib": 60}
    assert not flavor_fits(flavor("m1.tiny"), room)


def test_the_holding_is_written_with_the_server(w):
    server = create(w, name="tiny", flavor_name="m1.tiny")  # 512 MiB holds 1 GiB
    assert server.status == "building"
    assert (server.vcpus, server.ram_gib, server.disk_gib) == (1, 1, 1)
    holding = server.holding
    assert holding.end is None
    assert holding.server_ref == str(server.pk)
    assert (holding.project, holding.user) == (w.project, w.member)
    assert holding.membership == Membership.objects.get(project=w.project, user=w.member)
    assert (holding.vcpus, holding.ram_gib, holding.disk_gib) == (1, 1, 1)
    assert holding.start == server.created_at
    assert server.membership == holding.membership


def test_a_member_without_a_limit_is_told_a_teacher_must_set_one(w):
    with pytest.raises(Conflict) as refused:
        create(w, user=w.project_assistant)
    assert refused.value.code == "no_limit"
    assert "must set your limit" in refused.value.detail
    assert not Server.objects.exists() and not Holding.objects.exists()


def test_a_zero_limit_refuses_everything(w):
    set_limit(w, w.project_assistant, (0, 0, 10))
    with pytest.raises(Conflict) as refused:
        create(w, user=w.project_assistant, flavor_name="m1.tiny")
    assert refused.value.code == "over_member_limit"
    assert refused.value.fields == {
        "vcpus": ["0 held + 1 asked > 0"],
        "ram_gib": ["0 held + 1 asked > 0"],
    }


def test_the_project_allocation_bounds_the_sum_of_members(w):
    """Member limits are caps that may add up to more than the project allocation; what the
    project's VMs hold must stay within it."""
    allocation_set(
        actor=w.domain_admin, target=target_of(project=w.project), vcpus=3, ram_gib=12, disk_gib=60
    )
    other = UserFactory(home_domain=w.domain, username="second_member")
    membership_add(actor=w.project_admin, project=w.project, user=other)
    set_limit(w, other, (4, 16, 200))
    create(w, name="a", flavor_name="c2.medium")  # member: 2/4/20
    with pytest.raises(Conflict) as refused:
        create(w, user=other, name="b", flavor_name="c2.medium")
    assert refused.value.code == "over_project_allocation"
    assert refused.value.detail == (
        "The project's allocation would be exceeded (vCPU: 2 held + 2 asked > 3)"
    )
    server = create(w, user=other, name="b", flavor_name="c1.small")  # 1/4/20 fits exactly
    assert server.status == "building"
    room = member_room(project=w.project, user=other)
    assert room["project_remaining"] == {"vcpus": 0, "ram_gib": 4, "disk_gib": 20}
    assert room["remaining"] == {"vcpus": 0, "ram_gib": 4, "disk_gib": 20}


def test_a_project_without_allocation_holds_nothing(w):
    allocation_set(
        actor=w.domain_admin, target=target_of(project=w.project), vcpus=0, ram_gib=0, disk_gib=0
    )
    with pytest.raises(Conflict) as refused:
        create(w, flavor_name="m1.tiny")
    assert refused.value.code == "over_project_allocation"
    assert "vCPU: 0 held + 1 asked > 0" in refused.value.detail


def test_limits_are_not_lowered_below_what_is_held(w):
    create(w, flavor_name="c2.medium")
    with pytest.raises(Conflict) as refused:
        set_limit(w, w.member, (1, 16, 200))
    assert refused.value.code == "below_held"


def test_deleting_a_server_that_never_reached_the_cloud_frees_its_room_at_once(w):
    server = create(w, flavor_name="c2.medium")  # the build task never ran
    server = server_delete(actor=w.member, server=server)
    assert server.status == "deleted" and server.deleted_at is not None
    holding = Holding.objects.get(pk=server.holding_id)
    assert holding.end == holding.start  # held for zero seconds
    assert member_room(project=w.project, user=w.member)["held"] == {
        "vcpus": 0,
        "ram_gib": 0,
        "disk_gib": 0,
    }


# -- Who may create, and when ------------------------------------------------------------


def test_only_members_create(w):
    with pytest.raises(PermissionDenied):
        create(w, user=w.outsider)
    with pytest.raises(PermissionDenied):
        create(w, user=w.other_admin)
    with pytest.raises(ServiceError) as refused:
        create(w, user=w.platform)  # platform staff pass the permission, but hold no limit
    assert (refused.value.code, refused.value.status) == ("not_a_member", 403)
    with pytest.raises(PermissionDenied):
        create(w, user=w.domain_admin)  # domain staff are not members of the project
    assert not Server.objects.exists()


def test_refused_while_the_project_is_locked(w):
    tenant_lock(actor=w.domain_admin, project=w.project, reason="unpaid")
    with pytest.raises(Conflict) as refused:
        create(w)
    assert refused.value.code == "tenant_locked"
    assert "Networks 101 is locked" in refused.value.detail
    assert not Holding.objects.exists()


def test_refused_while_the_domain_is_locked(w):
    tenant_lock(actor=w.platform, domain=w.domain, reason="unpaid")
    with pytest.raises(Conflict) as refused:
        create(w)
    assert refused.value.code == "tenant_locked"
    assert "North School is locked" in refused.value.detail


def test_refused_while_the_member_is_locked(w):
    # A budget lock (billing.enforcement sets it when the budget is used up).
    Membership.objects.filter(project=w.project, user=w.member).update(locked=True)
    with pytest.raises(Conflict) as refused:
        create(w)
    assert refused.value.code == "member_locked"
    # Other members are not affected.
    set_limit(w, w.project_admin, (1, 4, 20))
    assert create(w, user=w.project_admin, flavor_name="m1.tiny").status == "building"


def test_refused_once_the_course_has_ended(w):
    with pinned():  # "today" stays today: at midnight the course would end under the test
        today = timezone.localdate()
        end = today + timedelta(days=1)
        project_update(actor=w.project_admin, project=w.project, end_date=end)
        assert create(w, name="before").status == "building"
        project_update(actor=w.project_admin, project=w.project, end_date=today)
        with pytest.raises(Conflict) as refused:
            create(w, name="after")
    assert refused.value.code == "course_ended"


# -- What may be created ------------------------------------------------------------------


def test_flavors_and_images_offered_per_domain_and_project(w):
    small = flavor("c1.small")
    small.domains.add(w.other_domain)  # only for the other school
    with pytest.raises(ServiceError) as refused:
        create(w)
    assert (refused.value.code, refused.value.status) == ("flavor_not_allowed", 400)
    small.projects.add(w.project)  # … and this project
    assert create(w, name="ok1").status == "building"

    cirros = image()
    cirros.projects.add(w.other_project)
    with pytest.raises(ServiceError) as refused:
        create(w, name="ok2")
    assert refused.value.code == "image_not_allowed"
    cirros.domains.add(w.domain)
    assert create(w, name="ok2").status == "building"

    cirros.enabled = False
    cirros.save()
    with pytest.raises(ServiceError) as refused:
        create(w, name="ok3")
    assert refused.value.code == "image_not_allowed"
    tiny = flavor("m1.tiny")
    tiny.removed = True  # gone from the cloud
    tiny.save()
    with pytest.raises(ServiceError) as refused:
        create(w, name="ok3", flavor_name="m1.tiny", image_name="debian-12")
    assert refused.value.code == "flavor_not_allowed"


def test_the_flavor_must_fit_the_image(w):
    with pytest.raises(ServiceError) as refused:
        create(w, flavor_name="m1.tiny", image_name="ubuntu-24.04")  # 1 GiB disk < 10
    assert refused.value.code == "flavor_too_small"


@pytest.mark.parametrize(
    "name", ["", "   ", "has space", "x" * 65, "semi;colon", "slash/name", "<b>", "emoji-🙂"]
)
def test_bad_names_are_refused(w, name):
    with pytest.raises(ServiceError) as refused:
        create(w, name=name)
    assert refused.value.code == "invalid_name"
    assert "name" in refused.value.fields


@pytest.mark.parametrize("name", ["实验一", "lab-1.node_a", "x" * 64, "Ubuntu.2024", "组3-服务器"])
def test_good_names_are_kept(w, name):
    assert create(w, name=f" {name} ").name == name


def test_names_are_unique_among_the_owners_live_servers(w):
    first = create(w, name="web")
    with pytest.raises(Conflict) as refused:
        create(w, name="web")
    assert refused.value.code == "name_taken"
    set_limit(w, w.project_admin, (1, 4, 20))
    assert create(w, user=w.project_admin, name="web").name == "web"  # another owner
    server_delete(actor=w.member, server=first)
    assert create(w, name="web").name == "web"  # the old one is deleted
