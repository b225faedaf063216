"""orca-db for SQLAlchemy: the ``orca_db`` engine plugin (docs/sqlalchemy.md).

    engine = create_engine(url, plugins=["orca_db"], aurora={"deadline": 60})

Needs the ``sqlalchemy`` extra (``pip install orca-db[sqlalchemy]``).
"""

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from .aws_lambda import lambda_handler
    from .transactions import run_transaction

#: Loaded when first used: an engine with the plugin alone needs neither.
_LAZY = {"lambda_handler": ".aws_lambda", "run_transaction": ".transactions"}

__all__ = [
    "DeadlineExceeded",
    "OrcaPlugin",
    "OutcomeUnknown",
    "RetriesExhausted",
    "ScaleEventError",
    "SessionStateLost",
    "TransactionRolledBack",
    "WriteDeadlineExceeded",
    "lambda_handler",
    "run_transaction",
    "settings_of",
    "use_opentelemetry",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
