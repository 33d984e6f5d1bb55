"""Read host files through PowerShell Remoting: the slow fallback when SMB is not possible.

>>> with HyperVHost(settings) as host:                                  # doctest: +SKIP
...     reader = PSRPReader(host)
...     with reader.open("D:\\\\Hyper-V\\\\web01\\\\web01.vhdx") as disk:
...         first = disk.read(4 * 2**20)

Each chunk is one run of the ``read-file-chunk`` script: the host reads it, base64-encodes
it, wraps it in JSON, and PSRP wraps that in XML fragments. That moves about 20 MB/s, where
SMB moves line rate (hundreds of MB/s): use it only where TCP 445 to the host is closed, and
prefer :class:`~hyperv_backup.transfer.smb.SMBReader` (administrative shares or a staging
share) everywhere else. The reader says so in a warning the first time it opens a file.

Memory stays bounded: one chunk (``chunk_size`` bytes, and its base64 text while it is
decoded) per open stream. Calls go through the host's session, which runs one call at a time:
give each parallel worker its own :class:`~hyperv_backup.host.HyperVHost`.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import ntpath
import threading
from typing import Any, BinaryIO

from hyperv_backup.errors import (
    AccessDeniedError,
    ConfigError,
    HostFileNotFoundError,
    ProtocolError,
    ReadAccessDeniedError,
    RemoteScriptError,
)
from hyperv_backup.host import HyperVHost
from hyperv_backup.ps_scripts import SCRIPTS, FileChunk, ReadFileChunkParams

__all__ = ["PSRPReader"]

logger = logging.getLogger(__name__)

MiB = 2**20
_MAX_CHUNK = 16 * MiB  # what read-file-chunk accepts


class PSRPReader:
    """Opens host files and streams them in ``chunk_size`` pieces over PSRP (slow; see above).

    1 MiB chunks by default: larger ones save round trips but not time (the encoding is the
    cost), and each chunk lives on the host three times over (bytes, base64, JSON).
    """

    def __init__(self, host: HyperVHost, chunk_size: int = MiB) -> None:
        if not 1 <= chunk_size <= _MAX_CHUNK:
            raise ConfigError(f"chunk_size {chunk_size} must be 1 byte to 16 MiB")
        self.host = host
        self.chunk_size = chunk_size
        self._warned = threading.Event()

    def __repr__(self) -> str:
        return f"PSRPReader({self.host!r}, chunk_size={self.chunk_size})"

    def reachable(self, host_path: str) -> bool:
        """True for any absolute host path: the host reads its own files."""
        path = host_path.replace("/", "\\")
        drive, rest = ntpath.splitdrive(path)
        return bool(drive) and rest.startswith("\\")

    def open(self, host_path: str) -> BinaryIO:
        """A buffered stream of the file; the first chunk is read now, so a missing file raises
        :class:`~hyperv_backup.errors.HostFileNotFoundError` here."""
        if not self._warned.is_set():
            self._warned.set()
            logger.warning(
                "Reading host files over PowerShell Remoting (PSRPReader): about 20 MB/s, as "
                "every byte is base64-encoded on the host and carried in JSON and PSRP's XML. "
                "SMB reads at line rate: use SMBReader (administrative shares or a staging "
                "share) unless TCP port 445 to %s is closed.",
                self.host.settings.host,
            )
        raw = _ChunkStream(self, host_path)
        return io.BufferedReader(raw, buffer_size=self.chunk_size)

    def read_chunk(self, host_path: str, offset: int, length: int) -> tuple[bytes, FileChunk]:
        """One ``read-file-chunk`` call: the bytes and what the host said about the file."""
        params = ReadFileChunkParams(path=host_path, offset=float(offset), length=length)
        try:
            chunk: FileChunk = self.host.runner.run(SCRIPTS["read-file-chunk"], params)
        except AccessDeniedError as err:
            raise ReadAccessDeniedError(f"Reading {host_path!r}: {err}") from err
        except RemoteScriptError as err:
            if err.kind == "file_not_found":
                raise HostFileNotFoundError(
                    f"{err} It may have been moved or deleted since the VM was listed."
                ) from err
            raise
        try:
            data = base64.b64decode(chunk.data, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ProtocolError(
                f"read-file-chunk returned data that is not base64 for {host_path!r}",
                script="read-file-chunk",
            ) from err
        return data, chunk


class _ChunkStream(io.RawIOBase):
    """Raw stream over :meth:`PSRPReader.read_chunk`; holds one decoded chunk at a time."""

    def __init__(self, reader: PSRPReader, host_path: str) -> None:
        super().__init__()
        self._reader = reader
        self._path = host_path
        self._position = 0
        self._chunk = memoryview(b"")
        self._chunk_pos = 0
        self._eof = False
        self._size = 0
        self._fetch()  # fail on open, not on the first read, for a missing file

    @property
    def name(self) -> str:
        """The host path."""
        return self._path

    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Any position can be read from."""
        return True

    def tell(self) -> int:
        """The position of the next byte :meth:`readinto` returns."""
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset``; the next read asks the host from there."""
        if whence == io.SEEK_CUR:
            offset += self._position
        elif whence == io.SEEK_END:
            offset += self._size
        elif whence != io.SEEK_SET:
            raise ValueError(f"invalid whence {whence}")
        if offset < 0:
            raise ValueError(f"negative seek position {offset}")
        if offset != self._position:
            self._position = offset
            self._chunk, self._chunk_pos, self._eof = memoryview(b""), 0, False
        return self._position

    def readinto(self, buffer: Any) -> int:
        """Copy from the current chunk, fetching the next when it is used up; 0 at the end."""
        if self.closed:
            raise ValueError("I/O operation on closed file")
        target = memoryview(buffer).cast("B")
        while self._chunk_pos >= len(self._chunk):
            if self._eof:
                return 0
            self._fetch()
        count = min(len(target), len(self._chunk) - self._chunk_pos)
        target[:count] = self._chunk[self._chunk_pos : self._chunk_pos + count]
        self._chunk_pos += count
        self._position += count
        return count

    def _fetch(self) -> None:
        data, chunk = self._reader.read_chunk(self._path, self._position, self._reader.chunk_size)
        self._chunk, self._chunk_pos = memoryview(data), 0
        self._size = int(chunk.size)
        # An empty answer that is not at the end would loop forever; the host says eof then.
        self._eof = chunk.eof or not data
