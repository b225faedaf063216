"""The app's models: retry events (``events``). ORCA's storage models are
in ``orca_db_app.orca.models`` (the app ``orca_db_app.orca``)."""

from __future__ import annotations

from .events import RetryEvent

__all__ = ["RetryEvent"]
