"""Which Data API errors a retry can cure, and which prove that nothing
ran: the Data API's facts, which ``orca_db.classify.classify`` hands its
errors to: registered with it (``register_transport``) when the package
``orca_db.data_api`` is imported (docs/data-api.md#errors).

A Data API call fails before anything runs when the service refuses it:
the database was paused (``DatabaseResumingException``: the call only woke
it), the call was throttled, or the HTTPS connection could not be made.
It fails with its outcome unknown when the answer never arrived (the
connection closed or timed out, or a 5xx from the service, which may have
run it). A transaction that is gone (``TransactionNotFoundException``) was
rolled back by the server: nothing of it committed.
"""

from __future__ import annotations

import re
from typing import Final

from orca_db.classify import Failure, register_transport
from orca_db.data_api import errors

# Statements the server itself aborted as its session ended (a scale event
# relayed as a DatabaseErrorException): as for the connection engines, an
# interrupt check, never between a COMMIT and its reply.
_PROOF_SQLSTATES: Final = frozenset({"57P01", "57P03"})
_RETRYABLE_SQLSTATES: Final = frozenset({"57P01", "57P02", "57P03", "53300"})
# JDBC writes PostgreSQL's DETAIL (row values) as "Detail:"; never logged.
_DETAIL: Final = re.compile(r"\n?\s*(?:Detail|Where|Hint):.*", re.DOTALL | re.IGNORECASE)


def classify_data_api(inner: errors.Error) -> Failure:
    """What a Data API error (already unwrapped) means for a retry."""
    from orca_db.sql import scrub_message  # loaded with the first failure

    message = scrub_message(_DETAIL.sub("", str(inner)))
    error_type = inner.aws_code or type(inner).__name__
    if isinstance(inner, errors.DatabaseError) and inner.aws_code == "DatabaseErrorException":
        error_type = type(inner).__name__  # the SQL error's class, as psycopg names it
    sqlstate = inner.sqlstate
    if isinstance(inner, (errors.DatabaseResumingException, errors.ThrottlingException)):
        # A cluster waking, a service shedding load: every client of it meets
        # the same, so back off as in a resume storm (spread out, longer).
        return Failure(True, True, error_type, sqlstate, message, storm=True)
    if isinstance(inner, errors.EndpointUnreachable):
        return Failure(True, True, error_type, sqlstate, message)
    if isinstance(inner, errors.TransactionNotFoundException):
        return Failure(True, True, error_type, sqlstate, message)
    if isinstance(inner, errors.ReplyLost):
        return Failure(True, False, error_type, sqlstate, message)
    if sqlstate in _RETRYABLE_SQLSTATES or (sqlstate or "").startswith("08"):
        return Failure(True, sqlstate in _PROOF_SQLSTATES, error_type, sqlstate, message)
    # Serialization failure, deadlock: the server rolled the transaction
    # back; retry_atomic runs it again (the core's rule), nothing else does.
    conflict = sqlstate in ("40001", "40P01")
    return Failure(False, False, error_type, sqlstate, message, conflict=conflict)


register_transport(errors.Error, classify_data_api)
