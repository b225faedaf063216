"""The local RDS Data API endpoint (docs/data-api.md#the-local-endpoint)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from ..ports import PortReservation, reserve_port, try_reserve
from . import wire
from .backend import Backend, Limits
from .errors import RESUMING_MESSAGE, ApiError
from .faults import Faults
from .server import LoseReply, Server

DEFAULT_CLUSTER_ARN: Final = "arn:aws:rds:us-east-1:123456789012:cluster:orca-local"
DEFAULT_SECRET_ARN: Final = "arn:aws:secretsmanager:us-east-1:123456789012:secret:orca-local-AbCdEf"
ENGINE: Final = "orca_db.backends.aurora_data_api"

STAT_NAMES: Final = (
    "calls",  # requests answered (or not: lost and dropped ones count)
    "executes",  # ExecuteStatement calls
    "batches",  # BatchExecuteStatement calls
    "begins",  # transactions begun
    "commits",  # transactions committed
    "rollbacks",  # transactions rolled back on request
    "open",  # transactions open now
    "resuming",  # calls answered DatabaseResumingException (paused)
    "failed",  # calls answered an error injected with fail_next()
    "replies_lost",  # calls run whose answer was never sent (lose_replies)
    "requests_dropped",  # calls not run, not answered (drop_requests)
    "ended",  # transactions ended by scale events and pauses
    "expired",  # transactions rolled back after the idle limit
    "timeouts",  # statements past the per-call limit
    "size_limited",  # answers refused for their size
    "sql_errors",  # statements PostgreSQL refused
)


class DataApiEndpoint(Faults):
    """A Data API endpoint in front of the PostgreSQL at ``host:port``, on
    127.0.0.1 (``listen_port=0``: a free port). ``user``/``password`` are
    what the secret ``secret_arn`` holds."""

    def __init__(
        self,
        host: str,
        port: int | str,
        user: str,
        password: str,
        *,
        listen_port: int = 0,
        cluster_arn: str = DEFAULT_CLUSTER_ARN,
        secret_arn: str = DEFAULT_SECRET_ARN,
        limits: Limits | None = None,
    ):
        self.cluster_arn = cluster_arn
        self.secret_arn = secret_arn
        self.limits = limits or Limits()
        self.listen_port = listen_port
        self._reservation: PortReservation | None = None
        self._server_params = {"host": host, "port": int(port), "user": user, "password": password}
        self._stats = dict.fromkeys(STAT_NAMES, 0)
        self._changed = threading.Condition()
        self._faults = []
        self._paused = False
        self._pause_calls: int | None = None
        self._resume_at: float | None = None
        self._resuming_answer_after = 0.0
        self._backend: Backend | None = None
        self._server: Server | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    @classmethod
    def for_database(cls, settings_dict: Mapping[str, Any], **kwargs: Any) -> DataApiEndpoint:
        """An endpoint in front of the server of a Django ``DATABASES`` entry."""
        return cls(
            settings_dict.get("HOST") or "127.0.0.1",
            settings_dict.get("PORT") or 5432,
            settings_dict.get("USER") or "postgres",
            settings_dict.get("PASSWORD") or "",
            **kwargs,
        )

    # ----- life cycle --------------------------------------------------------------

    def start(self) -> DataApiEndpoint:
        if self._server is not None:
            raise RuntimeError("The endpoint is already started.")
        self._stopping.clear()
        self._reserve_port()
        self._backend = Backend(self._server_params, self.limits, self.count)
        self._server = Server(self, self.listen_port)
        self.listen_port = self._server.server_address[1]
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever, args=(0.05,), name="data-api", daemon=True
            ),
            threading.Thread(target=self._reap, name="data-api-expiry", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, roll back open transactions, close every session."""
        server, backend = self._server, self._backend
        if server is None or backend is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        backend.close()
        self._server = self._backend = None
        if self._reservation is not None:
            self._reservation.release()

    def _reserve_port(self) -> None:
        # Port 0: a port reserved (orca_db/testing/ports.py) from start() to
        # stop(), and the same one again at the next start(). Released at
        # stop(): the object may live on (a client's keep-alive connection
        # keeps a handler thread, and with it the endpoint).
        if self._reservation is not None:
            again = try_reserve(self.listen_port)
            if again is None:
                raise RuntimeError(
                    f"Port {self.listen_port} was reserved by another process after stop()."
                )
            self._reservation = again
        elif not self.listen_port:
            self._reservation = reserve_port()
            self.listen_port = self._reservation.port

    def __enter__(self) -> DataApiEndpoint:
        return self.start() if self._server is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listen_port}"

    def environ(self) -> dict[str, str]:
        """Environment variables that point boto3 here, with placeholder
        credentials (requests are signed; the endpoint does not check)."""
        return {
            "AWS_ENDPOINT_URL_RDS_DATA": self.url,
            "AWS_ACCESS_KEY_ID": "orca-local",
            "AWS_SECRET_ACCESS_KEY": "orca-local",
        }

    def django_settings(self, name: str, **aurora: Any) -> dict[str, Any]:
        """A ``DATABASES`` entry for the Data API engine through here;
        ``aurora`` adds retry keys (``deadline=...``)."""
        options = {"cluster_arn": self.cluster_arn, "secret": self.secret_arn, **aurora}
        return {"ENGINE": ENGINE, "NAME": name, "OPTIONS": {"aurora": options}}

    # ----- counters ----------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        with self._changed:
            stats = dict(self._stats)
        stats["open"] = self._backend.open_transactions() if self._backend else 0
        return stats

    def count(self, name: str, delta: int = 1) -> None:
        with self._changed:
            self._stats[name] += delta
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, int]], bool], timeout: float = 10.0) -> None:
        """Block until ``predicate(stats)`` is true; TimeoutError after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.stats):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"endpoint stats never matched: {self.stats}")
                self._changed.wait(min(left, 0.05))

    # ----- serving -----------------------------------------------------------------

    def handle(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one call (``LoseReply``: answer nothing)."""
        self.count("calls")
        self._authorize(request)
        with self._changed:
            paused = self._is_paused(consume=True)
            answer_after = self._resuming_answer_after
        if paused:
            self.count("resuming")
            if answer_after:
                time.sleep(answer_after)  # the endpoint's latency, not a wait on a condition
            raise ApiError("DatabaseResumingException", RESUMING_MESSAGE)
        fault = self._take(operation)
        if fault is not None and fault.kind == "fail":
            self.count("failed")
            raise ApiError(fault.code, fault.message)
        if fault is not None and fault.kind == "drop":
            self.count("requests_dropped")
            raise LoseReply
        answer = self._run(operation, request)
        if fault is not None and fault.kind == "lose":
            self.count("replies_lost")
            raise LoseReply
        return answer

    def _authorize(self, request: dict[str, Any]) -> None:
        if request.get("resourceArn") != self.cluster_arn:
            raise ApiError(
                "HttpEndpointNotEnabledException",
                f"HttpEndpoint is not enabled for resource {request.get('resourceArn')}",
            )
        if request.get("secretArn") != self.secret_arn:
            raise ApiError(
                "SecretsErrorException",
                f"Secrets Manager can't find the specified secret {request.get('secretArn')}",
            )

    def _run(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        backend = self._backend
        assert backend is not None
        database = request.get("database") or "postgres"
        if operation == "BeginTransaction":
            self.count("begins")
            return {"transactionId": backend.begin(database)}
        if operation in ("CommitTransaction", "RollbackTransaction"):
            transaction_id = request.get("transactionId") or ""
            commit = operation == "CommitTransaction"
            backend.finish(transaction_id, "COMMIT" if commit else "ROLLBACK")
            self.count("commits" if commit else "rollbacks")
            return {"transactionStatus": "Transaction Committed" if commit else "Rollback Complete"}
        sql = request.get("sql")
        if not isinstance(sql, str):
            raise ApiError("BadRequestException", "sql is required")
        try:
            if operation == "BatchExecuteStatement":
                self.count("batches")
                sets = request.get("parameterSets") or [[]]
                statements = [wire.bind(sql, parameters) for parameters in sets]
            else:
                self.count("executes")
                statements = [wire.bind(sql, request.get("parameters"))]
        except wire.BadRequest as error:
            raise ApiError("BadRequestException", str(error)) from None
        columns, rows, rowcount, types = backend.execute(
            database,
            statements,
            request.get("transactionId"),
            bool(request.get("continueAfterTimeout")),
        )
        if operation == "BatchExecuteStatement":
            return {"updateResults": [{"generatedFields": []} for _ in statements]}
        if columns is None:
            return {"numberOfRecordsUpdated": max(rowcount, 0), "generatedFields": []}
        answer: dict[str, Any] = {
            "records": wire.records(columns, rows, types),
            "numberOfRecordsUpdated": 0,
        }
        if request.get("includeResultMetadata"):
            answer["columnMetadata"] = wire.metadata(columns, types)
        return answer

    def _reap(self) -> None:
        interval = min(0.25, self.limits.transaction_idle_seconds / 4)
        while not self._stopping.wait(interval):
            backend = self._backend
            if backend is not None:
                with contextlib.suppress(Exception):
                    expired = backend.expire_idle()
                    if expired:
                        self.count("expired", expired)
