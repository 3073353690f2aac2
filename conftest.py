"""Fixtures for every test under the repository root. The database is a real PostgreSQL
(see teachcloud/settings/test.py: a throw-away cluster when DATABASE_URL is unset)."""

import pytest

from teachcloud.testing.factories import World, make_world


@pytest.fixture
def world(db) -> World:
    return make_world()
