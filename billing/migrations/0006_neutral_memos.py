"""Make the stored memos of system-generated transactions language-neutral (`billing.memos`).

Until now a recharge, adjustment, reversal, hourly resource charge or monthly management fee was
written with its memo translated into the language of the request (or of the worker) that posted
it: "Recharge" or "充值", "Resource charge 2026-01-05 09:00" or "资源扣费 2026-01-05 09:00"…
Such a memo is now stored empty and rendered in the reader's language from `kind`,
`period_start` and `reverses_id`. This migration empties the old generated memos, in English
or Chinese, and nothing else: a memo that is not one of those forms was typed by a person (or is
unknown) and stays as it is.

The ledger is append-only: no amount, entry, kind, period or reference is touched. The memo is
descriptive text, and rewriting its stored form is allowed here, in this migration only.
"""

from django.db import migrations
from django.db.models import CharField, Q, Value
from django.db.models.functions import Cast, Concat

# The generated forms, English msgid and zh-Hans msgstr (locale/zh_Hans/LC_MESSAGES/django.po).
RECHARGE = ("Recharge", "充值")
ADJUSTMENT = ("Adjustment", "调整")
REVERSAL_PREFIXES = ("Reversal of #", "冲正 #")
CHARGE_PATTERN = r"^(Resource charge|资源扣费) [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:00$"
FEE_PATTERN = r"^(Management fee|管理费) [0-9]{4}-[0-9]{2}$"


def neutralise_memos(apps, schema_editor):
    """Empty the memos that are a generated form (set-based: one UPDATE per kind)."""
    Transaction = apps.get_model("billing", "Transaction")
    rows = Transaction.objects.exclude(memo="")
    reversal = Q()
    for prefix in REVERSAL_PREFIXES:
        reversal |= Q(memo=Concat(Value(prefix), Cast("reverses_id", CharField())))
    generated = (
        Q(reverses__isnull=True, kind="recharge", memo__in=RECHARGE)
        | Q(reverses__isnull=True, kind="adjustment", memo__in=ADJUSTMENT)
        | (Q(reverses__isnull=False) & reversal)
        | Q(kind="resource_charge", memo__regex=CHARGE_PATTERN)
        | Q(kind="management_fee", memo__regex=FEE_PATTERN)
    )
    return rows.filter(generated).update(memo="")


class Migration(migrations.Migration):
    dependencies = [("billing", "0005_wallet_fillfactor")]
    # Backwards: nothing to restore, the renderer shows empty memos in any language.
    operations = [migrations.RunPython(neutralise_memos, migrations.RunPython.noop)]
