"""Celery task of reports: the monthly statements (beat: 00:30 on the 1st, Asia/Shanghai)."""

from celery import shared_task

from reports.statements import statements_issue


@shared_task(name="reports.tasks.issue_statements")
def issue_statements() -> int:
    """Issue last month's statements (idempotent: a second run issues nothing)."""
    return statements_issue()
