"""Settings of the orca-db project (the admin, the operations commands and
the demo). Configuration comes from the environment:

- ``DATABASE_URL``: ``postgresql://user:password@host:port/name``; without it
  an embedded PostgreSQL is started on first use (``orca_db.testing``).
- ``ORCA_DB_SECRET_KEY``, ``ORCA_DB_DEBUG`` (``1``/``0``),
  ``ORCA_DB_ALLOWED_HOSTS`` (comma-separated).

See docs/settings.md.
"""

import os
from pathlib import Path

from orca_db.project import database_from_environment

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("ORCA_DB_SECRET_KEY", "orca-db-insecure-development-key")
DEBUG = os.environ.get("ORCA_DB_DEBUG", "1") == "1"
ALLOWED_HOSTS = [h for h in os.environ.get("ORCA_DB_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "orca_db_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "orca_db.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "orca_db.wsgi.application"

DATABASES = {"default": database_from_environment()}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
