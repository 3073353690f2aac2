"""The Celery application. Every periodic schedule of TeachCloud is declared here, in one place."""

import os

from celery import Celery
from celery.schedules import crontab

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teachcloud.settings.local")

app = Celery("teachcloud")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(["billing"], related_name="tasks_notify")
app.autodiscover_tasks(["compute"], related_name="tasks_jobs")

# Beat schedule (synchronised into django-celery-beat's tables by the DatabaseScheduler).
app.conf.beat_schedule = {
    "tenancy-expire-grants": {
        "task": "tenancy.tasks.expire_grants",
        "schedule": 15 * 60,
    },
    "accounts-resume-roster-imports": {
        "task": "accounts.tasks.resume_roster_imports",
        "schedule": 5 * 60,
    },
    "billing-flush-digests": {
        "task": "billing.tasks_notify.flush_digests",
        "schedule": 5 * 60,
    },
    # Billing: one task runs whatever is due (charges, rating, fees, locks, alerts, purges).
    "billing-hourly": {
        "task": "billing.tasks.run_billing",
        "schedule": crontab(minute=5),
    },
    "billing-monthly-fees": {
        "task": "billing.tasks.run_billing",
        "schedule": crontab(minute=5, hour=0, day_of_month=1),
    },
    # Reports: last month's statements, after the 00:05 billing run has charged its last hour.
    "reports-monthly-statements": {
        "task": "reports.tasks.issue_statements",
        "schedule": crontab(minute=30, hour=0, day_of_month=1),
    },
    # Reports: background export files are kept a week.
    "reports-expire-exports": {
        "task": "reports.tasks.expire_exports",
        "schedule": crontab(minute=40, hour=3),
    },
    "billing-daily": {
        "task": "billing.tasks.run_billing",
        "schedule": crontab(minute=0, hour=3),
    },
    # Compute: billing's stop/restart/delete requests, reconciliation, catalogue.
    "compute-requests": {
        "task": "compute.tasks_jobs.compute_requests_process",
        "schedule": 60,
    },
    "compute-sync": {
        "task": "compute.tasks_jobs.compute_sync",
        "schedule": 5 * 60,
    },
    "compute-catalogue": {
        "task": "compute.tasks_jobs.catalogue_sync",
        "schedule": crontab(minute=20),
    },
}
