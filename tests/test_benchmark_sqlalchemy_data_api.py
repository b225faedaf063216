"""benchmarks/sqlalchemy_data_api.py runs end to end with a tiny N: its own
throwaway server, the simulator and the Data API endpoint in processes of
their own, and fresh processes for the cold start. The benchmark's figures
are not checked (a loaded machine), what it counts is."""

from __future__ import annotations

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("boto3")

from benchmarks import sqlalchemy_data_api


def test_the_benchmark_runs_with_a_tiny_n(capsys):
    argv = ["--iterations", "4", "--batch", "2", "--runs", "1", "--importtime-runs", "1"]
    data = sqlalchemy_data_api.main([*argv, "--no-save"])

    for operation in sqlalchemy_data_api.OPERATIONS:
        for engine in sqlalchemy_data_api.ENGINES:
            figures = data["latency"][operation][engine]
            assert figures["wall_ms"]["median"] > 0
            assert figures["cpu_ms"]["n"] == 2
    # Counted on the endpoint: one call per autocommit statement, none for a
    # pool checkout, BeginTransaction + ExecuteStatement + CommitTransaction.
    assert data["data_api_calls"] == {
        "select1": 1,
        "pk_fetch": 1,
        "insert_txn": 3,
        "connect_select1": 1,
        "dbapi_select1": 1,
    }
    cold = data["cold_start"]
    assert cold["data_api"]["boto3_loaded"] and not cold["data_api"]["psycopg_loaded"]
    assert cold["psycopg"]["psycopg_loaded"] and not cold["psycopg"]["boto3_loaded"]
    assert cold["data_api"]["importtime_self_ms"]["botocore"] > 0
    assert cold["boto3_alone_ms"]["import_boto3"]["n"] == 1
    printed = capsys.readouterr().out
    assert f"$ python -m benchmarks.sqlalchemy_data_api {' '.join(argv)} --no-save" in printed
    assert "begin + INSERT + commit" in printed
