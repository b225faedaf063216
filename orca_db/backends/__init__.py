"""The Django host's engines. Importing any of them checks the installed
Django first (``django_version``): Django is an extra, ``orca-db[django]``."""

from .django_version import require_django

require_django()
