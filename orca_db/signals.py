"""Signals for feeding retry events to storage, metrics and alerting.

``retry_event`` is sent once per operation that met at least one retryable
failure, after the operation settled (recovered, exhausted or raised), with
``event``: an :class:`orca_db.events.RetryEvent`. Receivers must not raise;
an exception from one is logged and swallowed so that it never reaches the
application's database call.
"""

from django.dispatch import Signal

retry_event = Signal()
