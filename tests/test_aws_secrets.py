"""Logins from a Secrets Manager secret (moto's server, a real HTTP
endpoint) against a real PostgreSQL whose role password the tests rotate
with ALTER ROLE, under both drivers and every way of holding connections."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections

from orca_db import retry_atomic
from orca_db.aws.credentials import CredentialsRejected
from orca_db.aws.secrets import SecretUnavailable
from tests import driver
from tests.aws_helpers import (
    create_secret,
    end_sessions,
    login_role,
    new_password,
    rotate_secret,
    secret_settings,
    secret_value,
    set_password,
)
from tests.pooled import admin_execute, database_alias, scratch_database

AURORA = "orca_db.backends.aurora"
SECRET = "orca/app"

#: How each alias holds its connections (all with the login in the secret).
MODES = {
    # A new connection per unit of work, as a request with CONN_MAX_AGE=0.
    "per_request": {"ENGINE": AURORA, "CONN_MAX_AGE": 0},
    "persistent": {"ENGINE": AURORA, "CONN_MAX_AGE": None},
    "django_pool": {
        "ENGINE": AURORA,
        "OPTIONS": {"pool": {"min_size": 2, "max_size": 4, "timeout": 20}},
    },
    "aurora_pool": {
        "ENGINE": "orca_db.backends.aurora_pool",
        "POOL_OPTIONS": {"POOL_SIZE": 4, "MAX_OVERFLOW": 0, "TIMEOUT": 20},
    },
}


@pytest.fixture(scope="module")
def dbname(django_db_blocker):
    with django_db_blocker.unblock(), scratch_database() as name:
        yield name


@pytest.fixture
def role(dbname, aws, django_db_blocker):
    """(role name, its password), the secret holding them."""
    password = new_password()
    with django_db_blocker.unblock(), login_role(dbname, password) as name:
        create_secret(SECRET, secret_value(name, password, dbname))
        yield name, password


def alias_for(mode: str, dbname: str) -> dict:
    if mode == "django_pool" and driver.DRIVER == "psycopg2":
        pytest.skip("Django's connection pool needs psycopg 3")
    settings = dict(MODES[mode])
    engine = settings.pop("ENGINE")
    return secret_settings(engine, dbname, SECRET, **settings)


def current_user(alias: str) -> str:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT current_user")
        return cursor.fetchone()[0]


def test_login_comes_from_the_secret_and_is_read_once(role, dbname, aws, django_db_blocker):
    name, _ = role
    with (
        django_db_blocker.unblock(),
        database_alias("from_secret", alias_for("per_request", dbname)),
    ):
        for _ in range(5):
            assert current_user("from_secret") == name
            connections["from_secret"].close()
    assert len(aws.calls("GetSecretValue")) == 1


def test_databases_host_and_name_win_over_the_secret(role, dbname, aws, django_db_blocker):
    name, password = role
    rotate_secret(SECRET, secret_value(name, password, "no_such_database", host="192.0.2.1"))
    settings = alias_for("per_request", dbname)
    settings["HOST"] = admin_settings_host()
    with django_db_blocker.unblock(), database_alias("explicit", settings):
        assert current_user("explicit") == name


def admin_settings_host() -> str:
    from tests.pooled import server_settings

    return server_settings()["HOST"]


@pytest.mark.parametrize("mode", sorted(MODES))
def test_rotation_mid_workload(mode, role, dbname, aws, django_db_blocker):
    """Three workers write through retry_atomic while the secret is rotated
    twice: each time the secret is updated, the role's password changed on
    the server and every session of the role ended, one worker's inside an
    open transaction. No error reaches the workers, every write lands once,
    and the secret is read once per rotation, not once per connection."""
    name, _ = role
    workers, per_worker, rotations = 3, 30, 2
    alias = f"rotating_{mode}"
    # Each worker stops at a third and at two thirds of its writes (worker 0
    # inside its transaction, after the INSERT) until that rotation is done.
    stops = {per_worker * r // 3: r for r in range(1, rotations + 1)}
    arrived = {r: threading.Semaphore(0) for r in stops.values()}
    rotated = {r: threading.Event() for r in stops.values()}
    errors: list[BaseException] = []
    attempts: list[str] = []

    def work(worker: int) -> None:
        try:
            for n in range(per_worker):
                label = f"{mode}-{worker}-{n}"
                stop = stops.get(n)
                if stop and worker != 0:
                    arrived[stop].release()
                    assert rotated[stop].wait(60)

                @retry_atomic(using=alias)
                def write(label=label, stop=stop):
                    attempts.append(label)
                    with connections[alias].cursor() as cursor:
                        cursor.execute("INSERT INTO ledger (name) VALUES (%s)", [label])
                        if stop and worker == 0 and not rotated[stop].is_set():
                            arrived[stop].release()
                            assert rotated[stop].wait(60)
                        cursor.execute("SELECT count(*) FROM ledger")

                write()
                if mode == "per_request":
                    connections[alias].close()
        except BaseException as error:  # reported below
            errors.append(error)
        finally:
            connections[alias].close()

    with django_db_blocker.unblock(), database_alias(alias, alias_for(mode, dbname)):
        threads = [threading.Thread(target=work, args=(w,)) for w in range(workers)]
        for thread in threads:
            thread.start()
        for rotation in sorted(rotated):
            for _ in range(workers):
                assert arrived[rotation].acquire(timeout=60), errors
            password = new_password()
            rotate_secret(SECRET, secret_value(name, password, dbname))
            set_password(name, password)
            assert end_sessions(name) >= 1
            rotated[rotation].set()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
    total = workers * per_worker
    rows = admin_execute(
        "SELECT name, count(*) FROM ledger WHERE name LIKE %s GROUP BY name",
        [f"{mode}-%"],
        dbname=dbname,
    )
    assert len(rows) == total and all(count == 1 for _, count in rows)
    # Worker 0's interrupted transactions ran again, as a whole.
    assert len(attempts) == total + rotations
    assert len(aws.calls("GetSecretValue")) == 1 + rotations


def test_login_refused_with_the_fresh_secret_is_a_clear_error(role, dbname, aws, django_db_blocker):
    """The password changed on the server but not in the secret: one
    refresh, one more login, then CredentialsRejected, at once."""
    name, password = role
    with django_db_blocker.unblock(), database_alias("stale", alias_for("per_request", dbname)):
        assert current_user("stale") == name
        connections["stale"].close()
        set_password(name, new_password())
        started = time.monotonic()
        with pytest.raises(CredentialsRejected) as raised:
            current_user("stale")
        assert time.monotonic() - started < 20  # not retried until the 60 s deadline
    message = str(raised.value)
    assert "secret 'orca/app'" in message and "not retried" in message
    assert password not in message
    # The first read and the one refresh: the retry layer did not retry it.
    assert len(aws.calls("GetSecretValue")) == 2


def test_missing_secret_is_a_clear_error(dbname, aws, django_db_blocker):
    settings = secret_settings(AURORA, dbname, "orca/nothing-here")
    with django_db_blocker.unblock(), database_alias("missing", settings):
        with pytest.raises(SecretUnavailable, match="Cannot read secret 'orca/nothing-here'"):
            current_user("missing")
    assert len(aws.calls("GetSecretValue")) == 1


def test_secret_not_in_rds_format(dbname, aws, django_db_blocker):
    create_secret("orca/plain", "hunter2-not-json")
    with (
        django_db_blocker.unblock(),
        database_alias("plain", secret_settings(AURORA, dbname, "orca/plain")),
    ):
        with pytest.raises(SecretUnavailable, match="not a JSON object") as raised:
            current_user("plain")
    assert "hunter2" not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__context__ is None
