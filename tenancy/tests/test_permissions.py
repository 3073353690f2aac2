import pytest
from django.core.exceptions import PermissionDenied

from teachcloud.testing.factories import UserFactory
from tenancy import selectors
from tenancy.models import Membership
from tenancy.permissions import Action, can, require


def test_platform_staff_may_do_everything(world):
    assert can(world.platform, Action.DOMAIN_CREATE)
    assert can(world.platform, Action.PROJECT_APPOINT, world.other_project)


@pytest.mark.parametrize(
    ("who", "action", "allowed"),
    [
        ("domain_admin", Action.DOMAIN_APPOINT, True),
        ("domain_assistant", Action.DOMAIN_APPOINT, False),
        ("domain_assistant", Action.DOMAIN_MANAGE, True),
        ("domain_assistant", Action.PROJECT_CREATE, True),
        ("project_admin", Action.DOMAIN_MANAGE, False),
        ("member", Action.DOMAIN_VIEW, True),
        ("other_admin", Action.DOMAIN_VIEW, False),
        ("other_admin", Action.DOMAIN_MANAGE, False),
        ("domain_admin", Action.DOMAIN_CREATE, False),
    ],
)
def test_domain_actions(world, who, action, allowed):
    assert can(getattr(world, who), action, world.domain) is allowed


@pytest.mark.parametrize(
    ("who", "action", "allowed"),
    [
        ("domain_admin", Action.PROJECT_APPOINT, True),
        ("domain_assistant", Action.PROJECT_APPOINT, False),
        ("domain_assistant", Action.PROJECT_MANAGE, True),
        ("project_admin", Action.PROJECT_APPOINT, True),
        ("project_admin", Action.PROJECT_DELETE, False),
        ("domain_admin", Action.PROJECT_DELETE, True),
        ("project_assistant", Action.PROJECT_MANAGE, True),
        ("project_assistant", Action.PROJECT_APPOINT, False),
        ("member", Action.PROJECT_VIEW, True),
        ("member", Action.PROJECT_MANAGE, False),
        ("outsider", Action.PROJECT_VIEW, False),
        ("other_admin", Action.PROJECT_VIEW, False),
    ],
)
def test_project_actions(world, who, action, allowed):
    assert can(getattr(world, who), action, world.project) is allowed


def test_assistant_may_manage_members_but_not_touch_admins(world):
    member = Membership.objects.get(user=world.member)
    admin = Membership.objects.get(user=world.project_admin)
    assert can(world.project_assistant, Action.MEMBERSHIP_REMOVE, member)
    assert not can(world.project_assistant, Action.MEMBERSHIP_REMOVE, admin)
    with pytest.raises(PermissionDenied):
        require(world.project_assistant, Action.MEMBERSHIP_CHANGE, admin)


def test_expired_assistant_grant_gives_nothing(world):
    from datetime import timedelta

    from django.utils import timezone

    Membership.objects.filter(user=world.project_assistant).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )
    fresh = type(world.project_assistant).objects.get(pk=world.project_assistant.pk)
    assert not can(fresh, Action.PROJECT_MANAGE, world.project)


def test_inactive_user_may_do_nothing(world):
    world.domain_admin.is_active = False
    assert not can(world.domain_admin, Action.DOMAIN_VIEW, world.domain)


def test_selectors_hide_foreign_objects(world):
    assert set(selectors.domains_visible_to(world.other_admin)) == {world.other_domain}
    assert set(selectors.projects_visible_to(world.domain_assistant)) == {world.project}
    assert set(selectors.projects_visible_to(world.member)) == {world.project}
    assert list(selectors.projects_visible_to(world.outsider)) == []
    assert set(selectors.users_visible_to(world.member)) == {world.member}
    visible = set(selectors.users_visible_to(world.project_admin))
    assert world.outsider in visible  # same domain: may be added to the project
    assert world.other_admin not in visible
    stranger = UserFactory(home_domain=world.other_domain)
    assert stranger not in set(selectors.users_visible_to(world.domain_admin))
    assert set(selectors.memberships_visible_to(world.member)) == set(
        Membership.objects.filter(user=world.member)
    )
