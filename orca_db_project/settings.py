"""Settings of the orca-db project (the admin, the operations commands and
the demo). Configuration comes from the environment:

- ``DATABASE_URL``: ``postgresql://user:password@host:port/name``; without it
  an embedded PostgreSQL, started at the first connection (not on import).
- ``ORCA_DB_EMBEDDED_DIR``: the project's local state, the embedded server
  and the generated secret key (``.orca-db``).
- ``ORCA_DB_RETRY_DEADLINE``: seconds an operation may spend retrying (60).
- ``ORCA_DB_CONN_MAX_AGE``: seconds to keep a connection between requests (0).
- ``ORCA_DB_SECRET_KEY`` (else one generated per checkout by ``manage.py``),
  ``ORCA_DB_DEBUG`` (``1``/``0``, off unless asked),
  ``ORCA_DB_ALLOWED_HOSTS`` (comma-separated), ``ORCA_DB_LOG_LEVEL``
  (``orca_db``'s loggers on the console, ``WARNING``).

A bad value raises ``ImproperlyConfigured`` naming the variable (``manage.py``
prints it on one line and exits 2). Loading these settings has no side
effects: no file is written, no server started. See docs/settings.md.
"""

import os
from pathlib import Path

from orca_db_project import (
    database_from_environment,
    env_flag,
    env_float,
    env_log_level,
    retry_options,
    secret_key,
)

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = secret_key()
DEBUG = env_flag("ORCA_DB_DEBUG", False)
ALLOWED_HOSTS = [
    h for h in os.environ.get("ORCA_DB_ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "orca_db_app",
    # ORCA's schema, services and the demo (aurora_demo); optional for others.
    "orca_db_app.orca",
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

ROOT_URLCONF = "orca_db_project.urls"

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

WSGI_APPLICATION = "orca_db_project.wsgi.application"

DATABASES = {"default": database_from_environment()}
DATABASES["default"]["CONN_MAX_AGE"] = env_float("ORCA_DB_CONN_MAX_AGE", 0)
DATABASES["default"].setdefault("OPTIONS", {})["aurora"] = retry_options(
    "ORCA_DB_RETRY_DEADLINE", 60.0
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "orca_db": {
            "handlers": ["console"],
            "level": env_log_level("ORCA_DB_LOG_LEVEL", "WARNING"),
            "propagate": False,
        },
    },
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
