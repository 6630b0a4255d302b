"""Drop single-column foreign-key indexes that a composite index or constraint leading with the
same column already provides: every gift wrote each of them for nothing.

Only the indexes are dropped. Django's own AlterField would also drop and re-add the foreign
key, re-checking the whole table while gifts wait for the lock.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("wallets", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="entry",
                    name="account",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="entries",
                        to="wallets.account",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "wallets_entry_account_id_8b96ee76"',
                    reverse_sql='CREATE INDEX "wallets_entry_account_id_8b96ee76" ON "wallets_entry" ("account_id")',
                ),
            ],
        ),
    ]
