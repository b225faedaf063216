"""SQLAlchemy's own pytest plugin, as third-party dialects load it: the
compliance suite (``sqlalchemy.testing.suite``) runs against the URL given
with ``--dburi`` (scripts/sqlalchemy_suite.py gives it, with or without
``?plugin=orca_db``)."""

import pytest

pytest.register_assert_rewrite("sqlalchemy.testing.assertions")

from sqlalchemy.testing.plugin.pytestplugin import *  # noqa: E402,F403
