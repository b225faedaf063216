"""Settings for orca-db's own test suite.

The database: ``ORCA_DB_TEST_DATABASE_URL`` when set (a server you run),
else a throwaway PostgreSQL started for this test run. The driver:
``ORCA_DB_DRIVER=psycopg2`` hides psycopg 3 so Django falls back to psycopg2
(see tests/driver.py).
"""

import os

from tests import driver  # noqa: F401  (must run before Django loads a driver)

SECRET_KEY = "orca-db-tests"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "orca_db_app",
    "orca_db_app.orca",
    "tests.testapp",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"


def _database():
    from orca_db_project import ENGINE, parse_database_url

    url = os.environ.get("ORCA_DB_TEST_DATABASE_URL")
    if url:
        return parse_database_url(url)
    from orca_db.testing.postgres import shared_server

    return {"ENGINE": ENGINE, **shared_server().django_settings()}


DATABASES = {"default": _database()}
# A second alias on the same server, for tests that need another connection
# in the same thread (to kill the first one's backend, say).
DATABASES["other"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}
