"""The little of PostgreSQL's wire protocol (version 3) the simulator needs:
reading a client's first packet, writing an ErrorResponse, and following
message boundaries in the server's stream without copying it.

Reference: "Frontend/Backend Protocol", chapter 55 of the PostgreSQL manual.
"""

from __future__ import annotations

import struct

# Codes a client may send in place of a protocol version in its first packet.
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_MAJOR_3 = 3

# PostgreSQL refuses longer startup packets (MAX_STARTUP_PACKET_LENGTH).
MAX_STARTUP_PACKET = 10000

BACKEND_KEY_DATA = ord("K")
READY_FOR_QUERY = ord("Z")
ERROR_RESPONSE = ord("E")

# Client messages of a query: simple (Query), or extended (Parse, Bind,
# Execute... up to Sync); Close forgets a prepared statement.
QUERY = ord("Q")
PARSE = ord("P")
BIND = ord("B")
EXECUTE = ord("E")
SYNC = ord("S")
CLOSE = ord("C")


class ProtocolViolation(Exception):
    pass


def split_first_packet(buffer: bytes | bytearray) -> tuple[int, bytes] | None:
    """``(code, packet)`` of the untyped packet at the start of ``buffer``
    (startup, SSL, GSSENC or cancel request), or None until it is complete.
    ``code`` is the protocol version or request code; ``packet`` the whole
    packet, length word included."""
    if len(buffer) < 8:
        return None
    length, code = struct.unpack_from("!ii", buffer)
    if length < 8 or length > MAX_STARTUP_PACKET:
        raise ProtocolViolation(f"invalid startup packet length {length}")
    if len(buffer) < length:
        return None
    return code, bytes(buffer[:length])


def startup_parameters(packet: bytes) -> dict[str, str]:
    """The name/value pairs of a StartupMessage (user, database, options...)."""
    fields = packet[8:].split(b"\0")
    pairs: dict[str, str] = {}
    for name, value in zip(fields[0::2], fields[1::2], strict=False):
        if not name:
            break
        pairs[name.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return pairs


def cancel_target(packet: bytes) -> tuple[int, int]:
    """``(pid, secret key)`` of a CancelRequest."""
    _, _, pid, key = struct.unpack_from("!iiii", packet)
    return pid, key


def cancel_request(pid: int, key: int) -> bytes:
    return struct.pack("!iiii", 16, CANCEL_REQUEST, pid, key)


def error_response(severity: str, sqlstate: str, message: str) -> bytes:
    """An ErrorResponse message, as the server writes it (both the localised
    and the non-localised severity, the code, the primary message)."""
    body = b"".join(
        tag + value.encode() + b"\0"
        for tag, value in ((b"S", severity), (b"V", severity), (b"C", sqlstate), (b"M", message))
    )
    body += b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


def parse_backend_key_data(body: bytes) -> tuple[int, int]:
    pid, key = struct.unpack_from("!ii", body)
    return pid, key


class MessageReader:
    """Splits a byte stream into whole typed messages ``(type, body)``; for
    the short startup conversation, where each message is looked at."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        messages = []
        buffer = self._buffer
        position = 0
        while len(buffer) - position >= 5:
            length = int.from_bytes(buffer[position + 1 : position + 5], "big")
            end = position + 1 + length
            if end > len(buffer):
                break
            messages.append((buffer[position], bytes(buffer[position + 5 : end])))
            position = end
        del buffer[:position]
        return messages

    def leftover(self) -> bytes:
        """Bytes of an incomplete message, handed on when parsing stops."""
        data, self._buffer = bytes(self._buffer), bytearray()
        return data


class Boundaries:
    """Follows where messages start and end in the server's stream, without
    buffering or copying it: the hot path of the proxy after startup.

    Knowing the boundaries lets the proxy cut a session between two messages
    and write a message of its own there (the scale event's FATAL) without
    ever leaving a client with half a message.
    """

    __slots__ = ("_remaining", "_header")

    def __init__(self) -> None:
        #: Bytes of the current message still to come.
        self._remaining = 0
        #: The start of a header split across two reads (under 5 bytes).
        self._header = b""

    @property
    def at_boundary(self) -> bool:
        return self._remaining == 0 and not self._header

    def advance(self, data: bytes) -> None:
        """Account for ``data``, the next bytes of the stream."""
        size = len(data)
        position = 0
        if self._header:
            needed = 5 - len(self._header)
            header = self._header + bytes(data[:needed])
            if len(header) < 5:
                self._header = header
                return
            self._header = b""
            position = needed
            self._remaining = int.from_bytes(header[1:5], "big") - 4
        position += self._remaining
        while position + 5 <= size:
            position += 1 + int.from_bytes(data[position + 1 : position + 5], "big")
        if position >= size:
            self._remaining = position - size
        else:
            self._remaining = 0
            self._header = bytes(data[position:])

    def end_of_current(self, data: bytes) -> int | None:
        """How many bytes of ``data`` complete the message in progress (0 at a
        boundary), or None when it does not end within ``data``."""
        if self._header:
            needed = 5 - len(self._header)
            if len(data) < needed:
                return None
            header = self._header + bytes(data[:needed])
            end = needed + int.from_bytes(header[1:5], "big") - 4
        else:
            end = self._remaining
        return end if end <= len(data) else None
