from django.apps import AppConfig


class OrcaConfig(AppConfig):
    name = "orca_db_app.orca"
    label = "orca"
    verbose_name = "ORCA storage"
    default_auto_field = "django.db.models.BigAutoField"
