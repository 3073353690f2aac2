from celery import shared_task

from accounts.services import roster_import_run


@shared_task(name="accounts.tasks.run_roster_import", acks_late=True)
def run_roster_import(roster_import_id: int) -> None:
    roster_import_run(roster_import_id=roster_import_id)


@shared_task(name="accounts.tasks.resume_roster_imports")
def resume_roster_imports() -> list[int]:
    from accounts.services import roster_imports_resume

    return roster_imports_resume()
