"""Test settings: real PostgreSQL (a throw-away cluster when DATABASE_URL is unset)."""

import os

from .base import *  # noqa: F403
from .base import env

if not os.environ.get("DATABASE_URL"):
    from teachcloud.testing.pgcluster import ensure_cluster

    os.environ["DATABASE_URL"] = ensure_cluster()

DATABASES = {"default": env.db("DATABASE_URL")}
SECRET_KEY = "test-only-not-secret"
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_BROKER_URL = "memory://"
# Tests not about MFA or throttling need no codes; the tests about them switch them on.
TEACHCLOUD_MFA_ENFORCED = False
TEACHCLOUD_THROTTLE_ENABLED = False
ACCOUNT_RATE_LIMITS = False
AXES_ENABLED = False  # per-account sign-in limits: accounts/tests/test_signin_limits.py
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
ALLOWED_HOSTS = ["*"]
# Static files come from the finders in tests; no collected STATIC_ROOT exists.
MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("whitenoise.")]  # noqa: F405
# Tests read English messages; the zh-Hans default of base.py is tested on its own (test_i18n).
LANGUAGE_CODE = "en"
# Compute: the root conftest starts the development cloud and points TEACHCLOUD_CLOUD at it (also
# through the environment, for child processes). Cloud calls fail fast in tests.
TEACHCLOUD_COMPUTE_TIMEOUT = env.float("TEACHCLOUD_COMPUTE_TIMEOUT", default=5.0)
# Tests carry out compute requests themselves (compute_requests_process) where they mean to.
TEACHCLOUD_COMPUTE_REQUESTS_NOW = False
TEACHCLOUD_COMPUTE_RETRIES = env.int("TEACHCLOUD_COMPUTE_RETRIES", default=2)
TEACHCLOUD_COMPUTE_BACKOFF = env.float("TEACHCLOUD_COMPUTE_BACKOFF", default=0.02)
TEACHCLOUD_COMPUTE_BUILD_WAIT = env.float("TEACHCLOUD_COMPUTE_BUILD_WAIT", default=10.0)
TEACHCLOUD_COMPUTE_ACTION_WAIT = env.float("TEACHCLOUD_COMPUTE_ACTION_WAIT", default=10.0)
TEACHCLOUD_COMPUTE_POLL_INTERVAL = env.float("TEACHCLOUD_COMPUTE_POLL_INTERVAL", default=0.05)
# Webhook tests post to a receiver on 127.0.0.1 (the guard is tested with this off).
TEACHCLOUD_WEBHOOK_ALLOW_PRIVATE = True
