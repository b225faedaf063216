from django.apps import AppConfig


class OrcaDbAppConfig(AppConfig):
    name = "orca_db_app"
    verbose_name = "ORCA database"
    default_auto_field = "django.db.models.BigAutoField"
