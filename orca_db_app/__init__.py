"""The orca-db Django app: retry events, operations commands, system checks
and ORCA's storage models."""

from orca_db.backends.django_version import require_django

# Django is an extra (orca-db[django]): a clear error when it is missing or
# of an unsupported release, before any module of the app imports it.
require_django()
