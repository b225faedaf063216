"""What Django's own test suite may expect of the Data API engine.

``scripts/django_suite.py --engine data_api`` runs Django's tests on this
engine through the local Data API endpoint; a test that fails here and
passes on the stock backend is fixed, or listed below with the reason
(docs/compatibility.md#the-data-api-engine).
"""

from django.db.backends.postgresql import features as postgresql
from django.utils.functional import cached_property


class DatabaseFeatures(postgresql.DatabaseFeatures):
    # Rows come back whole (the Data API has no server-side cursors): a
    # "chunked" read is one call.
    can_use_chunked_reads = False

    @cached_property
    def django_test_expected_failures(self) -> set[str]:  # type: ignore[override]
        return set(super().django_test_expected_failures)

    @cached_property
    def django_test_skips(self) -> dict[str, set[str]]:  # type: ignore[override]
        return dict(super().django_test_skips)
