"""Where RDS checks IAM tokens, on this machine: a PostgreSQL front door that
asks the client for a cleartext password (as RDS does for IAM users), checks
it as an IAM authentication token (the SigV4 signature with the test's AWS
secret key, the host, port, user, region and lifetime), and lets only a
valid token through to a real PostgreSQL (over its Unix socket, where the
test server trusts local logins). Refused tokens get RDS's FATAL.

Every token that reaches it is recorded, accepted or not: the tests prove
minting, reuse and refresh by what arrives here, not by looking inside the
client. ``expire_tokens()`` makes every token minted so far count as expired
(a simulated 15 minutes).
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import socket
import struct
import threading
import time
from urllib.parse import parse_qsl, quote, urlsplit

SSL_REQUEST, GSSENC_REQUEST, CANCEL_REQUEST = 80877103, 80877104, 80877102
AMZ_DATE = "%Y%m%dT%H%M%SZ"


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return data


def _read_packet(sock: socket.socket) -> bytes:
    """A startup-phase packet (no type byte): length + body, returned whole."""
    head = _recv_exact(sock, 4)
    return head + _recv_exact(sock, struct.unpack("!i", head)[0] - 4)


def _error(sqlstate: str, message: str) -> bytes:
    fields = b"".join(
        code + value.encode() + b"\0"
        for code, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def token_problem(
    token: str, *, user: str, netloc: str, region: str, access_key: str, secret_key: str,
    now: datetime.datetime, not_after_minted: datetime.datetime | None = None,
) -> str | None:  # fmt: skip
    """Why ``token`` is not a valid IAM auth token for ``user`` at
    ``netloc`` (None: it is). Checks it as AWS does: a SigV4 presigned
    ``connect`` request for service ``rds-db``."""
    parts = urlsplit("https://" + token)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if parts.netloc != netloc:
        return f"signed for {parts.netloc}, not {netloc}"
    if query.get("Action") != "connect" or query.get("DBUser") != user:
        return "not a connect request for this user"
    try:
        minted = datetime.datetime.strptime(query["X-Amz-Date"], AMZ_DATE).replace(
            tzinfo=datetime.UTC
        )
        lifetime = int(query["X-Amz-Expires"])
        key_id, day, scope_region, service, terminator = query["X-Amz-Credential"].split("/")
        signature = query["X-Amz-Signature"]
    except (KeyError, ValueError):
        return "malformed"
    expected_scope = (access_key, region, "rds-db", "aws4_request")
    if (key_id, scope_region, service, terminator) != expected_scope:
        return "wrong credential scope"
    if now > minted + datetime.timedelta(seconds=min(lifetime, 900)):
        return "expired"
    if not_after_minted is not None and minted <= not_after_minted:
        return "expired (simulated)"
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, v in sorted(query.items())
        if k != "X-Amz-Signature"
    )
    empty_payload = hashlib.sha256(b"").hexdigest()  # a GET signs an empty body
    canonical = "\n".join(
        ["GET", "/", canonical_query, f"host:{parts.netloc}", "", "host", empty_payload]
    )
    scope = f"{day}/{region}/rds-db/aws4_request"
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    to_sign = "\n".join(["AWS4-HMAC-SHA256", query["X-Amz-Date"], scope, digest])
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, "rds-db", "aws4_request"):
        key = _hmac(key, part)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return "bad signature"
    return None


class IamFrontDoor:
    def __init__(self, socket_dir: str, upstream_port: int, *, region: str,
                 access_key: str, secret_key: str):  # fmt: skip
        self._upstream = f"{socket_dir}/.s.PGSQL.{upstream_port}"
        self.region, self.access_key, self.secret_key = region, access_key, secret_key
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.accepted: list[str] = []
        self.rejected: list[tuple[str, str]] = []
        self._not_after: datetime.datetime | None = None
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    def expire_tokens(self) -> None:
        """Every token minted so far counts as expired. Returns once the
        clock reached the next second, so a token minted from then on (they
        are dated to the second) is new."""
        cutoff = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        with self._lock:
            self._not_after = cutoff
        while datetime.datetime.now(datetime.UTC).replace(microsecond=0) <= cutoff:
            time.sleep(0.01)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        try:
            startup = _read_packet(client)
            while struct.unpack("!i", startup[4:8])[0] in (SSL_REQUEST, GSSENC_REQUEST):
                client.sendall(b"N")  # no TLS here: the client goes on in clear
                startup = _read_packet(client)
            if struct.unpack("!i", startup[4:8])[0] == CANCEL_REQUEST:
                return client.close()
            fields = startup[8:].split(b"\0")
            params = dict(zip(fields[0::2], fields[1::2], strict=False))
            user = params.get(b"user", b"").decode()
            client.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
            kind = _recv_exact(client, 1)
            body = _recv_exact(client, struct.unpack("!i", _recv_exact(client, 4))[0] - 4)
            token = body.rstrip(b"\0").decode()
            with self._lock:
                problem = token_problem(
                    token, user=user, netloc=self.netloc, region=self.region,
                    access_key=self.access_key, secret_key=self.secret_key,
                    now=datetime.datetime.now(datetime.UTC), not_after_minted=self._not_after,
                ) if kind == b"p" else "no password message"  # fmt: skip
                (self.rejected.append((token, problem)) if problem else self.accepted.append(token))
            if problem:
                client.sendall(_error("28P01", f'PAM authentication failed for user "{user}"'))
                return client.close()
            upstream = self._track(socket.socket(socket.AF_UNIX))
            upstream.connect(self._upstream)
            upstream.sendall(startup)
            threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
            _pipe(client, upstream)
        except (OSError, ConnectionError):
            with contextlib.suppress(OSError):
                client.close()


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
