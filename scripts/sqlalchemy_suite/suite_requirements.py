"""What PostgreSQL 15 supports, for SQLAlchemy's compliance suite.

``SuiteRequirements`` leaves most features closed (their tests skipped);
these are the ones PostgreSQL has, opened so that the suite exercises them.
The same requirements serve the stock dialect and the orca_db plugin, so
their results compare."""

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


def _open(self):
    return exclusions.open()


Requirements = type(
    "Requirements",
    (SuiteRequirements,),
    {name: property(_open) for name in _OPEN},
)
