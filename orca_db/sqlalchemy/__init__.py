"""orca-db for SQLAlchemy: the ``orca_db`` engine plugin (docs/sqlalchemy.md).

    engine = create_engine(url, plugins=["orca_db"], aurora={"deadline": 60})

Needs the ``sqlalchemy`` extra (``pip install orca-db[sqlalchemy]``).
"""

from .exc import OutcomeUnknown, RetriesExhausted, ScaleEventError, TransactionRolledBack
from .plugin import OrcaPlugin, settings_of

__all__ = [
    "OrcaPlugin",
    "OutcomeUnknown",
    "RetriesExhausted",
    "ScaleEventError",
    "TransactionRolledBack",
    "settings_of",
]
