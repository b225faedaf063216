from django.apps import AppConfig


class OrcaDbAppConfig(AppConfig):
    name = "orca_db_app"
    verbose_name = "ORCA database"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registration happens on import: system checks (checks*.py, one
        # module per feature) and the receiver that stores retry events
        # (receivers.py).
        from orca_db.signals import record_in_opentelemetry, retry_event

        from . import (  # noqa: F401
            checks,
            checks_aws,
            checks_data_api,
            checks_observability,
            checks_pool,
            receivers,
        )

        # OpenTelemetry: the receiver reads ORCA_DB_OPENTELEMETRY at each
        # event and imports nothing before it is on (docs/observability.md).
        retry_event.connect(record_in_opentelemetry, dispatch_uid="orca_db.record_in_opentelemetry")
