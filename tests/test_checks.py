"""System checks: each one triggered, and left quiet by a good setting."""

from __future__ import annotations

import ast
import configparser
import copy
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.db import connections
from django.test import override_settings

from orca_db_app import checks as orca_checks

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")

BASE = {
    "ENGINE": "orca_db.backends.aurora",
    "NAME": "orca",
    "USER": "orca",
    "PASSWORD": "secret",
    "HOST": "cluster.example.com",
    "PORT": "5432",
}


def databases(**aliases: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """DATABASES with ``default`` plus ``aliases``, each BASE updated by it."""
    result = {"default": copy.deepcopy(BASE)}
    for alias, overrides in aliases.items():
        result[alias] = {**copy.deepcopy(BASE), **overrides}
    return result


def ids(messages) -> list[str]:
    return [message.id for message in messages]


@pytest.fixture
def in_lambda(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orca-worker")
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_TIMEOUT", raising=False)


@pytest.fixture(autouse=True)
def _no_lambda_timeout(monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_TIMEOUT", raising=False)


# ----- E001: invalid OPTIONS["aurora"] ----------------------------------------


def test_e001_invalid_aurora_option():
    with override_settings(DATABASES=databases(bad={"OPTIONS": {"aurora": {"deadline": -1}}})):
        messages = orca_checks.check_retry_options()
    assert ids(messages) == ["orca_db.E001"]
    assert messages[0].msg.startswith("Database 'bad': OPTIONS['aurora']['deadline'] must be")
    assert "docs/checks.md#orca_dbe001" in messages[0].hint


def test_hints_link_to_the_docs_online():
    """A user of the wheel has no docs/ folder: every hint names a page
    online, under the project's one URL (``orca_db_app.checks.PROJECT_URL``)."""
    with override_settings(DATABASES=databases(bad={"OPTIONS": {"aurora": {"deadline": -1}}})):
        (message,) = orca_checks.check_retry_options()
    page = f"{orca_checks.PROJECT_URL}/blob/main/docs/checks.md#orca_dbe001"
    assert message.hint.endswith(f"See {page}.")
    # No hint in the checks' sources (nor a module-level constant) names a
    # path of the checkout.
    for source in Path(orca_checks.__file__).parent.glob("checks*.py"):
        tree = ast.parse(source.read_text())
        hints = [node.value for node in ast.walk(tree) if isinstance(node, ast.keyword)]
        hints += [node.value for node in tree.body if isinstance(node, ast.Assign)]
        strings = [
            node.value
            for hint in hints
            for node in ast.walk(hint)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
        ]
        assert [text for text in strings if "docs/" in text] == [], source


def test_the_metadata_names_the_same_project_url():
    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    lines = config["metadata"]["project_urls"].strip().splitlines()
    urls = dict(line.split(" = ", 1) for line in lines)
    home = orca_checks.PROJECT_URL
    assert home.startswith("https://")
    assert urls == {
        "Documentation": f"{home}/tree/main/docs",
        "Source": home,
        "Changelog": f"{home}/blob/main/CHANGELOG.md",
        "Issues": f"{home}/issues",
    }


def test_e001_unknown_key_named():
    settings = databases(bad={"OPTIONS": {"aurora": {"dedline": 5}}})
    with override_settings(DATABASES=settings):
        messages = orca_checks.check_retry_options()
    assert "Unknown key OPTIONS['aurora']['dedline']" in messages[0].msg


def test_e001_valid_options_pass():
    settings = databases(good={"OPTIONS": {"aurora": {"deadline": 30, "retry_writes": True}}})
    with override_settings(DATABASES=settings):
        assert orca_checks.check_retry_options() == []


def test_e001_ignores_other_engines():
    settings = databases(
        plain={"ENGINE": "django.db.backends.postgresql", "OPTIONS": {"aurora": 1}}
    )
    with override_settings(DATABASES=settings):
        assert orca_checks.check_retry_options() == []


def test_e001_respects_databases_argument():
    settings = databases(bad={"OPTIONS": {"aurora": {"deadline": "x"}}})
    with override_settings(DATABASES=settings):
        assert orca_checks.check_retry_options(databases=["default"]) == []
        assert ids(orca_checks.check_retry_options(databases=["bad"])) == ["orca_db.E001"]


def test_registered_and_run_by_django():
    settings = databases(bad={"OPTIONS": {"aurora": {"enabled": "yes"}}})
    # Since Django 6.0 run_checks() examines the aliases of ``connections``,
    # whose settings override_settings does not refresh: show it the alias.
    original = connections.settings
    connections.settings = connections.configure_settings(settings)
    try:
        with override_settings(DATABASES=settings):
            found = ids(checks.run_checks())
    finally:
        connections.settings = original
    assert "orca_db.E001" in found


# ----- W001: CONN_MAX_AGE in Lambda -------------------------------------------


def test_w001_persistent_connections_in_lambda(in_lambda):
    with override_settings(DATABASES=databases(api={"CONN_MAX_AGE": 600})):
        messages = orca_checks.check_conn_max_age_in_lambda()
    assert ids(messages) == ["orca_db.W001"]
    assert "Database 'api' has CONN_MAX_AGE = 600 in AWS Lambda" in messages[0].msg


def test_w001_none_means_forever(in_lambda):
    with override_settings(DATABASES=databases(api={"CONN_MAX_AGE": None})):
        assert ids(orca_checks.check_conn_max_age_in_lambda()) == ["orca_db.W001"]


def test_w001_zero_in_lambda_passes(in_lambda):
    with override_settings(DATABASES=databases(api={"CONN_MAX_AGE": 0})):
        assert orca_checks.check_conn_max_age_in_lambda() == []


def test_w001_outside_lambda_passes(monkeypatch):
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    with override_settings(DATABASES=databases(api={"CONN_MAX_AGE": 600})):
        assert orca_checks.check_conn_max_age_in_lambda() == []


# ----- W002 / E002: retry deadline and the Lambda timeout ---------------------


def test_w002_deadline_longer_than_lambda_timeout_from_env(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_TIMEOUT", "30")
    with override_settings(DATABASES=databases()):  # the default deadline: 60 s
        messages = orca_checks.check_deadline_within_lambda_timeout()
    assert ids(messages) == ["orca_db.W002"]
    assert "retries for up to 60 s" in messages[0].msg
    assert "times out after 30 s (environment variable AWS_LAMBDA_FUNCTION_TIMEOUT)" in (
        messages[0].msg
    )


def test_w002_deadline_longer_than_lambda_timeout_from_setting():
    settings = databases(job={"OPTIONS": {"aurora": {"deadline": 20}}})
    with override_settings(DATABASES=settings, ORCA_DB_LAMBDA_TIMEOUT=15):
        messages = orca_checks.check_deadline_within_lambda_timeout()
    assert ids(messages) == ["orca_db.W002", "orca_db.W002"]
    assert "setting ORCA_DB_LAMBDA_TIMEOUT" in messages[0].msg


def test_w002_deadline_within_lambda_timeout_passes():
    settings = databases(job={"OPTIONS": {"aurora": {"deadline": 10}}})
    settings["default"]["OPTIONS"] = {"aurora": {"deadline": 10}}
    with override_settings(DATABASES=settings, ORCA_DB_LAMBDA_TIMEOUT=900):
        assert orca_checks.check_deadline_within_lambda_timeout() == []


def test_w002_retry_layer_off_passes():
    settings = databases()
    settings["default"]["OPTIONS"] = {"aurora": {"enabled": False}}
    with override_settings(DATABASES=settings, ORCA_DB_LAMBDA_TIMEOUT=3):
        assert orca_checks.check_deadline_within_lambda_timeout() == []


def test_w002_no_lambda_timeout_known_passes():
    with override_settings(DATABASES=databases()):
        assert orca_checks.check_deadline_within_lambda_timeout() == []


def test_e002_unreadable_lambda_timeout(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_TIMEOUT", "fifteen")
    with override_settings(DATABASES=databases()):
        messages = orca_checks.check_deadline_within_lambda_timeout()
    assert ids(messages) == ["orca_db.E002"]
    assert "got 'fifteen'" in messages[0].msg


def test_e002_negative_setting():
    with override_settings(DATABASES=databases(), ORCA_DB_LAMBDA_TIMEOUT=-5):
        assert ids(orca_checks.check_deadline_within_lambda_timeout()) == ["orca_db.E002"]


# ----- W003 / E003: connect_timeout -------------------------------------------


def test_w003_connect_timeout_shorter_than_a_resume():
    with override_settings(DATABASES=databases(web={"OPTIONS": {"connect_timeout": 5}})):
        messages = orca_checks.check_connect_timeout()
    assert ids(messages) == ["orca_db.W003"]
    assert "Database 'web' has connect_timeout = 5 s" in messages[0].msg


def test_w003_string_value_counts():
    with override_settings(DATABASES=databases(web={"OPTIONS": {"connect_timeout": "10"}})):
        assert ids(orca_checks.check_connect_timeout()) == ["orca_db.W003"]


@pytest.mark.parametrize("value", [30, "45", 0])
def test_w003_long_enough_or_unbounded_passes(value):
    with override_settings(DATABASES=databases(web={"OPTIONS": {"connect_timeout": value}})):
        assert orca_checks.check_connect_timeout() == []


def test_w003_unset_passes():
    with override_settings(DATABASES=databases()):
        assert orca_checks.check_connect_timeout() == []


def test_e003_unreadable_connect_timeout():
    with override_settings(DATABASES=databases(web={"OPTIONS": {"connect_timeout": "5s"}})):
        messages = orca_checks.check_connect_timeout()
    assert ids(messages) == ["orca_db.E003"]
