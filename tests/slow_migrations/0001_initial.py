"""testapp's first migration with a slow statement in the middle, for the
test that interrupts a migration (tests/test_aurora_migrate.py). The sleep
reads its length from a table the test controls."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Note",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("text", models.TextField()),
                ("created", models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.RunSQL(
            "SELECT pg_sleep((SELECT seconds FROM orca_slow_control)) /* orca-slow-migration */",
            migrations.RunSQL.noop,
        ),
        migrations.CreateModel(
            name="Tag",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("name", models.TextField()),
                (
                    "note",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, to="testapp.note"
                    ),
                ),
            ],
        ),
    ]
