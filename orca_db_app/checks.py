"""System checks, ids ``orca_db.E###`` / ``orca_db.W###`` (docs/checks.md)."""

from . import checks_pool  # noqa: F401  (orca_db.W030, pooling on Lambda)
