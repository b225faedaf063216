"""orca-db for SQLAlchemy: the ``orca_db`` engine plugin (docs/sqlalchemy.md).

    engine = create_engine(url, plugins=["orca_db"], aurora={"deadline": 60})

Needs the ``sqlalchemy`` extra (``pip install orca-db[sqlalchemy]``).
"""

from .exc import OutcomeUnknown, RetriesExhausted, ScaleEventError, TransactionRolledBack
from .plugin import OrcaPlugin, settings_of
from .aws_lambda import lambda_handler
from .transactions import run_transaction

__all__ = [
    "OrcaPlugin",
    "OutcomeUnknown",
    "RetriesExhausted",
    "ScaleEventError",
    "TransactionRolledBack",
    "lambda_handler",
    "run_transaction",
    "settings_of",
]
