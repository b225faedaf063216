"""The rows of ORCA's lookup tables. Idempotent, since an adopted database
has them already: a missing row is added, a row that says something else
stops the migration (it would change the meaning of stored statuses)."""

from django.db import migrations

LOOKUPS = {
    "RecoveryStatus": {1: "pending", 2: "staged", 3: "error", 4: "success"},
    "StorageClass": {1: "GLACIER", 2: "DEEP_ARCHIVE"},
    "ReconcileStatus": {
        1: "getting S3 list",
        2: "staged",
        3: "generating reports",
        4: "error",
        5: "success",
    },
}


def add_lookup_rows(apps, schema_editor):
    alias = schema_editor.connection.alias
    for model_name, rows in LOOKUPS.items():
        model = apps.get_model("orca", model_name)
        existing = dict(model.objects.using(alias).values_list("id", "value"))
        wrong = {i: v for i, v in existing.items() if i in rows and rows[i] != v}
        if wrong:
            raise RuntimeError(
                f"{model._meta.db_table} has rows that differ from ORCA's: "
                + ", ".join(f"{i}={v!r} (ORCA: {rows[i]!r})" for i, v in sorted(wrong.items()))
            )
        model.objects.using(alias).bulk_create(
            [model(id=i, value=v) for i, v in rows.items() if i not in existing]
        )


class Migration(migrations.Migration):
    dependencies = [
        ("orca", "0001_initial"),
    ]

    operations = [
        # Reversing keeps the rows: stored jobs and files refer to them.
        migrations.RunPython(add_lookup_rows, migrations.RunPython.noop),
    ]
