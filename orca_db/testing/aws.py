"""A local AWS for tests: moto's server as a real HTTP endpoint (docs/aws.md).

``moto[server]`` runs in a subprocess on 127.0.0.1; :meth:`MotoServer.environ`
gives the standard AWS variables that point boto3 at it (``AWS_ENDPOINT_URL``
and dummy credentials), so the code under test builds its clients as it does
in production::

    server = MotoServer().start()
    os.environ.update(server.environ())
    ...
    server.stop()

With ``record=True`` moto records each request it serves, and
:meth:`MotoServer.calls` counts them by API action (``GetSecretValue``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .ports import PortReservation, reserve_port

#: Credentials moto accepts (any will do); the region tests use.
ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


class MotoServer:
    def __init__(self, *, port: int | None = None, record: bool = True):
        # Reserved until stop() (orca_db/testing/ports.py), unless given.
        self._reservation: PortReservation | None = None
        if not port:
            self._reservation = reserve_port()
            port = self._reservation.port
        self.port = port
        self.record = record
        self._dir = Path(tempfile.mkdtemp(prefix="orca-db-moto-"))
        self._recording = self._dir / "requests.jsonl"
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> MotoServer:
        env = {**os.environ, **self.environ()}
        if self.record:
            env["MOTO_ENABLE_RECORDING"] = "1"
            env["MOTO_RECORDER_FILEPATH"] = str(self._recording)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=open(self._dir / "moto.log", "wb"),  # noqa: SIM115 (kept by the child)
            env=env,
            cwd=self._dir,
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._process.poll() is not None:
                raise RuntimeError(f"moto server exited: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"moto server did not answer within {timeout} s")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        try:
            self._api("GET", "/moto-api/data.json")
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        shutil.rmtree(self._dir, ignore_errors=True)
        if self._reservation is not None:
            self._reservation.release()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self._dir / "moto.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def environ(self) -> dict[str, str]:
        """The standard AWS variables that send every client here."""
        return {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }

    def _api(self, method: str, path: str, data: bytes | None = None) -> bytes:
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def reset(self) -> None:
        """Forget every resource (secrets, clusters, metrics) and request."""
        self._api("POST", "/moto-api/reset", b"")
        self.reset_calls()

    def reset_calls(self) -> None:
        if self.record:
            self._api("POST", "/moto-api/recorder/reset-recording", b"")

    def calls(self, action: str | None = None) -> list[dict[str, Any]]:
        """The requests served since the last reset, oldest first; with
        ``action``, those of that API action only (``GetSecretValue``)."""
        if not self.record:
            raise RuntimeError("MotoServer(record=False) records no requests")
        text = self._api("GET", "/moto-api/recorder/download-recording").decode()
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        if action is None:
            return entries
        return [entry for entry in entries if _action(entry) == action]


def _action(entry: dict[str, Any]) -> str | None:
    # JSON protocols (Secrets Manager) name the action in a header, query
    # protocols (RDS, CloudWatch) in the form body.
    headers = {key.lower(): value for key, value in entry.get("headers", {}).items()}
    target = headers.get("x-amz-target")
    if target:
        return target.rsplit(".", 1)[-1]
    body = entry.get("body") or ""
    if entry.get("body_encoded"):
        body = base64.b64decode(body).decode(errors="replace")
    for pair in str(body).split("&"):
        if pair.startswith("Action="):
            return pair[len("Action=") :]
    return None
