"""Local demo: the demo's own PostgreSQL cluster (bin/demo-db), console email, Celery over kombu's
filesystem transport (no broker to install)."""

from pathlib import Path

from .base import *  # noqa: F403
from .base import VAR_DIR, env

VAR_DIR.mkdir(parents=True, exist_ok=True)


def _demo_database_url() -> str:
    """DATABASE_URL, else the demo cluster's address that `bin/demo-db start` wrote (with its
    generated password). Without either, the demo cluster's port without a password: commands
    that need no database still run, the others fail to connect until bin/demo-db start."""
    url = env("DATABASE_URL", default="")
    if url:
        return url
    written = VAR_DIR / "database_url"
    if written.exists():
        return written.read_text().strip()
    port = env.int("TEACHCLOUD_DEMO_PG_PORT", default=55432)
    return f"postgres://teachcloud@127.0.0.1:{port}/teachcloud"


DATABASES = {"default": env.db_url_config(_demo_database_url())}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="local-demo-only-not-secret")

# A broker made of three folders: worker and beat need no server installed by hand.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "data_folder_in": str(VAR_DIR / "celery" / "queue"),
    "data_folder_out": str(VAR_DIR / "celery" / "queue"),
    "data_folder_processed": str(VAR_DIR / "celery" / "processed"),
    "control_folder": str(VAR_DIR / "celery" / "control"),
    "store_processed": False,
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    # Every process that may send a task (manage.py seed_demo, the portal) finds the folders.
    for _key in ("data_folder_in", "data_folder_processed", "control_folder"):
        Path(CELERY_BROKER_TRANSPORT_OPTIONS[_key]).mkdir(parents=True, exist_ok=True)
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
# The demo's admins should not be stopped at the door by an MFA enrolment unless asked for.
TEACHCLOUD_MFA_ENFORCED = env.bool("TEACHCLOUD_MFA_ENFORCED", default=False)
ACCOUNT_EMAIL_VERIFICATION = env("ACCOUNT_EMAIL_VERIFICATION", default="optional")
# Static files straight from the finders (no manifest), whatever DJANGO_DEBUG says.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# The development cloud that bin/demo starts (python -m devcloud on DEVCLOUD_PORT), unless
# TEACHCLOUD_CLOUD or OS_CLOUD names another cloud.
if not TEACHCLOUD_CLOUD and not env("OS_CLOUD", default=""):  # noqa: F405
    TEACHCLOUD_CLOUD = {
        "auth_type": "password",
        "auth": {
            "auth_url": f"http://127.0.0.1:{env.int('DEVCLOUD_PORT', default=8775)}/identity/v3",
            "username": "admin",
            "password": env("DEVCLOUD_PASSWORD", default="devcloud"),
            "project_name": "admin",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": "RegionOne",
        "identity_api_version": "3",
    }
    TEACHCLOUD_CLOUD_SIMULATED = env.bool("TEACHCLOUD_CLOUD_SIMULATED", default=True)
    # The demo should answer quickly when the development cloud is not running.
    TEACHCLOUD_COMPUTE_TIMEOUT = env.float("TEACHCLOUD_COMPUTE_TIMEOUT", default=10.0)
# The demo may post webhooks to a receiver on this machine.
TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE = env.bool("TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE", default=True)
