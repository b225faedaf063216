"""A client's connection as the network between it and the proxy delivers
it: straight through, or silent."""

from __future__ import annotations

import asyncio

from .counters import Counters


class ClientLink:
    """The client's transport, which can go silent: then nothing is carried
    either way and nothing is closed (no FIN, no RST), as when a middlebox or
    the server's host stops answering. Bytes either way are held in memory
    (a stalled TCP connection loses nothing) and delivered in order by
    :meth:`unsilence`; a close asked for meanwhile happens then too. If the
    client closes first, what was held is dropped."""

    def __init__(self, transport: asyncio.Transport, counters: Counters):
        self.transport = transport
        self.counters = counters
        self.silent = False
        self.held_in = bytearray()  # from the client
        self.held_out = bytearray()  # for the client
        self.close_when_heard = False

    def write(self, data: bytes) -> None:
        if self.silent:
            self.held_out += data
        else:
            self.transport.write(data)

    def close(self) -> None:
        """End the client's stream after what it was sent."""
        if self.silent:
            self.close_when_heard = True
        else:
            self.transport.close()

    def silence(self) -> bool:
        """Go silent; False if already silent."""
        if self.silent:
            return False
        self.silent = True
        self.counters.add("silenced")
        self.counters.add("silent")
        return True

    def unsilence(self) -> bytes:
        """Deliver what was held for the client (and the close, if one was
        asked for); return what the client sent meanwhile."""
        if not self.silent:
            return b""
        self.silent = False
        self.counters.add("silent", -1)
        held_in, held_out = bytes(self.held_in), bytes(self.held_out)
        self.held_in.clear()
        self.held_out.clear()
        if not self.transport.is_closing():
            if held_out:
                self.transport.write(held_out)
            if self.close_when_heard:
                self.transport.close()
        return held_in

    def gone(self) -> None:
        """The client closed: drop what was held."""
        if self.silent:
            self.silent = False
            self.counters.add("silent", -1)
        self.held_in.clear()
        self.held_out.clear()
