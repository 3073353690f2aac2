"""Fixtures for every test under the repository root. The database is a real PostgreSQL
(see teachcloud/settings/test.py: a throw-away cluster when DATABASE_URL is unset)."""

import pytest

from teachcloud.testing.factories import World, make_world


@pytest.fixture
def world(db) -> World:
    return make_world()


@pytest.fixture
def smtp(settings):
    """A real SMTP server on loopback; Django's mail goes to it over SMTP."""
    from teachcloud.testing.smtp import smtp_server

    with smtp_server() as mailbox:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = mailbox.host
        settings.EMAIL_PORT = mailbox.port
        settings.EMAIL_USE_TLS = False
        settings.EMAIL_HOST_USER = ""
        settings.EMAIL_HOST_PASSWORD = ""
        yield mailbox


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Rate-limit counters and used TOTP codes live in the cache: no test sees another's."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()
