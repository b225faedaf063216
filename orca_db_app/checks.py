"""System checks, ids ``orca_db.E###`` / ``orca_db.W###`` (docs/checks.md)."""
