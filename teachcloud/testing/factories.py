"""Test data, built through the services wherever a service owns the rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import factory
from allauth.account.models import EmailAddress

from accounts.models import PlatformRole, User
from accounts.services import token_create
from tenancy.models import Domain, Project
from tenancy.services import domain_role_set, membership_add

PASSWORD = "Correct-Horse-42"


class DomainFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Domain

    name = factory.Sequence(lambda n: f"School {n}")
    code = factory.Sequence(lambda n: f"school{n}")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    domain = factory.SubFactory(DomainFactory)
    name = factory.Sequence(lambda n: f"Course {n}")
    code = factory.Sequence(lambda n: f"course{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    real_name = factory.Sequence(lambda n: f"用户{n}")
    id_number = factory.Sequence(lambda n: f"2026{n:05d}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.edu")
    home_domain = factory.SubFactory(DomainFactory)

    @factory.post_generation
    def password(self, create: bool, extracted: str | None, **kwargs: Any) -> None:
        self.set_password(extracted or PASSWORD)
        if create:
            self.save()
            EmailAddress.objects.create(user=self, email=self.email, primary=True, verified=True)


def api_token(user: User) -> str:
    """A new API token for `user` (made by the service, like `POST /api/v1/auth/token/`): the key
    to send as `Authorization: Token <key>`."""
    return token_create(user=user)[1]


def platform_staff(**kwargs: Any) -> User:
    return UserFactory(
        home_domain=None, id_number="", platform_role=PlatformRole.OPERATOR, is_staff=True, **kwargs
    )


@dataclass
class World:
    """Two domains with a project each, and one user in every role (see the permission matrix)."""

    platform: User
    domain: Domain
    project: Project
    other_domain: Domain
    other_project: Project
    domain_admin: User
    domain_assistant: User
    project_admin: User
    project_assistant: User
    member: User
    other_admin: User  # admin of the other domain
    outsider: User  # a user of the domain with no role and no project
    finance: User  # finance staff: no home domain, no roles; reads money platform-wide


def make_world() -> World:
    platform = platform_staff(username="platform")
    finance = UserFactory(
        username="finance",
        real_name="财务",
        email="finance@example.edu",
        home_domain=None,
        id_number="",
        platform_role=PlatformRole.FINANCE,
        is_staff=True,
    )
    domain = DomainFactory(name="North School", code="north")
    other_domain = DomainFactory(name="South School", code="south")
    project = ProjectFactory(domain=domain, name="Networks 101", code="net101")
    other_project = ProjectFactory(domain=other_domain, name="Databases", code="db201")
    users = {
        name: UserFactory(username=name, home_domain=home)
        for name, home in [
            ("domain_admin", domain),
            ("domain_assistant", domain),
            ("project_admin", domain),
            ("project_assistant", domain),
            ("member", domain),
            ("other_admin", other_domain),
            ("outsider", domain),
        ]
    }
    domain_role_set(actor=platform, domain=domain, user=users["domain_admin"], role="admin")
    domain_role_set(actor=platform, domain=domain, user=users["domain_assistant"], role="assistant")
    domain_role_set(actor=platform, domain=other_domain, user=users["other_admin"], role="admin")
    membership_add(actor=platform, project=project, user=users["project_admin"], role="admin")
    membership_add(
        actor=platform, project=project, user=users["project_assistant"], role="assistant"
    )
    membership_add(actor=platform, project=project, user=users["member"], role="member")
    return World(
        platform=platform,
        domain=domain,
        project=project,
        other_domain=other_domain,
        other_project=other_project,
        finance=finance,
        **users,
    )
