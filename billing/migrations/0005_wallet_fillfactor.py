"""Leave free space in wallet pages so the hourly balance update is a HOT update on PostgreSQL
(the balance column is not indexed, so no index is rewritten)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_leaner_ledger_indexes")]
    operations = [
        migrations.RunSQL(
            "ALTER TABLE billing_wallet SET (fillfactor = 50)",
            "ALTER TABLE billing_wallet RESET (fillfactor)",
        )
    ]
