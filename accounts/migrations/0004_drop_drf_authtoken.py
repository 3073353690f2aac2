"""API tokens moved from DRF's authtoken to django-rest-knox (hashed, expiring, revocable).

`rest_framework.authtoken` is no longer installed, and its table held every old key in clear
text, valid for ever: it is dropped, and the app's migration records are forgotten (so that
installing the app again would create a fresh, empty table). Nothing reads the old keys, so
there is nothing to move: users get a new token from `POST /api/v1/auth/token/`. The stale
content type and permissions are left to Django's `manage.py remove_stale_contenttypes`.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_finance_staff_group"),
    ]

    operations = [
        migrations.RunSQL(
            [
                "DROP TABLE IF EXISTS authtoken_token",
                "DELETE FROM django_migrations WHERE app = 'authtoken'",
            ],
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
