"""Drop single-column foreign-key indexes that a composite index or constraint leading with the
same column already provides: every gift wrote each of them for nothing.

Only the indexes are dropped. Django's own AlterField would also drop and re-add the foreign
key, re-checking the whole table while gifts wait for the lock.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("gifts", "0001_initial"),
        ("wallets", "0002_drop_covered_fk_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="giftevent",
                    name="room",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="events",
                        to="gifts.room",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "gifts_giftevent_room_id_747a7677"',
                    reverse_sql='CREATE INDEX "gifts_giftevent_room_id_747a7677" ON "gifts_giftevent" ("room_id")',
                ),
            ],
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="hostgiftcount",
                    name="host",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="gift_counts",
                        to="wallets.profile",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "gifts_hostgiftcount_host_id_44f7b585"',
                    reverse_sql='CREATE INDEX "gifts_hostgiftcount_host_id_44f7b585" ON "gifts_hostgiftcount" ("host_id")',
                ),
            ],
        ),
    ]
