"""Concurrent membership changes in one project queue on the project row and never deadlock
(schemathesis once found a deadlock between two DELETEs that locked joined rows)."""

import threading

import pytest
from django.db import connection

from teachcloud.testing.factories import UserFactory, make_world
from tenancy.models import Membership
from tenancy.services import membership_add, membership_remove, membership_update

pytestmark = pytest.mark.django_db(transaction=True)


def test_parallel_removals_and_role_changes_in_one_project():
    world = make_world()
    members = []
    for n in range(12):
        user = UserFactory(home_domain=world.domain, username=f"para{n}")
        members.append(membership_add(actor=world.platform, project=world.project, user=user))
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(batch):
        try:
            barrier.wait(timeout=10)
            for index, membership in enumerate(batch):
                if index % 2:
                    membership_update(
                        actor=world.domain_admin, membership=membership, role="assistant"
                    )
                membership_remove(actor=world.domain_admin, membership=membership)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(members[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert not Membership.objects.filter(pk__in=[m.pk for m in members]).exists()
