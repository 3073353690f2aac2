"""Fixtures for every test under the repository root. The database is a real PostgreSQL
(see teachcloud/settings/test.py: a throw-away cluster when DATABASE_URL is unset)."""

import pytest

from billing import services
from teachcloud.testing.factories import World, make_world


@pytest.fixture
def world(db) -> World:
    return make_world()


@pytest.fixture
def w(world: World) -> World:
    """The world with its wallets open (the factories bypass the tenancy services that open
    them) and a platform capacity to allocate from. Modules with their own `w` override it."""
    services.platform_capacity_set(
        actor=world.platform, vcpus=1000, ram_gib=4000, disk_gib=100_000, overcommit="1"
    )
    for domain in (world.domain, world.other_domain):
        services.wallet_open(domain=domain)
    for project in (world.project, world.other_project):
        services.wallet_open(project=project)
    return world


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


@pytest.fixture(autouse=True)
def _seeded_rows(request):
    """The rows data migrations seed, present in every database test: a transactional test
    (`django_db(transaction=True)`) ends with a flush that removes them for every later test."""
    if "_django_db_helper" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("_django_db_helper")
    from importlib import import_module

    from django.apps import apps

    # The platform wallet, the default price plan and the capacity row.
    import_module("billing.migrations.0002_defaults").forwards(apps, None)
    yield


@pytest.fixture(autouse=True)
def _default_language():
    """A request in Chinese leaves zh-hans active in the thread; no test inherits it."""
    from django.utils import translation

    yield
    translation.deactivate()


# -- The development cloud (teachcloud/testing/devcloud.py) ------------------------------------


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "needs_devcloud: uses the development cloud's controls (fault injection, changes behind "
        "the portal's back); deselected when the suite runs against a real cloud (OS_CLOUD)",
    )


def pytest_collection_modifyitems(config, items):
    """Against a real cloud, tests that need the development cloud's controls are deselected
    (they run in the normal suite), so that run reports no skipped tests."""
    from teachcloud.testing.devcloud import real_cloud

    if not real_cloud():
        return
    keep, drop = [], []
    for item in items:
        needs = item.get_closest_marker("needs_devcloud") or "devcloud" in getattr(
            item, "fixturenames", ()
        )
        (drop if needs else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session", autouse=True)
def _cloud_session():
    """Every test gets a working compute API: a devcloud for the whole session (or OS_CLOUD)."""
    from teachcloud.testing.devcloud import start_session

    session = start_session()
    yield session
    session.close()


@pytest.fixture(autouse=True)
def _cloud_fresh(request, _cloud_session):
    """Each test starts on a fresh development cloud (catalogue and admin only, no faults)."""
    if _cloud_session.handle is None:
        if request.node.get_closest_marker("needs_devcloud"):
            pytest.skip("needs the development cloud (running against a real cloud)")
        yield
        return
    _cloud_session.handle.reset()
    yield


@pytest.fixture
def devcloud(_cloud_session):
    """The development cloud's controls: reset(), fail(method, path_regex, status=500|"timeout",
    delay=…, times=N, apply=…), clear_faults(), servers(), create_server_behind_back(…),
    delete_server_behind_back(id), set_status(id, "SHUTOFF"), requests(…), expire_tokens().
    Reset again after the test."""
    if _cloud_session.handle is None:
        pytest.skip("needs the development cloud (running against a real cloud)")
    yield _cloud_session.handle
    _cloud_session.handle.reset()
