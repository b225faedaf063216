"""What Django's own test suite may expect of the aurora engine.

The backend is Django's PostgreSQL backend with retries, so every feature is
inherited. ``scripts/django_suite.py --compare`` runs Django's tests against
this engine and the stock one; a test that fails only here is fixed, or
listed below with the reason. The goal, and the state today, is two empty
lists (docs/compatibility.md).
"""

from django.db.backends.postgresql import features as postgresql
from django.utils.functional import cached_property


class DatabaseFeatures(postgresql.DatabaseFeatures):
    # Properties where Django has class attributes: the entries may depend
    # on the driver or server version, as the parent's django_test_skips do.
    @cached_property
    def django_test_expected_failures(self) -> set[str]:  # type: ignore[override]
        return set(super().django_test_expected_failures)

    @cached_property
    def django_test_skips(self) -> dict[str, set[str]]:  # type: ignore[override]
        return dict(super().django_test_skips)
