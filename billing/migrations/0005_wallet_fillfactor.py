"""Leave free space in wallet pages so the hourly balance update is a HOT update on PostgreSQL
(the balance column is not indexed, so no index is rewritten)."""

from django.db import migrations


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE billing_wallet SET (fillfactor = 50)")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE billing_wallet RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_leaner_ledger_indexes")]
    operations = [migrations.RunPython(forwards, backwards)]
