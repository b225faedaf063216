"""Reading the streams for lost replies: the queries in a client's stream,
and the end of the reply to one in the server's. Only used while
``lose_replies()`` is armed; otherwise the proxy forwards bytes without
reading them (it only follows message lengths)."""

from __future__ import annotations

from .. import pgwire


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


class QueryWatcher:
    """Splits a client's stream into pieces that end where a query ends: a
    simple Query, or the extended-protocol messages (Parse, Bind, Execute...)
    up to the Sync that ends them. Starts wherever ``boundaries`` (the
    stream's tracker so far) says the stream is.

    :meth:`feed` returns ``(piece, sql)`` pairs: ``sql`` is the list of SQL
    texts of the query the piece ends (several for a pipeline), or None when
    the piece ends no query. Incomplete messages wait for their end.

    Statements prepared on the server before the watcher started (psycopg 3
    prepares a statement after its fifth run on a connection) are not known
    by their SQL: their Execute counts as a query with no text."""

    def __init__(self, boundaries: pgwire.Boundaries):
        self._before = None if boundaries.at_boundary else boundaries
        self._buffer = bytearray()
        self._statements: dict[bytes, str] = {}  # prepared statement name -> SQL
        self._batch: list[str] = []
        self._executes = False

    def feed(self, data: bytes) -> list[tuple[bytes, list[str] | None]]:
        pieces: list[tuple[bytes, list[str] | None]] = []
        if self._before is not None:  # the rest of a message begun before
            end = self._before.end_of_current(data)
            head, data = (data, b"") if end is None else (data[:end], data[end:])
            self._before.advance(head)
            pieces.append((head, None))
            if end is not None:
                self._before = None
        buffer = self._buffer
        buffer += data
        start = position = 0
        while len(buffer) - position >= 5:
            end = position + 1 + int.from_bytes(buffer[position + 1 : position + 5], "big")
            if end > len(buffer):
                break
            sql = self._note(buffer[position], bytes(buffer[position + 5 : end]))
            position = end
            if sql is not None:
                pieces.append((bytes(buffer[start:position]), sql))
                start = position
        if position > start:
            pieces.append((bytes(buffer[start:position]), None))
        del buffer[:position]
        return pieces

    def stop(self) -> tuple[bytes, pgwire.Boundaries]:
        """Stop watching: the start of an incomplete message still to
        forward, and a tracker of the stream once it is forwarded."""
        if self._before is not None:
            return b"", self._before
        leftover, self._buffer = bytes(self._buffer), bytearray()
        boundaries = pgwire.Boundaries()
        boundaries.advance(leftover)
        return leftover, boundaries

    def _note(self, kind: int, body: bytes) -> list[str] | None:
        """Follow one message; the SQL of the query it ends, if it ends one."""
        if kind == pgwire.QUERY:
            return [_text(body.rstrip(b"\0"))]
        if kind == pgwire.PARSE:
            name, raw_sql = body.split(b"\0", 2)[:2]
            self._statements[name] = _text(raw_sql)
            self._batch.append(self._statements[name])
        elif kind == pgwire.BIND:
            known = self._statements.get(body.split(b"\0", 2)[1])
            if known is not None and known not in self._batch:
                self._batch.append(known)
        elif kind == pgwire.EXECUTE:
            self._executes = True
        elif kind == pgwire.CLOSE and body[:1] == b"S":
            self._statements.pop(body[1:].rstrip(b"\0"), None)
        elif kind == pgwire.SYNC:
            batch, executes = self._batch, self._executes
            self._batch, self._executes = [], False
            if executes:
                return batch
        return None


class ReplyWatcher:
    """Reads a server's stream, from wherever ``boundaries`` says it is,
    until a ReadyForQuery: the end of the reply to a query."""

    def __init__(self, boundaries: pgwire.Boundaries):
        self._before = None if boundaries.at_boundary else boundaries
        self._reader = pgwire.MessageReader()

    def feed(self, data: bytes) -> bool:
        """True once the reply has ended."""
        if self._before is not None:
            end = self._before.end_of_current(data)
            if end is None:
                self._before.advance(data)
                return False
            data, self._before = data[end:], None
        return any(kind == pgwire.READY_FOR_QUERY for kind, _ in self._reader.feed(data))
