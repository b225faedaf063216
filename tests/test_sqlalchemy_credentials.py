"""Logins from AWS on the SQLAlchemy plugin (``aurora={"secret": ...}``,
``{"iam_auth": True}``): a Secrets Manager secret in moto's server and IAM
tokens checked by the local front door (tests/iam_front.py), against a real
PostgreSQL; fresh per connection, refreshed once after a refused login."""

from __future__ import annotations

import time

import pytest

from orca_db.aws import iam
from orca_db.testing.aws import ACCESS_KEY, REGION, SECRET_KEY
from tests.aws_helpers import (
    create_secret,
    end_sessions,
    login_role,
    new_password,
    rotate_secret,
    secret_value,
    set_password,
)
from tests.driver import DRIVER
from tests.iam_front import IamFrontDoor
from tests.pooled import scratch_database

sqlalchemy = pytest.importorskip("sqlalchemy")

from sqlalchemy import URL, create_engine, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

SECRET = "orca/sqlalchemy"


@pytest.fixture(scope="module")
def dbname(django_db_blocker):
    with django_db_blocker.unblock(), scratch_database() as name:
        yield name


@pytest.fixture
def secret_role(dbname, aws, django_db_blocker):
    password = new_password()
    with django_db_blocker.unblock(), login_role(dbname, password) as name:
        create_secret(SECRET, secret_value(name, password, dbname))
        yield name


@pytest.fixture
def iam_role(dbname, django_db_blocker):
    with django_db_blocker.unblock(), login_role(dbname, "unused") as name:
        yield name


@pytest.fixture
def front_door(aws):
    from orca_db.testing.postgres import shared_server

    server = shared_server()
    door = IamFrontDoor(
        str(server.base), server.port, region=REGION, access_key=ACCESS_KEY, secret_key=SECRET_KEY
    )
    yield door
    door.close()


def current_user(e) -> str:
    with e.connect() as connection:
        return connection.execute(text("SELECT current_user")).scalar()


def test_login_comes_from_the_secret_read_once(secret_role, aws, django_db_blocker):
    """The URL names nothing but the driver: user, password, host, port and
    database all come from the secret, read once for many connections."""
    e = create_engine(
        URL.create(f"postgresql+{DRIVER}"),
        plugins=["orca_db"],
        aurora={"secret": SECRET},
        poolclass=NullPool,
    )
    try:
        with django_db_blocker.unblock():
            for _ in range(4):
                assert current_user(e) == secret_role
    finally:
        e.dispose()
    assert len(aws.calls("GetSecretValue")) == 1


def test_rotation_read_again_after_a_refused_login(secret_role, dbname, aws, django_db_blocker):
    """The secret is rotated (new password on the server, every session of
    the role ended): the pooled connection is replaced at checkout, the
    login with the cached password is refused, the secret is read again
    once, and the application sees nothing."""
    e = create_engine(
        URL.create(f"postgresql+{DRIVER}"),
        plugins=["orca_db"],
        aurora={"secret": SECRET},
        pool_size=1,
        max_overflow=0,
    )
    try:
        with django_db_blocker.unblock():
            assert current_user(e) == secret_role
            password = new_password()
            set_password(secret_role, password)
            rotate_secret(SECRET, secret_value(secret_role, password, dbname))
            end_sessions(secret_role)
            for _ in range(3):
                assert current_user(e) == secret_role
    finally:
        e.dispose()
    assert len(aws.calls("GetSecretValue")) == 2


def test_stock_engine_keeps_the_password_it_was_made_with(
    secret_role, dbname, aws, django_db_blocker
):
    """The hazard: ORCA reads the secret once, into the URL."""
    import json

    import boto3

    login = json.loads(
        boto3.client("secretsmanager").get_secret_value(SecretId=SECRET)["SecretString"]
    )
    e = create_engine(
        URL.create(
            f"postgresql+{DRIVER}", username=login["username"], password=login["password"],
            host=login["host"], port=login["port"], database=dbname,
        ),
        poolclass=NullPool,
    )  # fmt: skip
    try:
        with django_db_blocker.unblock():
            assert current_user(e) == secret_role
            password = new_password()
            set_password(secret_role, password)
            rotate_secret(SECRET, secret_value(secret_role, password, dbname))
            with pytest.raises(sqlalchemy.exc.OperationalError, match="password authentication"):
                current_user(e)
    finally:
        e.dispose()


def iam_engine(dbname: str, role: str, door: IamFrontDoor, **kwargs):
    return create_engine(
        URL.create(
            f"postgresql+{DRIVER}", username=role, host="127.0.0.1", port=door.port,
            database=dbname,
        ),
        plugins=["orca_db"],
        aurora={"iam_auth": True},
        **kwargs,
    )  # fmt: skip


def test_iam_token_minted_and_reused(iam_role, dbname, front_door, django_db_blocker):
    e = iam_engine(dbname, iam_role, front_door, poolclass=NullPool)
    try:
        with django_db_blocker.unblock():
            for _ in range(3):
                assert current_user(e) == iam_role
    finally:
        e.dispose()
    assert len(front_door.accepted) == 3
    assert len(set(front_door.accepted)) == 1  # one token, within its reuse time
    assert front_door.rejected == []


def test_iam_new_token_after_expiry(iam_role, dbname, front_door, django_db_blocker, monkeypatch):
    """Every session ends after the token expired (a scale event): the pool
    replaces its connection with a login made with a new token, minted
    before any login was refused."""
    e = iam_engine(dbname, iam_role, front_door, pool_size=1, max_overflow=0)
    try:
        with django_db_blocker.unblock():
            assert current_user(e) == iam_role
            first = set(front_door.accepted)
            front_door.expire_tokens()
            later = time.time() + iam.TOKEN_LIFETIME + 60
            monkeypatch.setattr(iam, "now", lambda: later)
            end_sessions(iam_role)
            assert current_user(e) == iam_role
    finally:
        e.dispose()
    assert set(front_door.accepted) - first
    assert front_door.rejected == []
