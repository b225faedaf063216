"""Read-only admin views of retry events, with a chart on the list."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import truncatechars

from .charts import chart
from .conf import events_database
from .models import RetryEvent

#: What each phase's event stands for (the operation that settled).
_PHASES = {
    "connect": "a connection being made, outside any other operation",
    "execute": (
        "one statement (or executemany), its reconnects included (inside retry_atomic, "
        "the block's event counts it instead)"
    ),
    "transaction": (
        "a whole orca_db.retry_atomic block, its connects and statements included; "
        "or a COMMIT whose answer was lost outside one; or a Data API transaction call"
    ),
}
#: What an attempt counts, by phase.
_ATTEMPTS = {
    "connect": ("connection attempt", "connection attempts"),
    "execute": ("send of the statement", "sends of the statement"),
    "transaction": (
        "run of the block (or try of the call)",
        "runs of the block (or tries of the call)",
    ),
}


@admin.register(RetryEvent)
class RetryEventAdmin(admin.ModelAdmin):
    """Who may look is the model's ``view`` permission; nobody may add,
    change or delete events here (they are facts; retention is
    ``aurora_prune_events``)."""

    list_display = [
        "occurred_at",
        "database",
        "phase",
        "outcome",
        "error_type",
        "attempts",
        "elapsed",
        "short_statement",
    ]
    list_filter = ["database", "phase", "outcome", "error_type"]
    date_hierarchy = "occurred_at"
    search_fields = ["message", "statement"]
    # Counting a large table on every page costs more than it tells.
    show_full_result_count = False
    list_per_page = 50
    fieldsets = [
        (None, {"fields": ["occurred_at", "database", "phase_meaning", "outcome"]}),
        (
            "Failure",
            {"fields": ["error_type", "sqlstate", "message", "attempts_meaning", "elapsed"]},
        ),
        ("Statement", {"fields": ["statement"]}),
        ("Caller", {"fields": ["host", "pid", "lambda_request_id"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        alias = events_database()
        return queryset.using(alias) if alias else queryset

    def get_readonly_fields(self, request, obj=None):
        return [field for fieldset in self.fieldsets for field in fieldset[1]["fields"]]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="phase")
    def phase_meaning(self, obj: RetryEvent) -> str:
        """The operation that settled (docs/events.md#the-model): a failure
        met inside a retry_atomic block is that block's event, whatever
        statement or connect met it."""
        return f"{obj.get_phase_display()}: {_PHASES.get(obj.phase, '')}".rstrip(": ")

    @admin.display(description="attempts")
    def attempts_meaning(self, obj: RetryEvent) -> str:
        singular, plural = _ATTEMPTS.get(obj.phase, ("attempt", "attempts"))
        text = f"{obj.attempts} {singular if obj.attempts == 1 else plural}, the first included"
        if obj.attempts == 1 and obj.outcome == RetryEvent.Outcome.RECOVERED:
            text += (
                " (cured without a second one: a COMMIT whose answer was lost was found "
                "committed, or a connection found dead was replaced before anything ran on it)"
            )
        elif obj.attempts == 1 and obj.outcome == RetryEvent.Outcome.RAISED:
            text += " (not retried: retrying was not safe)"
        return text

    @admin.display(description="elapsed", ordering="elapsed_ms")
    def elapsed(self, obj: RetryEvent) -> str:
        return f"{obj.elapsed_ms / 1000:.2f} s"

    @admin.display(description="statement")
    def short_statement(self, obj: RetryEvent) -> str:
        return truncatechars(obj.statement, 60)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None)
        if context and "cl" in context:
            # The chart follows the list's filters, search and date.
            changelist = context["cl"]
            context["retry_chart"] = chart(
                changelist.queryset, request.GET, field=changelist.date_hierarchy or "occurred_at"
            )
        return response
