"""The cluster's own view of its state: the RDS API and CloudWatch.

``DescribeDBClusters`` gives status, engine version and the Serverless v2
capacity range with ``SecondsUntilAutoPause``; ``DescribeDBInstances`` the
writer's status; CloudWatch's ``ServerlessDatabaseCapacity`` the capacity
now. A paused v2 cluster still reads ``available``: capacity 0 is what says
it is paused. CloudWatch datapoints are per minute and arrive late, so the
capacity is that of the last minute reported (``capacity_at``).
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from .clients import client, error_text
from .settings import AwsSettings

#: How far back to look for the last capacity datapoint.
CAPACITY_WINDOW = datetime.timedelta(minutes=15)


class ClusterUnavailable(Exception):
    """The RDS API or CloudWatch could not be asked (permissions, no such
    cluster, no endpoint)."""


@dataclasses.dataclass(frozen=True)
class ClusterStatus:
    identifier: str
    #: RDS's status: ``available``, ``stopped``, ``starting``, ``modifying``...
    status: str
    engine: str | None
    engine_version: str | None
    min_acu: float | None
    max_acu: float | None
    seconds_until_auto_pause: int | None
    #: ACUs in the last reported minute; ``None``: no datapoint in the window.
    capacity: float | None
    capacity_at: datetime.datetime | None
    writer: str | None
    writer_status: str | None

    @property
    def paused(self) -> bool:
        return self.status == "available" and self.capacity == 0

    @property
    def state(self) -> str:
        """``paused`` for an available cluster at 0 ACU, else RDS's status."""
        return "paused" if self.paused else self.status

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["state"] = self.state
        data["paused"] = self.paused
        return data


def cluster_status(aws: AwsSettings, *, now: datetime.datetime | None = None) -> ClusterStatus:
    """Ask RDS and CloudWatch about ``aws.cluster``."""
    if not aws.cluster:
        raise ValueError("no cluster configured")
    try:
        rds = client("rds", aws.region)
        cluster = rds.describe_db_clusters(DBClusterIdentifier=aws.cluster)["DBClusters"][0]
        writer = next(
            (m["DBInstanceIdentifier"] for m in cluster.get("DBClusterMembers", [])
             if m.get("IsClusterWriter")),
            None,
        )  # fmt: skip
        writer_status = None
        if writer is not None:
            instances = rds.describe_db_instances(DBInstanceIdentifier=writer)["DBInstances"]
            writer_status = instances[0].get("DBInstanceStatus") if instances else None
        capacity, capacity_at = _capacity(aws, now or datetime.datetime.now(datetime.UTC))
    except ClusterUnavailable:
        raise
    except Exception as error:
        raise ClusterUnavailable(
            f"Cannot read the state of cluster {aws.cluster!r}: {error_text(error)}"
        ) from None
    scaling = cluster.get("ServerlessV2ScalingConfiguration") or {}
    return ClusterStatus(
        identifier=aws.cluster,
        status=cluster.get("Status", "unknown"),
        engine=cluster.get("Engine"),
        engine_version=cluster.get("EngineVersion"),
        min_acu=scaling.get("MinCapacity"),
        max_acu=scaling.get("MaxCapacity"),
        seconds_until_auto_pause=scaling.get("SecondsUntilAutoPause"),
        capacity=capacity,
        capacity_at=capacity_at,
        writer=writer,
        writer_status=writer_status,
    )


def _capacity(
    aws: AwsSettings, now: datetime.datetime
) -> tuple[float | None, datetime.datetime | None]:
    response = client("cloudwatch", aws.region).get_metric_statistics(
        Namespace="AWS/RDS",
        MetricName="ServerlessDatabaseCapacity",
        Dimensions=[{"Name": "DBClusterIdentifier", "Value": aws.cluster}],
        StartTime=now - CAPACITY_WINDOW,
        # The current minute's datapoint is within [start, end) only with an
        # end past it; CloudWatch accepts an end in the future.
        EndTime=now + datetime.timedelta(minutes=1),
        Period=60,
        Statistics=["Average"],
    )
    points = sorted(response.get("Datapoints", []), key=lambda point: point["Timestamp"])
    if not points:
        return None, None
    return float(points[-1]["Average"]), points[-1]["Timestamp"]


def cluster_state(aws: AwsSettings | None) -> ClusterStatus | None:
    """The state of the cluster ``aws`` names (``OPTIONS["aurora"]["cluster"]``);
    ``None`` when it names none. For ``aurora_wake``: any failure to ask is
    ``None`` too, the wait goes on without it."""
    if aws is None or not aws.cluster:
        return None
    try:
        return cluster_status(aws)
    except ClusterUnavailable:
        return None


def waking_state(status: ClusterStatus | None, *, connecting: bool) -> str | None:
    """The state ``aurora_wake`` shows: ``paused``, then ``resuming`` once
    it is connecting to a paused cluster (a connect is what resumes it;
    RDS has no status for it), then ``available`` or RDS's status."""
    if status is None:
        return None
    return "resuming" if status.paused and connecting else status.state
