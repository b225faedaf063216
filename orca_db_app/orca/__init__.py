"""ORCA's storage schema (version 5) as Django models, migrations and
transactional services, and the demo that runs ORCA's workload through
Aurora's faults (``manage.py aurora_demo``).

An app of its own, label ``orca``: add ``"orca_db_app.orca"`` to
``INSTALLED_APPS`` (with ``"orca_db_app"``) to get the ``orca`` schema; a
project that only wants the retry events, the admin, the operations commands
and the checks installs ``"orca_db_app"`` alone. See docs/orca-schema.md.
"""
