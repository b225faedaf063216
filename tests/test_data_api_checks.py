"""The Data API engine's system checks, and ``aurora_wake`` on it."""

from __future__ import annotations

import contextlib
import copy
import threading

import pytest
from django.db import connections
from django.test import override_settings

from orca_db.testing.data_api import DEFAULT_CLUSTER_ARN, DEFAULT_SECRET_ARN
from orca_db_app import checks_data_api
from tests.commands import run_command

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")

DATA_API = {
    "ENGINE": "orca_db.backends.aurora_data_api",
    "NAME": "orca",
    "OPTIONS": {"aurora": {"cluster_arn": DEFAULT_CLUSTER_ARN, "secret": DEFAULT_SECRET_ARN}},
}


def check(**overrides):
    database = copy.deepcopy(DATA_API)
    database.update(overrides)
    default = {"ENGINE": "django.db.backends.postgresql", "NAME": "x"}
    with override_settings(DATABASES={"default": default, "api": database}):
        return checks_data_api.check_data_api()


def ids(messages):
    return [message.id for message in messages]


@pytest.fixture(autouse=True)
def _no_lambda(monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_TIMEOUT", raising=False)


def test_good_settings_are_quiet():
    assert check() == []


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"aurora": {}}, "['cluster_arn'] is required"),
        ({"aurora": {"cluster_arn": DEFAULT_CLUSTER_ARN, "secret": "orca"}}, "full ARN"),
        ({**DATA_API["OPTIONS"], "sslmode": "require"}, "OPTIONS['sslmode'] is not used"),
        ({"aurora": {**DATA_API["OPTIONS"]["aurora"], "deadline": -1}}, "['deadline'] must be"),
    ],
)
def test_e040_bad_options_name_the_key(options, fragment):
    messages = check(OPTIONS=options)
    assert ids(messages) == ["orca_db.E050"]
    assert fragment in messages[0].msg
    assert "docs/checks.md#orca_dbe050" in messages[0].hint


def test_e041_boto3_missing(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "boto3" else real(name)
    )
    assert ids(check()) == ["orca_db.E051"]


def test_w040_connection_settings_are_ignored():
    messages = check(HOST="cluster.example.com", PASSWORD="x")
    assert ids(messages) == ["orca_db.W050"]
    assert "HOST, PASSWORD" in messages[0].msg


@pytest.mark.parametrize(
    ("settings", "warned"),
    [
        ({"USE_TZ": True, "TIME_ZONE": "America/Chicago"}, False),
        ({"USE_TZ": False, "TIME_ZONE": "America/Chicago"}, True),
        ({"USE_TZ": False, "TIME_ZONE": "UTC"}, False),
    ],
)
def test_w041_a_time_zone_the_data_api_cannot_set(settings, warned):
    with override_settings(**settings):
        assert ids(check()) == (["orca_db.W051"] if warned else [])
    assert ids(check(TIME_ZONE="Europe/Paris")) == ["orca_db.W051"]


def test_w042_deadline_past_the_lambda_timeout(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_TIMEOUT", "30")
    assert ids(check()) == ["orca_db.W052"]  # the default deadline is 60 s
    options = {"aurora": {**DATA_API["OPTIONS"]["aurora"], "deadline": 20}}
    assert check(OPTIONS=options) == []


def test_the_checks_run_with_djangos():
    from django.core import checks

    with override_settings(DATABASES={"default": DATA_API | {"OPTIONS": {}}}):
        assert "orca_db.E050" in ids(checks.run_checks())


# ----- aurora_wake ------------------------------------------------------------------


@contextlib.contextmanager
def alias(name, settings_dict):
    connections.settings[name] = settings_dict
    try:
        yield name
    finally:
        with contextlib.suppress(AttributeError):
            del connections[name]
        del connections.settings[name]


def wake(*args):
    """``manage.py aurora_wake args...`` as from a shell: (stdout, stderr,
    exit code); a ``CommandError`` is printed on stderr as Django does."""
    return run_command("aurora_wake", *args)


def test_wake_a_paused_cluster_through_the_data_api(data_api_endpoint):
    settings = data_api_endpoint.django_settings(connections["default"].settings_dict["NAME"])
    data_api_endpoint.pause()
    with alias("api", {**connections["default"].settings_dict, **settings}):
        result = []
        thread = threading.Thread(target=lambda: result.append(wake("--database", "api", "--json")))
        thread.start()
        data_api_endpoint.wait_for(lambda s: s["resuming"] >= 2)
        data_api_endpoint.resume()
        thread.join(30)
    out, err, code = result[0]
    assert code == 0, err
    assert '"status": "awake"' in out


def test_wake_stops_at_an_error_waiting_cannot_fix(data_api_endpoint):
    settings = data_api_endpoint.django_settings(connections["default"].settings_dict["NAME"])
    settings["OPTIONS"]["aurora"]["cluster_arn"] = DEFAULT_CLUSTER_ARN.replace(
        "orca-local", "other"
    )
    with alias("api", {**connections["default"].settings_dict, **settings}):
        out, err, code = wake("--database", "api", "--timeout", "5")
    assert code == 2
    assert "HttpEndpointNotEnabledException" in err
    assert data_api_endpoint.stats["calls"] == 1
