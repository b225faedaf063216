"""HTTP for the local Data API endpoint: the ``rest-json`` protocol boto3's
``rds-data`` client speaks (``POST /Execute`` and friends, JSON bodies,
errors named in ``x-amzn-ErrorType``), on a standard-library
``ThreadingHTTPServer`` bound to 127.0.0.1."""

from __future__ import annotations

import json
import logging
import socket
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Final

from .errors import ApiError

if TYPE_CHECKING:
    from .endpoint import DataApiEndpoint

logger = logging.getLogger("orca_db.data_api_endpoint")

#: Request paths of the service model, by operation.
OPERATIONS: Final = {
    "/Execute": "ExecuteStatement",
    "/BatchExecute": "BatchExecuteStatement",
    "/BeginTransaction": "BeginTransaction",
    "/CommitTransaction": "CommitTransaction",
    "/RollbackTransaction": "RollbackTransaction",
}


class LoseReply(Exception):
    """Close the connection without answering (the call ran, or not)."""


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, endpoint: DataApiEndpoint, port: int):
        self.endpoint = endpoint
        super().__init__(("127.0.0.1", port), Handler)


class Handler(BaseHTTPRequestHandler):
    # Keep-alive, as AWS does: one TCP connection carries many calls.
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes: without this, Nagle's algorithm
    # holds the body for the client's delayed ACK (40 ms a call).
    disable_nagle_algorithm = True
    server: Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        endpoint = self.server.endpoint
        operation = OPERATIONS.get(self.path.split("?", 1)[0])
        try:
            if operation is None:
                raise ApiError("UnknownOperationException", f"No operation at {self.path}")
            if "authorization" not in {key.lower() for key in self.headers}:
                raise ApiError("AccessDeniedException", "Missing Authentication Token")
            if len(body) > endpoint.limits.request_bytes:
                raise ApiError(
                    "BadRequestException",
                    f"Request size {len(body)} exceeds the limit of "
                    f"{endpoint.limits.request_bytes} bytes",
                )
            try:
                request = json.loads(body or b"{}")
            except ValueError:
                raise ApiError("BadRequestException", "The request body is not JSON") from None
            answer = endpoint.handle(operation, request)
            payload = json.dumps(answer).encode()
            if len(payload) > endpoint.limits.response_bytes:
                endpoint.count("size_limited")
                raise ApiError(
                    "BadRequestException",
                    f"Database returned more than the allowed response size limit "
                    f"({endpoint.limits.response_bytes} bytes)",
                )
            self._send(200, payload, None)
        except LoseReply:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except ApiError as error:
            self._send(error.status, json.dumps({"message": error.message}).encode(), error.code)

    def _send(self, status: int, payload: bytes, code: str | None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if code is not None:
            self.send_header("x-amzn-ErrorType", code)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)
