"""SQLAlchemy's dialect compliance suite, whole and unchanged, and one test
of our own: the engine under test is the one the run asked for."""

import os

from sqlalchemy.testing import config, fixtures
from sqlalchemy.testing.suite import *  # noqa: F403


class OrcaPluginPresenceTest(fixtures.TestBase):
    def test_engine_has_the_plugin_only_when_asked(self):
        from orca_db.sqlalchemy import settings_of

        wanted = os.environ.get("ORCA_DB_SUITE_MODE") == "plugin"
        assert (settings_of(config.db) is not None) is wanted
