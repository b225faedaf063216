"""Database credentials from a Secrets Manager secret, cached in memory.

The secret is read once and kept: a connect makes no network call. It is
read again only when the database refused a login with the cached value
(:meth:`SecretCredentials.refresh`), once for all the connections that
failed with that value, however many there were.

Why not AWS's ``aws-secretsmanager-caching``: it re-reads the secret on a
timer (a network call on some connect every hour, whether or not anything
changed), a forced refresh (``refresh_secret_now``) sleeps 2.5-5 s first and
refreshes again for every caller, and each refresh costs a DescribeSecret as
well as a GetSecretValue (one more IAM permission). Refreshing on the
database's own verdict needs none of that.
"""

from __future__ import annotations

import json
from typing import Any

from ..outcomes import CORE_ERRORS, ConfigurationError, ErrorTable
from .clients import client, error_text, region_from_arn
from .errors import SecretUnavailable

__all__ = ["SECRET_TO_PARAM", "Login", "SecretCredentials", "SecretUnavailable"]

#: The keys of the RDS secret format a connection uses, and the driver
#: parameter each one sets.
SECRET_TO_PARAM = {"username": "user", "password": "password", "host": "host",
                   "port": "port", "dbname": "dbname"}  # fmt: skip


class Login:
    """Driver parameters read from a secret. Its ``repr`` hides them."""

    __slots__ = ("params", "version")

    def __init__(self, params: dict[str, Any], version: str | None):
        self.params = params
        self.version = version

    def __repr__(self) -> str:
        return f"<Login user={self.params.get('user')!r} version={self.version!r}>"


class SecretCredentials:
    """The login kept in one secret, read on first use and after a refused
    login. Not thread-safe by itself: the caller serialises fetches."""

    def __init__(self, secret_id: str, region: str | None, errors: ErrorTable = CORE_ERRORS):
        self.secret_id = secret_id
        #: The host's table: the errors raised are its classes.
        self.errors = errors
        self.region = region_from_arn(secret_id) or region
        self.login: Login | None = None
        #: GetSecretValue calls made (each one a network round trip).
        self.fetches = 0

    def __repr__(self) -> str:
        return f"<SecretCredentials {self.secret_id!r} fetches={self.fetches}>"

    def current(self) -> Login:
        if self.login is None:
            self.login = self.fetch()
        return self.login

    def refresh(self) -> Login:
        self.login = self.fetch()
        return self.login

    def fetch(self) -> Login:
        self.fetches += 1
        try:
            response = client("secretsmanager", self.region, self.errors).get_secret_value(
                SecretId=self.secret_id
            )
        except ConfigurationError:
            raise  # boto3 missing, no region: the message says what to set
        except Exception as error:
            raise self.errors.of(SecretUnavailable)(
                f"Cannot read secret {self.secret_id!r} from Secrets Manager ({error_text(error)})."
            ) from None
        return Login(self._params(response.get("SecretString")), response.get("VersionId"))

    def _params(self, text: Any) -> dict[str, Any]:
        # Never chain or quote the parse error: it carries the secret's text.
        try:
            values = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            values = None
        if not isinstance(values, dict):
            raise self.errors.of(SecretUnavailable)(
                f"Secret {self.secret_id!r} is not a JSON "
                f"object in the RDS format (username, password, host, port, dbname)."
            )
        missing = [key for key in ("username", "password") if not values.get(key)]
        if missing:
            raise self.errors.of(SecretUnavailable)(
                f"Secret {self.secret_id!r} has no {' or '.join(repr(key) for key in missing)}."
            )
        params = {
            param: values[key]
            for key, param in SECRET_TO_PARAM.items()
            if values.get(key) not in (None, "")
        }
        if "port" in params:
            params["port"] = str(params["port"])
        return params
