"""What PostgreSQL 15 supports, for SQLAlchemy's compliance suite.

``SuiteRequirements`` leaves most features closed (their tests skipped);
these are the ones PostgreSQL has, opened so that the suite exercises them.
The same requirements serve the stock dialect and the orca_db plugin, so
their results compare."""

import os

import sqlalchemy
from sqlalchemy.testing import exclusions
from sqlalchemy.testing.requirements import SuiteRequirements

_OPEN = (
    "create_table_as",
    "create_temp_table_as",
    "table_ddl_if_exists",
    "index_ddl_if_exists",
    "uuid_data_type",
    "deferrable_fks",
    "boolean_col_expressions",
    "nullsordering",
    "intersect",
    "except_",
    "window_functions",
    "window_range",
    "window_range_numeric",
    "window_range_non_numeric",
    "ctes",
    "views",
    "cross_schema_fk_reflection",
    "reflects_pk_names",
    "comment_reflection",
    "schema_create_delete",
    "foreign_key_constraint_option_reflection_ondelete",
    "fk_constraint_option_reflection_ondelete_restrict",
    "fk_constraint_option_reflection_ondelete_noaction",
    "foreign_key_constraint_option_reflection_onupdate",
    "fk_constraint_option_reflection_onupdate_restrict",
    "temp_table_names",
    "unique_constraints_reflect_as_index",
    "has_temp_table",
    "temporary_views",
    "create_or_replace_view",
    "inline_check_constraint_reflection",
    "check_constraint_reflection",
    "autocommit",
    "array_type",
    "json_type",
    "server_defaults",
    "infinity_floats",
    "savepoints",
    "update_from",
    "delete_from",
    "mod_operator_as_percent_sign",
    "supports_distinct_on",
    "identity_columns",
    "regexp_match",
    "regexp_replace",
    "fetch_first",
    "fetch_ties",
    "fetch_no_order_by",
    "materialized_views",
    "supports_bitwise_or",
    "supports_bitwise_and",
    "supports_bitwise_not",
    "supports_bitwise_xor",
    "supports_bitwise_shift",
)
# SQLAlchemy 2.0's reflection tests expect no table options from PostgreSQL.
if tuple(int(part) for part in sqlalchemy.__version__.split(".")[:2]) >= (2, 1):
    _OPEN += ("reflect_table_options",)


#: What the RDS Data API cannot do, closed for the Data API dialect's run
#: (scripts/sqlalchemy_suite.py --data-api), with the reason. Single tests
#: it cannot pass are listed in data_api_known.py.
DATA_API_CLOSED = {
    # Outside a transaction each call may run on another of the Data API's
    # sessions: a temporary table or view made by one call is not there for
    # the next (inside a transaction it lives until the commit).
    "temporary_tables": "temporary objects do not outlive their call",
    "temp_table_reflection": "temporary objects do not outlive their call",
    "temp_table_names": "temporary objects do not outlive their call",
    "has_temp_table": "temporary objects do not outlive their call",
    "temporary_views": "temporary objects do not outlive their call",
    "create_temp_table_as": "temporary objects do not outlive their call",
    # No server-side cursors: each result comes back whole.
    "server_side_cursors": "no server-side cursors",
}


def _open(self):
    return exclusions.open()


def _closed_for(reason):
    return property(lambda self: exclusions.closed())


_members = {name: property(_open) for name in _OPEN}
if os.environ.get("ORCA_DB_SUITE_MODE") == "data_api":
    _members.update({name: _closed_for(why) for name, why in DATA_API_CLOSED.items()})

Requirements = type("Requirements", (SuiteRequirements,), _members)
