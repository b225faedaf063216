from django.apps import AppConfig


class OrcaDbAppConfig(AppConfig):
    name = "orca_db_app"
    verbose_name = "ORCA database"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registration happens on import: system checks (checks.py) and the
        # receiver that stores retry events (receivers.py).
        from . import checks, receivers  # noqa: F401
