"""What Django's own test suite may expect of the Data API engine.

``scripts/django_suite.py --engine data_api`` runs Django's tests on this
engine through the local Data API endpoint; each test that fails here and
passes on the stock backend is listed below with its reason
(docs/compatibility.md#the-data-api-engine). Every one is a test of what
the Data API does not have: connections, server-side cursors, COPY, a
session that outlives a call, an untyped string.
"""

import django
from django.db.backends.postgresql import features as postgresql
from django.db.backends.postgresql.psycopg_any import is_psycopg3
from django.utils.functional import cached_property

_POSTGRESQL_TESTS = "backends.postgresql.tests.Tests."
_SERVER_SIDE_CURSORS = "backends.postgresql.test_server_side_cursors.ServerSideCursorsPostgres."

EXPECTED_FAILURES: dict[str, set[str]] = {
    "No server-side cursors: a Data API call returns its whole result, so no "
    "named cursor shows in pg_cursors.": {
        _SERVER_SIDE_CURSORS + name
        for name in (
            "test_server_side_cursor",
            "test_server_side_cursor_many_cursors",
            "test_server_side_cursors_setting",
            "test_values",
            "test_values_list",
            "test_values_list_fields_not_equal_to_names",
            "test_values_list_flat",
        )
    },
    "No connection to configure: these tests read or set a psycopg connection's "
    "session (role, time zone, client encoding, cursor factory) or its "
    "internals (connection.info), and OPTIONS a connection takes.": {
        _POSTGRESQL_TESTS + name
        for name in (
            "test_bypass_role_configuration",
            "test_bypass_timezone_configuration",
            "test_client_encoding_utf8_enforce",
            "test_connect_and_rollback",
            "test_connect_custom_cursor_factory",
            "test_connect_role",
        )
    },
    "The Data API session's time zone is the cluster's (UTC) and cannot be set "
    "per call: with USE_TZ = False, naive datetimes are not read in TIME_ZONE "
    "(orca_db.W051).": {
        "postgres_tests.test_ranges.TestRangeContainsLookup.test_datetime_range_contains",
    },
    "A Data API string parameter is a varchar (JDBC underneath), and "
    'setweight() takes a "char": psycopg\'s untyped strings fit it.': {
        "postgres_tests.test_search.TestRankingAndWeights.test_ranked_custom_weights",
        "postgres_tests.test_search.TestRankingAndWeights.test_weights_in_vector",
    },
}

EXPECTED_FAILURES_PSYCOPG3: dict[str, set[str]] = {
    "No connection pool (OPTIONS['pool'] is refused: there is no connection to pool).": {
        _POSTGRESQL_TESTS + name
        for name in (
            "test_connect_pool",
            "test_connect_pool_set_to_true",
            "test_connect_pool_with_timezone",
            "test_pooling_health_checks",
            "test_pooling_not_support_persistent_connections",
        )
    },
    "No server-side binding, cursors or COPY: OPTIONS['server_side_binding'] is "
    "refused, and the Data API has no COPY.": {
        _SERVER_SIDE_CURSORS + "test_server_side_binding",
        _POSTGRESQL_TESTS + "test_connect_server_side_binding",
        _POSTGRESQL_TESTS + "test_copy_cursors",
    },
}

if django.VERSION >= (6, 1):
    EXPECTED_FAILURES_PSYCOPG3["No connection pool (Django 6.1's pool tests)."] = {
        _POSTGRESQL_TESTS + "test_pool_check_can_be_overridden",
        _POSTGRESQL_TESTS + "test_pool_options_not_mutated",
    }

EXPECTED_FAILURES_PSYCOPG2: dict[str, set[str]] = {
    "No COPY over the Data API, and no psycopg2 pool message (OPTIONS['pool'] is "
    "refused by this engine whatever the driver).": {
        _POSTGRESQL_TESTS + "test_copy_to_expert_cursors",
        _POSTGRESQL_TESTS + "test_connect_pool_setting_ignored_for_psycopg2",
    },
}


class DatabaseFeatures(postgresql.DatabaseFeatures):
    # Rows come back whole (the Data API has no server-side cursors): a
    # "chunked" read is one call.
    can_use_chunked_reads = False

    @cached_property
    def django_test_expected_failures(self) -> set[str]:  # type: ignore[override]
        expected = set(super().django_test_expected_failures)
        driver = EXPECTED_FAILURES_PSYCOPG3 if is_psycopg3 else EXPECTED_FAILURES_PSYCOPG2
        for tests in (*EXPECTED_FAILURES.values(), *driver.values()):
            expected |= tests
        return expected

    @cached_property
    def django_test_skips(self) -> dict[str, set[str]]:  # type: ignore[override]
        return dict(super().django_test_skips)
