"""``aurora_status`` against moto's RDS and CloudWatch (a real HTTP endpoint)
and the real test database.

moto keeps a Serverless v2 cluster's ``ServerlessV2ScalingConfiguration``
(min/max ACU, ``SecondsUntilAutoPause``) but never emits the
``ServerlessDatabaseCapacity`` metric and never pauses: the tests seed the
metric with ``put_metric_data``, as Aurora would report it.
"""

from __future__ import annotations

import datetime
import json

import boto3
import pytest

from orca_db.testing.postgres import free_port
from tests.test_commands import database_alias, run_command, session

CLUSTER = "orca-cluster"


@pytest.fixture
def cluster(aws):
    rds = boto3.client("rds")
    rds.create_db_cluster(
        DBClusterIdentifier=CLUSTER,
        Engine="aurora-postgresql",
        EngineVersion="16.4",
        MasterUsername="orca",
        MasterUserPassword="not-used-here",
        ServerlessV2ScalingConfiguration={
            "MinCapacity": 0,
            "MaxCapacity": 4,
            "SecondsUntilAutoPause": 600,
        },
    )
    rds.create_db_instance(
        DBInstanceIdentifier=f"{CLUSTER}-writer",
        DBClusterIdentifier=CLUSTER,
        Engine="aurora-postgresql",
        DBInstanceClass="db.serverless",
    )
    return CLUSTER


def report_capacity(acu: float, minutes_ago: int = 0) -> None:
    """A ServerlessDatabaseCapacity datapoint, as Aurora reports each minute."""
    boto3.client("cloudwatch").put_metric_data(
        Namespace="AWS/RDS",
        MetricData=[
            {
                "MetricName": "ServerlessDatabaseCapacity",
                "Dimensions": [{"Name": "DBClusterIdentifier", "Value": CLUSTER}],
                "Value": acu,
                "Timestamp": datetime.datetime.now(datetime.UTC)
                - datetime.timedelta(minutes=minutes_ago),
            }
        ],
    )


def status(alias: str, *args: str) -> tuple[dict, int]:
    out, err, code = run_command("aurora_status", "--json", "--database", alias, *args)
    return json.loads(out), code


def with_cluster(**overrides):
    return {"OPTIONS": {"aurora": {"cluster": CLUSTER}}, **overrides}


@pytest.mark.django_db
def test_paused_cluster_is_reported_and_not_woken(cluster):
    report_capacity(2.0, minutes_ago=3)
    report_capacity(0.0)
    # Nothing listens at this address: connecting would fail the command.
    with database_alias("status", HOST="127.0.0.1", PORT=str(free_port()), **with_cluster()):
        data, code = status("status")
    assert code == 0
    assert data["cluster"]["state"] == "paused" and data["cluster"]["paused"] is True
    assert data["cluster"]["status"] == "available"
    assert data["cluster"]["capacity"] == 0
    assert (data["cluster"]["min_acu"], data["cluster"]["max_acu"]) == (0, 4)
    assert data["cluster"]["seconds_until_auto_pause"] == 600
    assert data["cluster"]["engine_version"] == "16.4"
    assert data["cluster"]["writer"] == f"{CLUSTER}-writer"
    assert data["cluster"]["writer_status"] == "available"
    assert data["db"] == {
        "queried": False,
        "reason": "the cluster is paused; connecting would resume it",
    }


@pytest.mark.django_db(transaction=True)
def test_available_cluster_with_the_database_answering(cluster):
    report_capacity(0.0, minutes_ago=2)
    report_capacity(1.5)
    blocker = session()
    try:
        cursor = blocker.cursor()
        # An explicit BEGIN on an autocommit session: idle in transaction
        # from now on, which blocks a scaling point.
        cursor.execute("BEGIN")
        cursor.execute("SELECT 1")
        with database_alias("status", **with_cluster()):
            data, code = status("status")
    finally:
        blocker.close()
    assert code == 0
    assert data["cluster"]["state"] == "available" and data["cluster"]["capacity"] == 1.5
    assert data["db"]["queried"] and data["db"]["answered"]
    assert data["db"]["connections"] >= 2
    assert data["db"]["blocking"] >= 1
    kinds = {r["kind"] for s in data["db"]["sessions"] for r in s["reasons"]}
    assert "idle_in_transaction" in kinds


@pytest.mark.django_db
def test_database_not_answering_exits_1(cluster):
    report_capacity(1.0)
    with database_alias("status", HOST="127.0.0.1", PORT=str(free_port()), **with_cluster()):
        data, code = status("status", "--timeout", "5")
    assert code == 1
    assert data["db"]["queried"] and not data["db"]["answered"]
    assert data["exit_code"] == 1


@pytest.mark.django_db
def test_no_capacity_datapoint_is_unknown_not_paused(cluster):
    with database_alias("status", **with_cluster()):
        out, err, code = run_command("aurora_status", "--database", "status", "--no-database")
    assert code == 0
    assert f"Cluster {CLUSTER!r} (aurora-postgresql 16.4): available" in out
    assert "capacity: unknown" in out
    assert "range: 0-4 ACU, auto-pause after 600 s idle" in out
    assert "not queried (--no-database)" in out


@pytest.mark.django_db
def test_stopped_cluster(cluster):
    boto3.client("rds").stop_db_cluster(DBClusterIdentifier=CLUSTER)
    with database_alias("status", **with_cluster()):
        data, code = status("status", "--no-database")
    assert code == 0 and data["cluster"]["state"] == "stopped"


@pytest.mark.django_db
def test_no_cluster_configured_exits_2(aws):
    out, err, code = run_command("aurora_status", "--database", "default")
    assert code == 2
    assert "OPTIONS['aurora']['cluster']" in err


@pytest.mark.django_db
def test_unknown_cluster_exits_2(aws):
    with database_alias("status", OPTIONS={"aurora": {"cluster": "nope"}}):
        out, err, code = run_command("aurora_status", "--database", "status")
    assert code == 2
    assert "DBClusterNotFoundFault" in err and "'nope'" in err


@pytest.mark.django_db(transaction=True)
def test_aurora_wake_shows_the_cluster_resuming(cluster, aurora_simulator):
    """A paused cluster (the simulator holds connections; moto reports
    0 ACU) resumes while aurora_wake waits: its JSON carries the states it
    saw, paused -> resuming -> available."""
    import threading

    from django.db import connections

    report_capacity(0.0, minutes_ago=1)  # the last minute reported
    aurora_simulator.pause()

    def resume_when_held():
        aurora_simulator.wait_for(lambda stats: stats["holding"] >= 1, timeout=30)
        report_capacity(2.0)
        aurora_simulator.resume()

    resumer = threading.Thread(target=resume_when_held)
    resumer.start()
    base = aurora_simulator.django_settings(connections["default"].settings_dict)
    overrides = {key: base[key] for key in ("HOST", "PORT")}
    try:
        with database_alias("waking", **overrides, **with_cluster()):
            out, err, code = run_command(
                "aurora_wake", "--json", "--database", "waking", "--timeout", "60"
            )
    finally:
        resumer.join(timeout=60)
    data = json.loads(out)
    assert code == 0, err
    assert data["cluster_states"] == ["paused", "resuming", "available"]
    assert data["cluster"]["capacity"] == 2.0
