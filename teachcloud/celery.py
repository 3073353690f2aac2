"""The Celery application. Every periodic schedule of TeachCloud is declared here, in one place."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "teachcloud.settings.local")

app = Celery("teachcloud")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

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
}
