from django.db import models


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
    sqlstate = models.CharField(max_length=5, null=True, blank=True)
    message = models.TextField(blank=True, help_text="Scrubbed of passwords and row values.")
    attempts = models.PositiveIntegerField()
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    elapsed_ms = models.FloatField()
    statement = models.TextField(blank=True, help_text="The SQL, literals replaced by ?.")
    host = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    lambda_request_id = models.CharField(max_length=100, null=True, blank=True)

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [
            models.Index(fields=["-occurred_at"], name="retryevent_occurred"),
            models.Index(fields=["database", "-occurred_at"], name="retryevent_database"),
            models.Index(fields=["outcome", "-occurred_at"], name="retryevent_outcome"),
            models.Index(fields=["phase", "-occurred_at"], name="retryevent_phase"),
        ]

    def __str__(self) -> str:
        return f"{self.phase} on {self.database}: {self.outcome} ({self.error_type})"
