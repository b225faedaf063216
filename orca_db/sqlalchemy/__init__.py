"""orca-db for SQLAlchemy: the ``orca_db`` engine plugin (docs/sqlalchemy.md).

    engine = create_engine(url, plugins=["orca_db"], aurora={"deadline": 60})

Needs the ``sqlalchemy`` extra (``pip install orca-db[sqlalchemy]``).
"""

from .exc import (
    DeadlineExceeded,
    OutcomeUnknown,
    RetriesExhausted,
    ScaleEventError,
    SessionStateLost,
    TransactionRolledBack,
    WriteDeadlineExceeded,
)
from .plugin import OrcaPlugin, settings_of
from .telemetry import use_opentelemetry

__all__ = [
    "DeadlineExceeded",
    "OrcaPlugin",
    "OutcomeUnknown",
    "RetriesExhausted",
    "ScaleEventError",
    "SessionStateLost",
    "TransactionRolledBack",
    "WriteDeadlineExceeded",
    "settings_of",
    "use_opentelemetry",
]
