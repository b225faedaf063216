"""Signals for feeding retry events to storage, metrics and alerting.

``retry_event`` is sent once per operation that met at least one retryable
failure, after the operation settled (recovered, exhausted or raised), with
``event``: an :class:`orca_db.events.SettledEvent`. Receivers must not raise;
an exception from one is logged and swallowed so that it never reaches the
application's database call.

``invocation_finished`` is sent by ``orca_db.aws_lambda.database_handler``
after each invocation's handler returned (or raised), while what is left
of the function's time still bounds every retry: ``orca_db_app`` writes the
events it had to defer then, if there is time.
"""

from django.dispatch import Signal

retry_event = Signal()
invocation_finished = Signal()
