"""Protocol framing used by the simulator, on byte strings."""

from __future__ import annotations

import random

import pytest

from orca_db.testing import pgwire
from orca_db.testing.simulator.watch import QueryWatcher, ReplyWatcher


def message(kind: bytes, body: bytes) -> bytes:
    return kind + (len(body) + 4).to_bytes(4, "big") + body


def stream() -> tuple[bytes, list[int]]:
    """A server stream of assorted messages and the offsets where each ends."""
    rng = random.Random(7)
    data, ends = b"", []
    for i in range(200):
        data += message(b"DTCZ"[i % 4 : i % 4 + 1], bytes(rng.randrange(0, 40)))
        ends.append(len(data))
    return data, ends


@pytest.mark.parametrize("seed", range(20))
def test_boundaries_follow_messages_across_any_split(seed):
    data, ends = stream()
    rng = random.Random(seed)
    tracker = pgwire.Boundaries()
    position = 0
    while position < len(data):
        size = rng.choice([1, 2, 3, 4, 5, 6, 17, 100, 1000])
        chunk = data[position : position + size]
        end = tracker.end_of_current(chunk)
        # end_of_current agrees with the true next boundary.
        next_end = next((e for e in [0, *ends] if e >= position), None)
        if position in [0, *ends]:
            assert end == 0 and tracker.at_boundary
        elif next_end - position <= len(chunk):
            assert end == next_end - position
        else:
            assert end is None
        tracker.advance(chunk)
        position += len(chunk)
        assert tracker.at_boundary == (position in ends)


def test_message_reader_returns_whole_messages():
    reader = pgwire.MessageReader()
    data = message(b"K", (1234).to_bytes(4, "big") + (99).to_bytes(4, "big")) + message(b"Z", b"I")
    assert reader.feed(data[:3]) == []
    messages = reader.feed(data[3:] + b"S\0")
    assert [kind for kind, _ in messages] == [ord("K"), ord("Z")]
    assert pgwire.parse_backend_key_data(messages[0][1]) == (1234, 99)
    assert reader.leftover() == b"S\0"


def test_first_packets():
    ssl = (8).to_bytes(4, "big") + pgwire.SSL_REQUEST.to_bytes(4, "big")
    assert pgwire.split_first_packet(ssl[:7]) is None
    assert pgwire.split_first_packet(ssl + b"more") == (pgwire.SSL_REQUEST, ssl)
    body = (196608).to_bytes(4, "big") + b"user\0ann\0database\0db\0\0"
    startup = (len(body) + 4).to_bytes(4, "big") + body
    code, packet = pgwire.split_first_packet(startup)
    assert code >> 16 == 3
    assert pgwire.startup_parameters(packet) == {"user": "ann", "database": "db"}
    with pytest.raises(pgwire.ProtocolViolation):
        pgwire.split_first_packet((10**6).to_bytes(4, "big") + bytes(4))
    cancel = pgwire.cancel_request(42, -7)
    assert pgwire.split_first_packet(cancel)[0] == pgwire.CANCEL_REQUEST
    assert pgwire.cancel_target(cancel) == (42, -7)


def test_error_response_fields():
    raw = pgwire.error_response("FATAL", "57P01", "bye")
    [(kind, body)] = pgwire.MessageReader().feed(raw)
    assert kind == ord("E")
    assert body == b"SFATAL\0VFATAL\0C57P01\0Mbye\0\0"


def client_stream() -> tuple[bytes, list[tuple[int, list[str]]]]:
    """A client's stream (simple and extended queries, a prepared statement
    reused, a Sync with no Execute) and where each query ends, with its SQL."""
    data, ends = message(b"p", b"password\0"), []

    def add(raw: bytes, sql: list[str] | None = None) -> None:
        nonlocal data
        data += raw
        if sql is not None:
            ends.append((len(data), sql))

    add(message(b"Q", b"SELECT 1\0"), ["SELECT 1"])
    add(message(b"P", b"\0INSERT INTO t VALUES ($1)\0\0\0"))
    add(message(b"B", b"\0\0" + bytes(6)) + message(b"D", b"P\0") + message(b"E", bytes(5)))
    add(message(b"S", b""), ["INSERT INTO t VALUES ($1)"])
    add(message(b"P", b"s1\0SELECT 2\0\0\0") + message(b"S", b""))  # prepared, not run
    add(message(b"B", b"\0s1\0" + bytes(6)) + message(b"E", bytes(5)))
    add(message(b"S", b""), ["SELECT 2"])
    add(message(b"X", b""))
    return data, ends


@pytest.mark.parametrize("seed", range(10))
def test_query_watcher_finds_queries_across_any_split(seed):
    data, ends = client_stream()
    rng = random.Random(seed)
    watcher = QueryWatcher(pgwire.Boundaries())
    forwarded, found = b"", []
    position = 0
    while position < len(data):
        size = rng.choice([1, 2, 3, 5, 7, 40, 1000])
        for piece, sql in watcher.feed(data[position : position + size]):
            forwarded += piece
            if sql is not None:
                found.append((len(forwarded), sql))
        position += size
    # Every byte forwarded, in order; each query found where it ends.
    assert forwarded == data
    assert found == ends


def test_query_watcher_starts_inside_a_message():
    data, ends = client_stream()
    boundaries = pgwire.Boundaries()
    boundaries.advance(data[:3])  # three bytes into the password message
    watcher = QueryWatcher(boundaries)
    pieces = watcher.feed(data[3:])
    assert b"".join(piece for piece, _ in pieces) == data[3:]
    assert [sql for _, sql in pieces if sql] == [sql for _, sql in ends]
    assert watcher.stop()[0] == b""


def test_query_watcher_hands_back_an_incomplete_message():
    watcher = QueryWatcher(pgwire.Boundaries())
    query = message(b"Q", b"SELECT 1\0")
    assert watcher.feed(query[:4]) == []
    leftover, boundaries = watcher.stop()
    assert leftover == query[:4]
    assert boundaries.end_of_current(query[4:]) == len(query) - 4


def test_reply_watcher_ends_at_ready_for_query():
    reply = message(b"C", b"INSERT 0 1\0") + message(b"Z", b"I")
    boundaries = pgwire.Boundaries()
    boundaries.advance(message(b"N", b"notice")[:6])  # a message in progress
    watcher = ReplyWatcher(boundaries)
    rest = message(b"N", b"notice")[6:] + reply
    assert not watcher.feed(rest[:-1])
    assert watcher.feed(rest[-1:])
