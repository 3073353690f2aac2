"""The zh-Hans catalogue is complete and its compiled .mo is the one committed."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

CATALOGUE = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES"


def msgfmt() -> str:
    found = shutil.which("msgfmt")
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("msgfmt (Debian package gettext) is required")
        pytest.skip("msgfmt (Debian package gettext) is not installed")
    return found


def test_catalogue_is_complete_and_compiled(tmp_path):
    compiled = tmp_path / "django.mo"
    result = subprocess.run(
        [msgfmt(), "--check", "--statistics", "-o", str(compiled), str(CATALOGUE / "django.po")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    stats = result.stderr
    assert "untranslated" not in stats and "fuzzy" not in stats, stats
    assert compiled.read_bytes() == (CATALOGUE / "django.mo").read_bytes(), (
        "django.mo is stale: run `manage.py compilemessages`"
    )


def test_default_language_is_simplified_chinese():
    from teachcloud.settings import base

    assert base.LANGUAGE_CODE == "zh-hans"
    assert base.TIME_ZONE == "Asia/Shanghai"


@pytest.mark.django_db
def test_portal_speaks_chinese_by_default_and_english_on_request(client, settings):
    settings.LANGUAGE_CODE = "zh-hans"
    page = client.get(reverse("account_login"))
    assert page.status_code == 200
    assert "登录" in page.content.decode()
    english = client.get(reverse("account_login"), HTTP_ACCEPT_LANGUAGE="en")
    assert "Sign In" in english.content.decode() or "Sign in" in english.content.decode()
