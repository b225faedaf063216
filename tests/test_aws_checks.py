"""Validation of the AWS keys (orca_db.E001) and their checks (E040, E041)."""

from __future__ import annotations

import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from orca_db.conf import parse_retry_settings
from orca_db_app import checks as orca_checks
from orca_db_app import checks_aws
from tests.test_checks import databases, ids

pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"secret": ""}, "OPTIONS['aurora']['secret'] must be a non-empty string, got ''."),
        ({"secret": 42}, "OPTIONS['aurora']['secret'] must be a non-empty string, got 42."),
        ({"iam_auth": "yes"}, "OPTIONS['aurora']['iam_auth'] must be True or False, got 'yes'."),
        ({"region": ["us-east-1"]}, "OPTIONS['aurora']['region'] must be a non-empty string"),
        ({"cluster": " "}, "OPTIONS['aurora']['cluster'] must be a non-empty string"),
        ({"secrets": "x"}, "Unknown key OPTIONS['aurora']['secrets']; valid keys: "),
    ],
)
def test_bad_aws_values_are_refused_by_name(options, message):
    with pytest.raises(ImproperlyConfigured) as raised:
        parse_retry_settings(options)
    assert str(raised.value).startswith(message)


def test_aws_keys_parse_beside_the_retry_keys():
    settings = parse_retry_settings(
        {"deadline": 30, "secret": "orca/app", "iam_auth": True, "region": "us-west-2"}
    )
    assert settings.deadline == 30
    assert settings.aws is not None
    assert (settings.aws.secret, settings.aws.iam_auth, settings.aws.region) == (
        "orca/app",
        True,
        "us-west-2",
    )
    assert parse_retry_settings({"deadline": 5}).aws is None


def test_e001_reports_a_bad_aws_key():
    settings = databases(bad={"OPTIONS": {"aurora": {"iam_auth": 1}}})
    with override_settings(DATABASES=settings):
        messages = orca_checks.check_retry_options()
    assert ids(messages) == ["orca_db.E001"]
    assert "OPTIONS['aurora']['iam_auth']" in messages[0].msg


@pytest.mark.parametrize("sslmode", [None, "disable", "prefer", "allow"])
def test_e040_iam_without_tls(sslmode):
    options = {"aurora": {"iam_auth": True}}
    if sslmode:
        options["sslmode"] = sslmode
    with override_settings(DATABASES=databases(iam={"OPTIONS": options})):
        messages = checks_aws.check_aws_options()
    assert ids(messages) == ["orca_db.E040"]
    assert messages[0].msg.startswith("Database 'iam' logs in with an IAM token")
    assert "docs/checks.md#orca_dbe040" in messages[0].hint


@pytest.mark.parametrize("sslmode", checks_aws.SSL_MODES)
def test_e040_quiet_with_tls(sslmode):
    options = {"aurora": {"iam_auth": True}, "sslmode": sslmode}
    with override_settings(DATABASES=databases(iam={"OPTIONS": options})):
        assert checks_aws.check_aws_options() == []


def test_e041_boto3_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)
    options = {"aurora": {"secret": "orca/app"}}
    with override_settings(DATABASES=databases(s={"OPTIONS": options})):
        messages = checks_aws.check_aws_options()
    assert ids(messages) == ["orca_db.E041"]
    assert "orca-db[aws]" in messages[0].hint


def test_no_aws_keys_no_messages():
    with override_settings(DATABASES=databases()):
        assert checks_aws.check_aws_options() == []


def test_boto3_missing_at_connect_names_the_extra(monkeypatch):
    from orca_db.aws import clients
    from orca_db.exceptions import DJANGO_ERRORS
    from orca_db.outcomes import ConfigurationError

    monkeypatch.setitem(sys.modules, "boto3", None)
    clients.clear_clients()
    # As the Django host asks (its table, with its settings): ImproperlyConfigured.
    with pytest.raises(ImproperlyConfigured, match=r"pip install 'orca-db\[aws\]'"):
        clients.client("secretsmanager", "us-east-1", DJANGO_ERRORS)
    # The core's own error without a host (what the SQLAlchemy plugin gets).
    with pytest.raises(ConfigurationError, match=r"pip install 'orca-db\[aws\]'"):
        clients.client("secretsmanager", "us-east-1")


def test_region_missing_is_a_clear_error(monkeypatch):
    from orca_db.aws import clients

    for key in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    from orca_db.exceptions import DJANGO_ERRORS

    clients.clear_clients()
    with pytest.raises(ImproperlyConfigured, match="OPTIONS\\['aurora'\\]\\['region'\\]"):
        clients.client("rds", None, DJANGO_ERRORS)
    clients.clear_clients()


def test_region_from_a_secret_arn():
    from orca_db.aws.clients import region_from_arn

    assert region_from_arn("arn:aws:secretsmanager:eu-west-1:123:secret:orca-AbC") == "eu-west-1"
    assert region_from_arn("orca/app") is None
