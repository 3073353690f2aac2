"""Celery tasks of reports: the monthly statements (beat: 00:30 on the 1st, Asia/Shanghai) and
the background exports (run on demand; expired daily)."""

from celery import shared_task

from reports.jobs import export_job_run, export_jobs_expire
from reports.statements import statements_issue


@shared_task(name="reports.tasks.issue_statements")
def issue_statements() -> int:
    """Issue last month's statements (idempotent: a second run issues nothing)."""
    return statements_issue()


@shared_task(name="reports.tasks.export_run")
def export_run(job_id: str) -> str | None:
    """Run one background export job (queued by reports.jobs.export_job_create)."""
    job = export_job_run(job_id=job_id)
    return None if job is None else job.status


@shared_task(name="reports.tasks.expire_exports")
def expire_exports() -> int:
    """Delete export files and jobs older than TEACHCLOUD_EXPORT_KEEP_DAYS (beat, daily)."""
    return export_jobs_expire()
