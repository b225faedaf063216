"""The one hook the backend calls for logins from AWS (docs/aws.md).

- :func:`apply_credentials` in ``get_connection_params()``: the cached
  secret's user, password (and host, port, dbname where DATABASES leaves them
  empty) and/or a current IAM token. No network call once cached.
- :func:`connect_with_credentials` around the driver connect: after a refused
  login (28P01/28000), read the secret again or mint a new token, once, and
  log in again at once; refused again, :class:`CredentialsRejected`.
- :func:`use_current_credentials` on Django's psycopg pool, whose connection
  parameters are otherwise fixed when the pool is made: the pool then asks
  for current ones for every connection it opens (psycopg_pool's callable
  ``kwargs``), and refreshes after a refused login like a plain connect.

The hooks take the host's connection object (``wrapper``): its
``retry_settings`` (the host's ``RetrySettings``, whose error table names
the classes raised), ``settings_dict`` and ``alias``. No framework is
imported here.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ..classify import driver_error
from ..drivers import sqlstate
from ..outcomes import CORE_ERRORS, ErrorTable
from .errors import CredentialsRejected
from .settings import AwsSettings

if TYPE_CHECKING:
    from .iam import IamTokens
    from .secrets import SecretCredentials

C = TypeVar("C")

# DATABASES keys that, when set, win over the same value in a secret.
_EXPLICIT = (("HOST", "host"), ("PORT", "port"), ("NAME", "dbname"))

# A refused login, as libpq reports it at connect time (no SQLSTATE reaches
# the client then); RDS words a refused IAM token "PAM authentication failed".
_LOGIN_SQLSTATES = frozenset({"28P01", "28000"})
_LOGIN_TEXT = (
    r"password authentication failed|PAM authentication failed"
    r"|authentication failed for user|role \"[^\"]*\" does not exist"
)


def is_login_failure(error: BaseException) -> bool:
    inner = driver_error(error)
    code = sqlstate(inner)
    if code is not None:
        return code in _LOGIN_SQLSTATES
    names = {cls.__name__ for cls in type(inner).__mro__}
    # Compiled on use (cached by re): only a failed connect needs it, and the
    # backend imports this module on every cold start.
    login_text = re.search(_LOGIN_TEXT, str(inner), re.IGNORECASE)
    return "OperationalError" in names and login_text is not None


class Credentials:
    """A login from a secret, IAM, or both (the secret then names user and
    host, IAM supplies the password), shared by every alias configured alike
    (orca_db_app stores events through an alias of its own)."""

    def __init__(
        self, aws: AwsSettings, explicit: frozenset[str], errors: ErrorTable = CORE_ERRORS
    ):
        # Imported here: the backend imports this module on every cold start,
        # and most databases never get this far.
        from .iam import IamTokens
        from .secrets import SecretCredentials

        self.explicit = explicit
        #: The host's table: the errors raised are its classes.
        self.errors = errors
        self.secret: SecretCredentials | None = (
            SecretCredentials(aws.secret, aws.region, errors) if aws.secret else None
        )
        self.iam: IamTokens | None = IamTokens(aws.region, errors) if aws.iam_auth else None
        # One fetch or mint at a time: many connections failing together
        # (a rotation, a scale event) cause one refresh, not one each.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Credentials secret={self.secret!r} iam={self.iam!r}>"

    def apply(self, params: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            return self._apply(params)

    def _apply(self, params: Mapping[str, Any]) -> dict[str, Any]:
        result = dict(params)
        if self.secret is not None:
            for key, value in self.secret.current().params.items():
                if key not in self.explicit:
                    result[key] = value
        if self.iam is not None:
            host, port, user = result.get("host"), result.get("port") or "5432", result.get("user")
            if not host or not user:
                raise self.errors.of(CredentialsRejected)(
                    "IAM authentication needs HOST and USER (in DATABASES or the secret)."
                )
            result["password"] = self.iam.token(str(host), str(port), str(user))
        return result

    def refresh(self, used: Mapping[str, Any]) -> None:
        """The database refused ``used``: read the secret again and mint new
        tokens, unless that already happened since ``used`` was handed out."""
        with self._lock:
            if self._apply_cached(used) != _login(used):
                return  # another connection refreshed: use what it got
            if self.iam is not None:
                self.iam.forget()
            if self.secret is not None:
                self.secret.refresh()

    def _apply_cached(self, used: Mapping[str, Any]) -> tuple[Any, Any]:
        if self.iam is not None:
            key = (str(used.get("host")), str(used.get("port") or "5432"), str(used.get("user")))
            return (used.get("user"), self.iam.cached(*key))
        login = self.secret.login if self.secret is not None else None
        if login is None:
            return (None, None)
        return (login.params.get("user"), login.params.get("password"))

    def connect(
        self, params: Mapping[str, Any], connect: Callable[[dict[str, Any]], C], alias: str
    ) -> C:
        """``connect(params)``; after a refused login, refresh and once more."""
        try:
            return connect(dict(params))
        except Exception as error:
            if not is_login_failure(error):
                raise
        self.refresh(params)
        fresh = self.apply(params)
        try:
            return connect(fresh)
        except Exception as error:
            if not is_login_failure(error):
                raise
            raise self.errors.of(CredentialsRejected)(
                self._rejected(alias, fresh, error)
            ) from error

    def _rejected(self, alias: str, params: Mapping[str, Any], error: BaseException) -> str:
        sources = []
        if self.secret is not None:
            sources.append(f"secret {self.secret.secret_id!r}")
        if self.iam is not None:
            sources.append("a new IAM token")
        reason = " ".join(str(driver_error(error)).split())
        return (
            f"Database {alias!r} refused the login of user {params.get('user')!r} "
            f"made with credentials read just now ({' and '.join(sources)}); not "
            f"retried. The server said: {reason}"
        )


def _login(params: Mapping[str, Any]) -> tuple[Any, Any]:
    return (params.get("user"), params.get("password"))


_providers: dict[tuple[AwsSettings, frozenset[str], ErrorTable], Credentials] = {}
_providers_lock = threading.Lock()


def credentials_for(wrapper: Any) -> Credentials | None:
    """The :class:`Credentials` of a host's connection object (Django's
    ``DatabaseWrapper``); ``None`` when its ``aurora`` options have neither
    ``secret`` nor ``iam_auth``."""
    retry = wrapper.retry_settings
    aws = retry.aws
    if aws is None or not aws.credentials:
        return None
    settings = wrapper.settings_dict
    explicit = frozenset(param for key, param in _EXPLICIT if settings.get(key))
    key = (aws, explicit, retry.errors)
    found = _providers.get(key)
    if found is None:
        with _providers_lock:
            found = _providers.setdefault(key, Credentials(aws, explicit, retry.errors))
    return found


def forget_credentials() -> None:
    """Drop every cached secret and token (tests; a changed AWS account)."""
    with _providers_lock:
        _providers.clear()


# ----- the hooks ----------------------------------------------------------------


def apply_credentials(wrapper: Any, params: dict[str, Any]) -> dict[str, Any]:
    provider = credentials_for(wrapper)
    return params if provider is None else provider.apply(params)


def connect_with_credentials(
    wrapper: Any, params: dict[str, Any], connect: Callable[[dict[str, Any]], C]
) -> C:
    provider = credentials_for(wrapper)
    if provider is None:
        return connect(params)
    return provider.connect(params, connect, wrapper.alias)


_POOL_MARK = "_orca_db_credentials"


def use_current_credentials(wrapper: Any, pool: Any) -> None:
    """Make a psycopg_pool ``ConnectionPool`` log in with current
    credentials. Cheap after the first call on a pool."""
    if getattr(pool, _POOL_MARK, False):
        return
    provider = credentials_for(wrapper)
    with _providers_lock:
        if getattr(pool, _POOL_MARK, False):
            return
        if provider is not None:
            # The password of the moment the pool was made stays out of it.
            static = {key: value for key, value in pool.kwargs.items() if key != "password"}
            pool.kwargs = functools.partial(provider.apply, static)
            pool.connection_class = _refreshing(pool.connection_class, provider, wrapper.alias)
        setattr(pool, _POOL_MARK, True)


def _refreshing(base: type, provider: Credentials, alias: str) -> type:
    class RefreshingConnection(base):
        """Refreshes the login once when the server refuses it."""

        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            parent = super().connect
            return provider.connect(kwargs, lambda params: parent(conninfo, **params), alias)

    RefreshingConnection.__name__ = RefreshingConnection.__qualname__ = base.__name__
    return RefreshingConnection
