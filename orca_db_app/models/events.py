from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.utils import timezone

if TYPE_CHECKING:
    from orca_db import events


class RetryEvent(models.Model):
    """One database operation that met at least one retryable failure (a
    scale event, a pause, a restart), stored after it settled."""

    class Phase(models.TextChoices):
        CONNECT = "connect"
        EXECUTE = "execute"
        TRANSACTION = "transaction"

    class Outcome(models.TextChoices):
        RECOVERED = "recovered"
        EXHAUSTED = "exhausted"
        RAISED = "raised"

    occurred_at = models.DateTimeField(help_text="When the operation started.")
    database = models.CharField(max_length=100, help_text="The database alias.")
    phase = models.CharField(max_length=20, choices=Phase.choices)
    error_type = models.CharField(max_length=100, help_text="The last driver error's class.")
    # NULL: the driver gave no SQLSTATE (a socket closed without a message).
    sqlstate = models.CharField("SQLSTATE", max_length=5, null=True, blank=True)  # noqa: DJ001
    message = models.TextField(blank=True, help_text="Scrubbed of passwords and row values.")
    attempts = models.PositiveIntegerField()
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    elapsed_ms = models.FloatField()
    statement = models.TextField(blank=True, help_text="The SQL, literals replaced by ?.")
    host = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField("process id", null=True, blank=True)
    # NULL: not in a Lambda invocation.
    lambda_request_id = models.CharField(  # noqa: DJ001
        "Lambda request id", max_length=100, null=True, blank=True
    )

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [
            models.Index(fields=["-occurred_at"], name="retryevent_occurred"),
            models.Index(fields=["database", "-occurred_at"], name="retryevent_database"),
            models.Index(fields=["outcome", "-occurred_at"], name="retryevent_outcome"),
            models.Index(fields=["phase", "-occurred_at"], name="retryevent_phase"),
            models.Index(fields=["error_type", "-occurred_at"], name="retryevent_error_type"),
        ]
        # Events are written by the receiver and removed by the retention
        # command, never edited by hand: only viewing is a permission.
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.phase} on {self.database}: {self.outcome} ({self.error_type})"

    @classmethod
    def from_event(cls, event: events.SettledEvent) -> RetryEvent:
        """An unsaved row for ``event``, cut to the columns' lengths (a long
        value must not make the write fail)."""
        values = {}
        for field in cls._meta.concrete_fields:
            if field.primary_key:
                continue
            value = getattr(event, field.name)
            if isinstance(value, str) and field.max_length:
                value = value[: field.max_length]
            values[field.name] = value
        if not settings.USE_TZ and timezone.is_aware(values["occurred_at"]):
            values["occurred_at"] = timezone.make_naive(values["occurred_at"])
        return cls(**values)
