"""Drop single-column foreign-key indexes that a composite index or constraint leading with the
same column already provides: every gift wrote each of them for nothing.

Only the indexes are dropped. Django's own AlterField would also drop and re-add the foreign
key, re-checking the whole table while gifts wait for the lock.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("gifts", "0002_drop_covered_fk_indexes"),
        ("rankings", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="rankingentry",
                    name="room",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="ranking_entries",
                        to="gifts.room",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    'DROP INDEX IF EXISTS "rankings_rankingentry_room_id_62e3e69c"',
                    reverse_sql='CREATE INDEX "rankings_rankingentry_room_id_62e3e69c" ON "rankings_rankingentry" ("room_id")',
                ),
            ],
        ),
    ]
