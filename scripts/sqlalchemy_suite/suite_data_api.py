"""The Data API dialect as the compliance suite's URL finds it: the suite
gives a URL only, so the ``aurora`` settings come from the environment
(``ORCA_DB_SUITE_AURORA``, JSON, set by scripts/sqlalchemy_suite.py with the
local endpoint's cluster and secret)."""

import json
import os

from orca_db.sqlalchemy.data_api import AuroraDataApiDialect


class SuiteDialect(AuroraDataApiDialect):
    supports_statement_cache = True

    def __init__(self, aurora=None, **kwargs):
        if aurora is None:
            aurora = json.loads(os.environ["ORCA_DB_SUITE_AURORA"])
        super().__init__(aurora=aurora, **kwargs)
