import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import override_settings

from orca_db.backends.aurora.base import DatabaseWrapper
from orca_db.conf import RetrySettings, parse_retry_settings, retry_settings


def test_defaults_cover_a_cluster_resume():
    settings = parse_retry_settings(None)
    assert settings == RetrySettings()
    assert settings.deadline >= 40  # a paused v1 cluster takes 30-40 s
    assert settings.retry_writes is False and settings.enabled is True


def test_values_are_read():
    settings = parse_retry_settings(
        {"deadline": 30, "max_attempts": 10, "backoff_initial": 0.1, "backoff_max": 5}
    )
    assert (settings.deadline, settings.max_attempts) == (30, 10)
    assert (settings.backoff_initial, settings.backoff_max) == (0.1, 5)


@pytest.mark.parametrize(
    "options, key",
    [
        ({"deadline": -1}, "deadline"),
        ({"deadline": "60"}, "deadline"),
        ({"deadline": float("inf")}, "deadline"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"backoff_initial": -0.1}, "backoff_initial"),
        ({"backoff_max": None}, "backoff_max"),
        ({"retry_writes": "yes"}, "retry_writes"),
        ({"enabled": 1}, "enabled"),
        ({"deadlin": 60}, "deadlin"),
        ({"backoff_initial": 2, "backoff_max": 1}, "backoff_max"),
    ],
)
def test_bad_values_name_the_key(options, key):
    with pytest.raises(ImproperlyConfigured, match=repr(key).replace("[", r"\[")):
        parse_retry_settings(options)


def test_options_must_be_a_dict():
    with pytest.raises(ImproperlyConfigured, match="must be a dict"):
        parse_retry_settings([("deadline", 1)])


@pytest.mark.django_db
def test_bad_settings_fail_the_first_connect_naming_the_key():
    settings = {**connection.settings_dict, "OPTIONS": {"aurora": {"deadline": "soon"}}}
    db = DatabaseWrapper(settings, alias="bad")
    with pytest.raises(ImproperlyConfigured, match="'deadline'"):
        db.ensure_connection()
    assert db.connection is None


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
def test_settings_are_read_at_call_time():
    assert retry_settings(connection).deadline == 60
    databases = {
        "default": {**connection.settings_dict, "OPTIONS": {"aurora": {"deadline": 5}}},
    }
    with override_settings(DATABASES=databases):
        connection.settings_dict["OPTIONS"] = databases["default"]["OPTIONS"]
        try:
            assert retry_settings(connection).deadline == 5
        finally:
            connection.settings_dict["OPTIONS"] = {}
    assert retry_settings(connection).deadline == 60
