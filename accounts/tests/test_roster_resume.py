from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import ImportStatus, RosterImport
from accounts.services import roster_import_create, roster_imports_resume

ROWS = [{"real_name": "甲", "id_number": "R1", "email": "r1@example.edu"}]


@pytest.fixture
def roster(world):
    return roster_import_create(
        actor=world.project_admin,
        rows=ROWS,
        filename="r.csv",
        domain=world.domain,
        project=world.project,
    )


def test_an_import_nobody_works_on_is_run_again(roster, world):
    later = timezone.now() + timedelta(minutes=6)
    # Queued 6 minutes ago and never picked up: resumed (eager Celery runs it at once).
    assert roster_imports_resume(now=later) == [roster.pk]
    roster.refresh_from_db()
    assert roster.status == ImportStatus.DONE
    assert roster.created == 1


def test_a_running_import_that_still_moves_is_left_alone(roster):
    now = timezone.now()
    RosterImport.objects.filter(pk=roster.pk).update(status=ImportStatus.RUNNING, updated_at=now)
    assert roster_imports_resume(now=now + timedelta(minutes=3)) == []
    # Silent for 11 minutes: its worker died; the import is claimed again and finished.
    assert roster_imports_resume(now=now + timedelta(minutes=11)) == [roster.pk]
    roster.refresh_from_db()
    assert roster.status == ImportStatus.DONE
