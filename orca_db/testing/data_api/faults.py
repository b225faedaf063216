"""The faults the local Data API endpoint injects, as a paused cluster, a
scale event and a lossy network show them to a Data API client."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .backend import Backend


@dataclasses.dataclass
class _Fault:
    kind: str  # "fail", "drop", "lose"
    remaining: int
    operation: str | None
    code: str = ""
    message: str = ""


class Faults:
    """The fault controls of :class:`~.endpoint.DataApiEndpoint`."""

    _changed: threading.Condition
    _backend: Backend | None
    _faults: list[_Fault]
    _paused: bool
    _pause_calls: int | None
    _resume_at: float | None
    _resuming_answer_after: float

    def count(self, name: str, delta: int = 1) -> None:
        raise NotImplementedError

    def pause(
        self,
        *,
        calls: int | None = None,
        resume_after: float | None = None,
        end_transactions: bool = True,
        answer_after: float = 0.0,
    ) -> None:
        """Answer every call with ``DatabaseResumingException`` until
        :meth:`resume` (or the next ``calls`` calls, or for ``resume_after``
        seconds), as a paused Aurora Serverless v2 cluster does while the
        call wakes it. A paused cluster has no sessions: open transactions
        end (``end_transactions=False`` keeps them). ``answer_after`` seconds
        pass before each such answer, as they may while a real cluster wakes."""
        if calls is not None and calls < 1:
            raise ValueError("calls must be at least 1")
        if answer_after < 0:
            raise ValueError("answer_after must be at least 0")
        if end_transactions and self._backend is not None:
            self.count("ended", self._backend.end_transactions("ended by a pause"))
        with self._changed:
            self._paused = True
            self._pause_calls = calls
            self._resuming_answer_after = answer_after
            self._resume_at = None if resume_after is None else time.monotonic() + resume_after

    def resume(self) -> None:
        with self._changed:
            self._paused = False
            self._pause_calls = self._resume_at = None
            self._resuming_answer_after = 0.0
            self._changed.notify_all()

    @property
    def paused(self) -> bool:
        with self._changed:
            return self._is_paused(consume=False)

    def scale_event(self) -> int:
        """End every transaction as the server's end would: its session is
        terminated (rolled back, locks released) and later calls get
        ``TransactionNotFoundException``. Statements running outside a
        transaction are cut too. Returns the number of transactions ended."""
        assert self._backend is not None, "The endpoint is not started."
        ended = self._backend.end_transactions("ended by a scale event")
        self.count("ended", ended)
        return ended

    def lose_replies(self, n: int = 1, *, operation: str | None = None) -> None:
        """Run the next ``n`` calls (of ``operation`` only, if given), then
        close their connections without an answer."""
        self._add(_Fault("lose", n, operation))

    def drop_requests(self, n: int = 1, *, operation: str | None = None) -> None:
        """Close the connection of the next ``n`` calls without running them."""
        self._add(_Fault("drop", n, operation))

    def fail_next(
        self,
        n: int = 1,
        *,
        code: str = "ThrottlingException",
        message: str = "Rate exceeded",
        operation: str | None = None,
    ) -> None:
        """Answer the next ``n`` calls with the error ``code`` (not run)."""
        self._add(_Fault("fail", n, operation, code, message))

    def _add(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError("n must be at least 1")
        with self._changed:
            self._faults.append(fault)

    def _take(self, operation: str) -> _Fault | None:
        with self._changed:
            for fault in self._faults:
                if fault.operation in (None, operation):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _is_paused(self, *, consume: bool) -> bool:
        if not self._paused:
            return False
        if self._resume_at is not None and time.monotonic() >= self._resume_at:
            self._paused = False
            return False
        if consume and self._pause_calls is not None:
            self._pause_calls -= 1
            if self._pause_calls <= 0:
                self._paused = False
                self._pause_calls = None
        return True
