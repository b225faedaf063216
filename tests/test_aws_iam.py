"""IAM database authentication: tokens minted with boto3, checked by a
front door that verifies them as RDS does (tests/iam_front.py) before it
lets the login through to a real PostgreSQL. What reaches the server is the
proof: how many tokens, which ones, and which were refused."""

from __future__ import annotations

import time

import boto3
import pytest
from django.db import OperationalError, connections

from orca_db.aws import iam
from orca_db.testing.aws import ACCESS_KEY, REGION, SECRET_KEY
from tests import driver
from tests.aws_helpers import end_sessions, login_role
from tests.iam_front import IamFrontDoor
from tests.pooled import database_alias, scratch_database
from tests.waiting import wait_until

AURORA = "orca_db.backends.aurora"
POOL = {"min_size": 1, "max_size": 2, "timeout": 5}
MODES = {
    "per_request": {"ENGINE": AURORA, "CONN_MAX_AGE": 0},
    "persistent": {"ENGINE": AURORA, "CONN_MAX_AGE": None},
    "django_pool": {"ENGINE": AURORA, "OPTIONS": {"pool": POOL}},
    "aurora_pool": {
        "ENGINE": "orca_db.backends.aurora_pool",
        "POOL_OPTIONS": {"POOL_SIZE": 2, "MAX_OVERFLOW": 0, "TIMEOUT": 5},
    },
}


@pytest.fixture(scope="module")
def dbname(django_db_blocker):
    with django_db_blocker.unblock(), scratch_database() as name:
        yield name


@pytest.fixture
def role(dbname, django_db_blocker):
    # The front door logs in over the Unix socket, where the test server
    # trusts local logins: the role's own password is never used.
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


def iam_settings(mode: str, dbname: str, role: str, door: IamFrontDoor) -> dict:
    if mode == "django_pool" and driver.DRIVER == "psycopg2":
        pytest.skip("Django's connection pool needs psycopg 3")
    settings = {k: v for k, v in MODES[mode].items() if k != "OPTIONS"}
    options = MODES[mode].get("OPTIONS", {})
    return {
        **settings,
        "NAME": dbname,
        "USER": role,
        "PASSWORD": "",
        "HOST": "127.0.0.1",
        "PORT": str(door.port),
        "OPTIONS": {**options, "aurora": {"iam_auth": True}},
    }


def current_user(alias: str) -> str:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT current_user")
        return cursor.fetchone()[0]


def pools_settled(door: IamFrontDoor, *aliases: str) -> None:
    """Django's pool makes its connections in the background (the first
    ones, one more when a request waits): wait until every connection the
    pools of ``aliases`` have begun has logged in. One still logging in
    while the test lets the tokens expire, at the door first and at the
    client a moment later, would show the client reusing a token the door
    already refuses: a race of the test's, not of 16 minutes passing."""
    pools = [connections[alias].pool for alias in aliases]
    wait_until(lambda: len(door.accepted) >= sum(p.get_stats()["pool_size"] for p in pools))


def let_tokens_expire(door: IamFrontDoor, monkeypatch) -> None:
    """16 minutes pass: the server refuses every token minted so far, and
    the client's clock says its token is past its reuse time."""
    door.expire_tokens()
    later = time.time() + iam.TOKEN_LIFETIME + 60
    monkeypatch.setattr(iam, "now", lambda: later)


def test_one_token_serves_many_logins(role, dbname, front_door, django_db_blocker):
    settings = iam_settings("per_request", dbname, role, front_door)
    with django_db_blocker.unblock(), database_alias("iam", settings):
        for _ in range(5):
            assert current_user("iam") == role
            connections["iam"].close()
    assert len(front_door.accepted) == 5
    assert len(set(front_door.accepted)) == 1
    assert front_door.rejected == []


@pytest.mark.parametrize("mode", sorted(MODES))
def test_new_connections_after_token_expiry(
    mode, role, dbname, front_door, django_db_blocker, monkeypatch
):
    """Every session ends after the token expired (a scale event, the pool
    recycling connections): the new ones log in with a new token, minted
    before any login was refused."""
    alias = f"iam_{mode}"
    with (
        django_db_blocker.unblock(),
        database_alias(alias, iam_settings(mode, dbname, role, front_door)),
    ):
        assert current_user(alias) == role
        if mode == "django_pool":
            pools_settled(front_door, alias)
        first = set(front_door.accepted)
        let_tokens_expire(front_door, monkeypatch)
        end_sessions(role)
        for _ in range(3):
            assert current_user(alias) == role
            if mode == "per_request":
                connections[alias].close()
    assert len(first) == 1
    later = set(front_door.accepted) - first
    assert len(later) == 1, "one new token, reused"
    assert front_door.rejected == []


def test_stock_pool_with_a_token_in_settings_fails_where_orca_does_not(
    role, dbname, front_door, django_db_blocker, monkeypatch
):
    """The usual set-up: a token minted at start-up in PASSWORD, Django's
    pool. After the token expired, the pool's new connections are refused;
    orca-db's pool, in the same test, gets new ones with a new token."""
    if driver.DRIVER == "psycopg2":
        pytest.skip("Django's connection pool needs psycopg 3")
    token = boto3.client("rds").generate_db_auth_token(
        DBHostname="127.0.0.1", Port=front_door.port, DBUsername=role
    )
    stock = {
        **iam_settings("django_pool", dbname, role, front_door),
        "ENGINE": "django.db.backends.postgresql",
        "PASSWORD": token,
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": {"pool": POOL},
    }
    orca = iam_settings("django_pool", dbname, role, front_door)
    with (
        django_db_blocker.unblock(),
        database_alias("stock_pool", stock),
        database_alias("orca_pool", orca),
    ):
        assert current_user("stock_pool") == role
        assert current_user("orca_pool") == role
        connections["stock_pool"].close()
        connections["orca_pool"].close()
        pools_settled(front_door, "stock_pool", "orca_pool")
        let_tokens_expire(front_door, monkeypatch)
        end_sessions(role)
        with pytest.raises(OperationalError):
            current_user("stock_pool")
        assert current_user("orca_pool") == role
    refused = {t for t, _ in front_door.rejected}
    assert refused == {token}, "only the stock pool's stale token was refused"
    assert all(reason == "expired (simulated)" for _, reason in front_door.rejected)


def test_refused_token_is_minted_again_at_once(role, dbname, front_door, django_db_blocker):
    """The server refuses a token the client still thinks valid (a clock
    skew, revoked credentials): one refused login, a new token, success."""
    settings = iam_settings("per_request", dbname, role, front_door)
    with django_db_blocker.unblock(), database_alias("iam", settings):
        assert current_user("iam") == role
        connections["iam"].close()
        front_door.expire_tokens()
        assert current_user("iam") == role
    assert len(front_door.rejected) == 1
    assert len(set(front_door.accepted)) == 2
    assert front_door.rejected[0][0] == front_door.accepted[0]
