"""IAM database authentication tokens, minted with boto3 and reused.

A token is a SigV4-presigned request, signed locally (no network call) with
the credentials of the standard chain, valid for 15 minutes. It is reused
until :data:`REUSE_SECONDS` have passed, so a connect never carries a token
close to expiry (a connect to a paused cluster can itself take 30 s and
more), and minted again at once after a refused login.
"""

from __future__ import annotations

import time

from ..outcomes import CORE_ERRORS, ConfigurationError, ErrorTable
from .clients import client, error_text
from .errors import TokenUnavailable

__all__ = ["REUSE_SECONDS", "TOKEN_LIFETIME", "IamTokens", "TokenUnavailable"]

#: Tokens are valid this long after they are minted (RDS's fixed lifetime).
TOKEN_LIFETIME = 15 * 60
#: How long a token is handed out; the rest of its lifetime is margin.
REUSE_SECONDS = 10 * 60

# The clock tokens are dated by (wall time, as their X-Amz-Date); a test
# replaces it to let time pass.
now = time.time


class IamTokens:
    """The current token of each (host, port, user). Not thread-safe by
    itself: the caller serialises minting."""

    def __init__(self, region: str | None, errors: ErrorTable = CORE_ERRORS):
        self.region = region
        #: The host's table: the errors raised are its classes.
        self.errors = errors
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        #: Tokens minted so far.
        self.mints = 0

    def __repr__(self) -> str:
        return f"<IamTokens region={self.region!r} mints={self.mints}>"

    def token(self, host: str, port: str, user: str) -> str:
        key = (host, str(port), user)
        found = self._tokens.get(key)
        if found is not None and now() < found[1]:
            return found[0]
        token = self._mint(*key)
        self._tokens[key] = (token, now() + REUSE_SECONDS)
        return token

    def cached(self, host: str, port: str, user: str) -> str | None:
        """The token :meth:`token` would hand out now without minting."""
        found = self._tokens.get((host, str(port), user))
        return found[0] if found is not None and now() < found[1] else None

    def forget(self) -> None:
        """Mint new tokens from now on (the database refused one)."""
        self._tokens.clear()

    def _mint(self, host: str, port: str, user: str) -> str:
        self.mints += 1
        try:
            rds = client("rds", self.region, self.errors)
            return rds.generate_db_auth_token(
                DBHostname=host, Port=int(port), DBUsername=user, Region=rds.meta.region_name
            )
        except ConfigurationError:
            raise  # boto3 missing, no region: the message says what to set
        except Exception as error:
            raise self.errors.of(TokenUnavailable)(
                f"Cannot mint an IAM authentication token "
                f"for user {user!r} at {host}:{port} ({error_text(error)})."
            ) from None
