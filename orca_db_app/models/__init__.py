"""The app's models: retry events (``events``) and ORCA's storage schema
(``orca``)."""

from .events import RetryEvent

__all__ = ["RetryEvent"]
