"""What every benchmark does first: a database to fill and Django set up on it."""

from __future__ import annotations

import os
import sys
from urllib.parse import urlparse, urlunparse


def prepare_database(name: str) -> tuple[str, str | None]:
    """(DATABASE_URL to use, admin URL to drop the bench database with, or None). Without
    DATABASE_URL: a private throw-away cluster; with it: a fresh `<db>_bench_<name>` database."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        from teachcloud.testing.pgcluster import ensure_cluster

        return ensure_cluster(), None  # a private cluster, removed at exit
    import psycopg2

    parsed = urlparse(url)
    database = f"{parsed.path.lstrip('/')}_bench_{name}"
    admin = urlunparse(parsed._replace(path="/postgres"))
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{database}"')
        cursor.execute(f'CREATE DATABASE "{database}"')
    conn.close()
    return urlunparse(parsed._replace(path=f"/{database}")), admin


def setup_django(url: str) -> None:
    """Django on the test settings against `url`, migrated."""
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "teachcloud.settings.test"
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def drop_database(url: str, admin: str | None) -> None:
    """Drop the bench database `prepare_database` made (a private cluster goes by itself)."""
    if not admin:
        return
    from django.db import connections

    connections.close_all()
    import psycopg2

    conn = psycopg2.connect(admin)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{urlparse(url).path.lstrip("/")}"')
    conn.close()
