"""The orca_db SQLAlchemy engine plugin: how it is found and configured."""

from __future__ import annotations

import importlib.metadata

import pytest
from django.core.exceptions import ImproperlyConfigured

from orca_db.conf import parse_retry_settings
from tests.sqlalchemy_helpers import engine, url

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import create_engine, text  # noqa: E402

from orca_db.sqlalchemy import OrcaPlugin, settings_of  # noqa: E402


def test_entry_point_is_registered_by_the_installed_package():
    """What SQLAlchemy loads for plugins=["orca_db"] and ?plugin=orca_db
    (re-run `pip install -e .` after pulling this change)."""
    found = [
        ep for ep in importlib.metadata.entry_points(group="sqlalchemy.plugins")
        if ep.name == "orca_db"
    ]  # fmt: skip
    assert [ep.value for ep in found] == ["orca_db.sqlalchemy.plugin:OrcaPlugin"]
    assert found[0].load() is OrcaPlugin


def test_plugins_keyword_takes_the_aurora_settings():
    e = engine(aurora={"deadline": 7.5, "max_attempts": 4, "backoff_max": 0.5})
    try:
        settings = settings_of(e)
        assert settings is not None
        assert (settings.deadline, settings.max_attempts, settings.backoff_max) == (7.5, 4, 0.5)
        with e.begin() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
    finally:
        e.dispose()


def test_plugin_named_in_the_url():
    e = create_engine(url(plugin="orca_db"), aurora={"deadline": 5})
    try:
        assert settings_of(e).deadline == 5
        assert "plugin" not in e.url.query  # not passed on to the driver
        with e.connect() as connection:
            assert connection.execute(text("SELECT 2")).scalar() == 2
    finally:
        e.dispose()


def test_stock_engine_has_no_settings():
    e = create_engine(url())
    assert settings_of(e) is None


@pytest.mark.parametrize(
    "options",
    [
        "not a dict",
        {"deadline": -1},
        {"deadline": "60"},
        {"max_attempts": 0},
        {"retry_conflicts": "yes"},
        {"backoff_initial": 1, "backoff_max": 0.5},
        {"no_such_key": 1},
    ],
)
def test_bad_settings_are_refused_with_djangos_message(options):
    with pytest.raises(ImproperlyConfigured) as django_error:
        parse_retry_settings(options)
    expected = str(django_error.value).replace("OPTIONS['aurora']", "aurora")
    with pytest.raises(sqlalchemy.exc.ArgumentError) as error:
        create_engine(url(), plugins=["orca_db"], aurora=options)
    assert str(error.value) == expected


def test_deadline_and_aws_keys_are_taken():
    """``statement_deadline``, ``secret``, ``iam_auth``, ``region`` and
    ``cluster`` are honoured (docs/sqlalchemy.md); creating the engine
    reads no secret and mints no token."""
    options = {
        "statement_deadline": 5,
        "secret": "arn:aws:secretsmanager:us-east-1:1:secret:db",
        "iam_auth": True,
        "region": "us-east-1",
        "cluster": "orca-cluster",
    }
    e = create_engine(url(), plugins=["orca_db"], aurora=options)
    settings = settings_of(e)
    assert settings.statement_deadline == 5
    assert (settings.aws.secret, settings.aws.iam_auth) == (options["secret"], True)
    assert (settings.aws.region, settings.aws.cluster) == ("us-east-1", "orca-cluster")


@pytest.mark.parametrize(
    "options",
    [{"statement_deadline": 0}, {"iam_auth": "yes"}, {"secret": ""}, {"region": 3}],
)
def test_bad_deadline_and_aws_keys_are_refused_with_djangos_message(options):
    test_bad_settings_are_refused_with_djangos_message(options)


def test_the_data_api_key_is_refused():
    with pytest.raises(sqlalchemy.exc.ArgumentError, match="not supported by the SQLAlchemy"):
        create_engine(url(), plugins=["orca_db"], aurora={"cluster_arn": "arn:aws:rds:x"})


@pytest.mark.parametrize("drivername", ["postgresql+psycopg", "postgresql+asyncpg"])
def test_asyncio_engines_are_refused_at_create_time(drivername):
    from sqlalchemy.ext.asyncio import create_async_engine

    with pytest.raises(sqlalchemy.exc.ArgumentError, match="does not support asyncio engines"):
        create_async_engine(url().set(drivername=drivername), plugins=["orca_db"])
    with pytest.raises(sqlalchemy.exc.ArgumentError, match="does not support asyncio engines"):
        create_async_engine(url(plugin="orca_db").set(drivername=drivername))


@pytest.mark.parametrize("drivername", ["postgresql+asyncpg", "postgresql+psycopg_async", "sqlite"])
def test_other_drivers_are_refused(drivername):
    with pytest.raises(sqlalchemy.exc.ArgumentError, match="postgresql\\+psycopg2"):
        create_engine(url().set(drivername=drivername), plugins=["orca_db"])


def test_disabled_installs_no_hook():
    e = engine(aurora={"enabled": False})
    try:
        assert settings_of(e).enabled is False
        assert "do_commit" not in e.dialect.__dict__
        with e.connect() as connection:
            assert connection.execute(text("SELECT 3")).scalar() == 3
    finally:
        e.dispose()


@pytest.mark.parametrize("name", ["TransactionRolledBack", "OutcomeUnknown", "RetriesExhausted"])
def test_errors_keep_their_class_and_orig_through_pickling(name):
    """Task queues and multiprocessing pickle exceptions."""
    import pickle

    import orca_db.outcomes as core
    from orca_db import sqlalchemy as orca

    error = getattr(orca, name)("COMMIT", getattr(core, name)("lost"), connection_invalidated=True)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert type(copy.orig) is type(error.orig) and str(copy.orig) == "lost"
    assert (copy.statement, copy.connection_invalidated) == ("COMMIT", True)
    assert str(copy) == str(error)
