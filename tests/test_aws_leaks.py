"""No secret value (a password from Secrets Manager, an IAM token) appears in
logs, retry events, exceptions, reprs or the commands' --json output, through
a rotation, a refused login, and the commands run against the same alias."""

from __future__ import annotations

import json
import logging
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
from django.db import connections

from orca_db import retry_atomic
from orca_db.aws.credentials import CredentialsRejected, credentials_for
from orca_db.testing.aws import ACCESS_KEY, REGION, SECRET_KEY
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
from tests.iam_front import IamFrontDoor
from tests.pooled import database_alias, scratch_database
from tests.test_commands import run_command

LOGGERS = ("orca_db", "django.db", "psycopg", "psycopg2", "sqlalchemy", "dj_db_conn_pool")


def texts_of(error: BaseException | None) -> list[str]:
    """str and repr of an exception and of everything chained to it."""
    found = []
    while error is not None:
        found += [str(error), repr(error), repr(getattr(error, "args", ()))]
        error = error.__cause__ or error.__context__
    return found


@pytest.fixture
def captured(caplog, events):
    caplog.set_level(logging.INFO)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog, events


def test_secrets_never_leak(aws, captured, django_db_blocker):
    caplog, events = captured
    secrets_seen: list[str] = []
    outputs: list[str] = []
    boto3.client("rds").create_db_cluster(
        DBClusterIdentifier="leaks", Engine="aurora-postgresql", MasterUsername="orca",
        MasterUserPassword="not-a-secret-here",
    )  # fmt: skip
    with django_db_blocker.unblock(), scratch_database() as dbname:
        first = new_password()
        secrets_seen.append(first)
        with login_role(dbname, first) as role:
            create_secret("orca/leaks", secret_value(role, first, dbname))
            settings = secret_settings(
                "orca_db.backends.aurora", dbname, "orca/leaks",
                OPTIONS={"aurora": {"cluster": "leaks"}},
            )  # fmt: skip
            with database_alias("leaky", settings):

                @retry_atomic(using="leaky")
                def write():
                    with connections["leaky"].cursor() as cursor:
                        cursor.execute("INSERT INTO ledger (name) VALUES ('leak-test')")

                write()
                # A rotation with every session ended: retry events, a refresh.
                second = new_password()
                secrets_seen.append(second)
                rotate_secret("orca/leaks", secret_value(role, second, dbname))
                set_password(role, second)
                end_sessions(role)
                write()
                outputs.append(repr(credentials_for(connections["leaky"])))
                outputs.append(repr(connections["leaky"]))
                outputs.append(repr(connections["leaky"].connection))
                # The server's password changes behind the secret's back.
                connections["leaky"].close()
                third = new_password()
                secrets_seen.append(third)
                set_password(role, third)
                with pytest.raises(CredentialsRejected) as raised:
                    write()
                outputs += texts_of(raised.value)
                for command in ("aurora_status", "aurora_wake"):
                    out, err, code = run_command(
                        command, "--json", "--database", "leaky", "--timeout", "5"
                    )
                    assert code == 2, (command, out, err)
                    assert json.loads(out)  # JSON on stdout even on failure
                    outputs += [out, err]

        # IAM: the tokens that reached the server.
        from orca_db.testing.postgres import shared_server

        server = shared_server()
        door = IamFrontDoor(
            str(server.base), server.port, region=REGION, access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
        )  # fmt: skip
        try:
            with login_role(dbname, "unused") as role:
                iam = {
                    "ENGINE": "orca_db.backends.aurora", "NAME": dbname, "USER": role,
                    "PASSWORD": "", "HOST": "127.0.0.1", "PORT": str(door.port),
                    "OPTIONS": {"aurora": {"iam_auth": True}},
                }  # fmt: skip
                with database_alias("iam_leaky", iam):
                    connections["iam_leaky"].ensure_connection()
                    connections["iam_leaky"].close()
                    door.expire_tokens()  # one refused token, then a new one
                    connections["iam_leaky"].ensure_connection()
                    outputs.append(repr(credentials_for(connections["iam_leaky"])))
        finally:
            door.close()
    tokens = door.accepted + [token for token, _ in door.rejected]
    assert len(set(tokens)) == 2
    for token in tokens:
        secrets_seen.append(token)
        secrets_seen.append(dict(parse_qsl(urlsplit("https://" + token).query))["X-Amz-Signature"])

    texts = outputs + [record.getMessage() for record in caplog.records]
    texts += [caplog.text]
    texts += [repr(event) for event in events] + [str(event) for event in events]
    for record in caplog.records:
        if record.exc_info:
            texts += texts_of(record.exc_info[1])
    assert events, "the rotation should have produced retry events"
    assert any("refused the login" in text for text in texts)
    for secret in secrets_seen:
        leaks = [text for text in texts if secret in text]
        assert not leaks, f"a secret value appears in: {leaks[0][:300]}"
