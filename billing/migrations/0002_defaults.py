"""The platform wallet, the default price plan (SPEC Prices 1) and an empty capacity row."""

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import migrations

DEFAULT_PRICES = {
    # Hourly rates are ours (the SPEC names only the fees); platform staff change them in the
    # admin with a new, future version.
    "vcpu_hour": Decimal("0.0500"),
    "ram_gib_hour": Decimal("0.0200"),
    "disk_gib_hour": Decimal("0.0005"),
    "domain_fee": Decimal("100.0000"),
    "project_fee": Decimal("10.0000"),
    "user_fee": Decimal("1.0000"),
}


def forwards(apps, schema_editor):
    Wallet = apps.get_model("billing", "Wallet")
    PriceVersion = apps.get_model("billing", "PriceVersion")
    PlatformCapacity = apps.get_model("billing", "PlatformCapacity")
    Wallet.objects.get_or_create(kind="platform")
    start = datetime(2020, 1, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
    if not PriceVersion.objects.exists():
        PriceVersion.objects.create(effective_from=start, **DEFAULT_PRICES)
    PlatformCapacity.objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
