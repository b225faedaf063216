"""SQLAlchemy's own pytest plugin, as third-party dialects load it: the
compliance suite (``sqlalchemy.testing.suite``) runs against the URL given
with ``--dburi`` (scripts/sqlalchemy_suite.py gives it, with or without
``?plugin=orca_db``)."""

import os

import pytest

pytest.register_assert_rewrite("sqlalchemy.testing.assertions")

from sqlalchemy.testing.plugin.pytestplugin import *  # noqa: E402,F403

if os.environ.get("ORCA_DB_SUITE_MODE") == "data_api":
    # postgresql+aurora_data_api with the local endpoint's settings, and the
    # tests it cannot pass marked with their reasons (data_api_known.py).
    from sqlalchemy.dialects import registry

    registry.register("postgresql.aurora_data_api", "suite_data_api", "SuiteDialect")

    def pytest_collection_modifyitems(config, items):
        from data_api_known import mark

        mark(items)
