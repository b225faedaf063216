"""WSGI entry point of the orca-db project (the admin)."""

import os

from django.core.wsgi import get_wsgi_application

from orca_db_project import ensure_secret_key

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orca_db_project.settings")
# Every worker process must sign with the same key: this checkout's.
ensure_secret_key()
application = get_wsgi_application()
