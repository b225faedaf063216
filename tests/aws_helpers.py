"""Helpers for the orca_db.aws tests: a login role of their own on the test
server, secrets in moto, connection aliases whose credentials come from AWS."""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Iterator
from typing import Any

import boto3

from tests.pooled import admin_execute, server_settings


def new_password() -> str:
    return "pw-" + secrets.token_hex(12)


@contextlib.contextmanager
def login_role(dbname: str, password: str) -> Iterator[str]:
    """A role that may log in to ``dbname`` and write its tables; dropped
    after (its sessions ended first)."""
    name = f"orca_aws_{secrets.token_hex(4)}"
    admin_execute(f"CREATE ROLE {name} LOGIN PASSWORD %s", [password])
    admin_execute(
        f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {name};"
        f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {name}",
        dbname=dbname,
    )
    try:
        yield name
    finally:
        end_sessions(name)
        admin_execute(f"DROP OWNED BY {name}", dbname=dbname)
        admin_execute(f"DROP ROLE IF EXISTS {name}")


def set_password(role: str, password: str) -> None:
    admin_execute(f"ALTER ROLE {role} PASSWORD %s", [password])


def end_sessions(role: str) -> int:
    """Terminate every session of ``role`` (as a rotation's clean-up or a
    scale event would) and wait until they are gone."""
    from orca_db.testing.postgres import PostgresServer

    killed = admin_execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = %s", [role]
    )[0][0]
    PostgresServer.wait_for(
        lambda: (
            admin_execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", [role])[0][0]
            == 0
        ),
        timeout=10,
    )
    return killed


def secret_value(user: str, password: str, dbname: str, **extra: Any) -> str:
    server = server_settings()
    return json.dumps(
        {
            "engine": "postgres",
            "username": user,
            "password": password,
            "host": server["HOST"],
            "port": int(server["PORT"]),
            "dbname": dbname,
            **extra,
        }
    )


def create_secret(name: str, value: str) -> str:
    return boto3.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]


def rotate_secret(name: str, value: str) -> None:
    boto3.client("secretsmanager").put_secret_value(SecretId=name, SecretString=value)


def secret_settings(engine: str, dbname: str, secret: str, **extra: Any) -> dict[str, Any]:
    """An alias whose login (user, password, host, port) is the secret's:
    DATABASES names only the database."""
    options = extra.pop("OPTIONS", {})
    return {
        "ENGINE": engine,
        "NAME": dbname,
        "USER": "",
        "PASSWORD": "",
        "HOST": "",
        "PORT": "",
        **extra,
        "OPTIONS": {**options, "aurora": {"secret": secret, **options.get("aurora", {})}},
    }
