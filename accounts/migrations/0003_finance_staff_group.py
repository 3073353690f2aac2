"""The "Finance staff" group: the view permissions of the money models, and the finance staff in it.

Idempotent: the group is found or created, its permissions are set to exactly the list below
(permissions are created first: on a fresh database Django creates them only after migrating),
and every finance user with admin access is added. Afterwards `accounts.services` keeps the
membership in step when a platform role changes. Access itself is still decided by
`tenancy.permissions` (the admin's `finance_can_view`); the group makes the grant visible.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Finance staff"
MONEY_MODELS = {
    "billing": [
        "allocation",
        "allocationrequest",
        "chargeline",
        "entry",
        "lockperiod",
        "memberconsumption",
        "platformcapacity",
        "priceversion",
        "rechargerequest",
        "transaction",
        "wallet",
    ],
    "reports": ["statement", "statementline"],
}


def finance_group(apps, schema_editor):
    alias = schema_editor.connection.alias
    for label in MONEY_MODELS:
        config = apps.get_app_config(label)
        config.models_module = True  # a migration-state app: let create_permissions see it
        create_permissions(config, verbosity=0, apps=apps, using=alias)
        config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    User = apps.get_model("accounts", "User")
    group, _created = Group.objects.using(alias).get_or_create(name=GROUP)
    codenames = [
        (label, f"view_{model}") for label, models in MONEY_MODELS.items() for model in models
    ]
    permissions = [
        Permission.objects.using(alias).get(content_type__app_label=label, codename=codename)
        for label, codename in codenames
    ]
    group.permissions.set(permissions)
    Membership = User.groups.through
    Membership.objects.using(alias).bulk_create(
        [
            Membership(user_id=user_id, group_id=group.pk)
            for user_id in User.objects.using(alias)
            .filter(platform_role="finance", is_staff=True)
            .values_list("pk", flat=True)
        ],
        ignore_conflicts=True,
    )


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("billing", "0006_neutral_memos"),
        ("reports", "0001_initial"),
    ]
    operations = [migrations.RunPython(finance_group, remove_group)]
