"""Receivers of ``orca_db.signals.retry_event``."""
