"""Once the rows of ORCA's lookup tables; now ``orca`` migration
``0002_lookup_data`` adds them. Kept (empty) so that databases migrated
before keep a consistent history."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("orca_db_app", "0002_orca_schema"),
    ]

    operations = []
