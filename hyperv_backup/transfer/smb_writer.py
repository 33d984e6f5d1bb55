"""Write host files over SMB: how a restore puts a VM's files back onto the Hyper-V host.

>>> writer = SMBWriter("hv01.corp.example", username="CORP\\\\backup",
...                    password=SecretStr("..."))                           # doctest: +SKIP
>>> with writer, writer.create("D:\\\\Restore\\\\web01\\\\web01.vhdx") as out:  # doctest: +SKIP
...     out.write(data)
...     out.commit()

Host paths map to shares exactly as for :class:`~hyperv_backup.transfer.smb.SMBReader`
(administrative shares by default, or configured prefixes; see :mod:`.smb_session`); writing
needs change rights on the share and modify rights on the folder.

Each file is written as ``<name>.partial`` and renamed to its name only by
:meth:`SMBUpload.commit`, after every write was acknowledged and flushed to the host's disk:
a file with its real name on the host is always complete. The caller commits only once it
has verified what it wrote (a restore checks the file's hash first); anything else — an error,
an abort, leaving the ``with`` block — deletes the partial file. An existing file is never
replaced unless ``overwrite=True``: the rename itself refuses, so a file that appears
meanwhile is not lost either.

Writes are large (``write_size``, capped by what the server allows: 8 MiB for Windows and
Samba) and several are in flight at once (``write_behind``), sent through smbprotocol's
out-of-band form as the reader's reads are, so one round trip per block is hidden behind the
others. Runs of zeros can be skipped (:meth:`SMBUpload.skip`): nothing crosses the network
and the server fills the gap with zeros. Memory per open file: about
``(write_behind + 1) * write_size``.
"""

from __future__ import annotations

import errno
import logging
import ntpath
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import smbclient
import smbclient.path
from pydantic import SecretStr
from smbprotocol.exceptions import SMBOSError

from hyperv_backup.errors import (
    ConfigError,
    HostFileExistsError,
    HostFileNotFoundError,
    HyperVBackupError,
    TransferError,
    WriteAccessDeniedError,
)
from hyperv_backup.transfer.smb_errors import translate_status
from hyperv_backup.transfer.smb_session import AuthProtocol, SMBSession, normalise

__all__ = ["PARTIAL_SUFFIX", "SMBUpload", "SMBWriter"]

logger = logging.getLogger(__name__)

MiB = 2**20
PARTIAL_SUFFIX = ".partial"
_CREDIT = 64 * 1024  # bytes one SMB credit covers
_RESERVED_CREDITS = 8  # left for opens, closes and renames on the same connection
_OBJECT_NAME_COLLISION = 0xC0000035
_OBJECT_PATH_NOT_FOUND = 0xC000003A
_ACCESS_DENIED = 0xC0000022
_DISK_FULL = 0xC000007F
_QUOTA_EXCEEDED = 0xC0000044
_MEDIA_WRITE_PROTECTED = 0xC00000A2


class SMBWriter(SMBSession):
    """Writes files to host paths over SMB (see the module docstring); a context manager.

    The arguments are :class:`~hyperv_backup.transfer.smb.SMBReader`'s, with
    ``write_size`` (bytes per SMB WRITE) and ``write_behind`` (writes in flight per file)
    instead of the read sizes.
    """

    _verb = "writing"

    def __init__(
        self,
        server: str,
        *,
        port: int = 445,
        username: str,
        password: SecretStr | str,
        shares: Mapping[str, str] | None = None,
        encrypt: bool = True,
        write_size: int = 4 * MiB,
        write_behind: int = 4,
        timeout: float = 30.0,
        auth_protocol: AuthProtocol = "negotiate",
    ) -> None:
        if write_size < _CREDIT:
            raise ConfigError(f"write_size {write_size} is below one SMB credit (64 KiB)")
        if write_behind < 1:
            raise ConfigError(f"write_behind {write_behind} must be at least 1")
        super().__init__(
            server,
            port=port,
            username=username,
            password=password,
            shares=shares,
            encrypt=encrypt,
            timeout=timeout,
            auth_protocol=auth_protocol,
        )
        self.write_size = write_size
        self.write_behind = write_behind

    # --- files and folders -------------------------------------------------------------------

    def exists(self, host_path: str) -> bool:
        """True when a file or folder exists at ``host_path`` on the host."""
        unc = self._require_unc(host_path)
        self._ensure_session()
        try:
            return bool(smbclient.path.exists(unc, **self._smb_options()))
        except Exception as err:
            raise self._translate(err, host_path, unc) from None

    def makedirs(self, host_folder: str) -> None:
        """Create ``host_folder`` and its missing parents (an existing folder is fine)."""
        unc = self._require_unc(host_folder)
        self._ensure_session()
        try:
            smbclient.makedirs(unc, exist_ok=True, **self._smb_options())
        except Exception as err:
            raise self._translate(err, host_folder, unc) from None

    def remove(self, host_path: str) -> bool:
        """Delete the file at ``host_path``; False when there was none."""
        unc = self._require_unc(host_path)
        self._ensure_session()
        try:
            smbclient.remove(unc, **self._smb_options())
        except OSError as err:
            if getattr(err, "errno", None) == errno.ENOENT:
                return False
            raise self._translate(err, host_path, unc) from None
        except Exception as err:
            raise self._translate(err, host_path, unc) from None
        return True

    def create(self, host_path: str, *, overwrite: bool = False) -> SMBUpload:
        """Start writing ``host_path`` (as ``<name>.partial``); use the result in ``with``.

        Missing folders are created. Raises :class:`~hyperv_backup.errors.HostFileExistsError`
        when the file exists and ``overwrite`` is False; a partial file left by an earlier,
        killed attempt is replaced.
        """
        if not ntpath.basename(normalise(host_path)):
            raise ConfigError(f"{host_path!r} names a folder, not a file")
        unc = self._require_unc(host_path)
        if not overwrite and self.exists(host_path):
            raise HostFileExistsError(
                f"{host_path!r} exists on the host ({unc}); refusing to overwrite it."
            )
        partial = unc + PARTIAL_SUFFIX
        try:
            raw = self._open_partial(partial)
        except SMBOSError as err:
            if err.ntstatus != _OBJECT_PATH_NOT_FOUND:
                raise self._translate(err, host_path, partial) from None
            # Its folder is missing: made, then the file opened again (once).
            self.makedirs(ntpath.dirname(normalise(host_path)))
            try:
                raw = self._open_partial(partial)
            except Exception as again:
                raise self._translate(again, host_path, partial) from None
        except Exception as err:
            raise self._translate(err, host_path, partial) from None
        return SMBUpload(self, raw, host_path=host_path, unc=unc, overwrite=overwrite)

    # --- internals ---------------------------------------------------------------------------

    def _open_partial(self, partial: str) -> Any:
        # Exclusive (no sharing): nothing else may write or read a file half written.
        return smbclient.open_file(
            partial, mode="wb", buffering=0, share_access=None, **self._smb_options()
        )

    def _finish(self, upload: SMBUpload) -> None:
        """Rename the upload's partial file to its name (never over a file unless asked)."""
        rename = smbclient.replace if upload.overwrite else smbclient.rename
        try:
            rename(upload.partial, upload.unc, **self._smb_options())
        except Exception as err:
            raise self._translate(err, upload.host_path, upload.unc) from None

    def _discard(self, upload: SMBUpload) -> None:
        """Delete the upload's partial file, best effort: this runs while reporting a failure."""
        try:
            smbclient.remove(upload.partial, **self._smb_options())
        except OSError as err:
            if getattr(err, "errno", None) != errno.ENOENT:
                logger.warning("could not delete %s on the host: %s", upload.partial, err)
        except Exception as err:  # the connection may be gone: the original error matters more
            logger.warning("could not delete %s on the host: %s", upload.partial, err)

    def _status_error(self, status: int, what: str) -> HyperVBackupError:
        if status == _OBJECT_NAME_COLLISION:
            return HostFileExistsError(
                f"A file of that name exists on the host while {what}; it was not replaced."
            )
        if status in (_ACCESS_DENIED, _MEDIA_WRITE_PROTECTED):
            hint = (
                "Administrative shares need a member of the host's local Administrators group; "
                "a local (non-domain) account also needs remote UAC relaxed "
                "(LocalAccountTokenFilterPolicy=1)."
                if self.admin_shares
                else "Grant the account change rights on the share (Grant-SmbShareAccess "
                "-AccessRight Change) and modify rights on the folder (NTFS)."
            )
            return WriteAccessDeniedError(
                f"Access denied to {self.username!r} while {what}. {hint}"
            )
        if status == _OBJECT_PATH_NOT_FOUND:
            return HostFileNotFoundError(
                f"A folder on the way does not exist on the host while {what} "
                f"(0x{status:08X}); create it first (makedirs)."
            )
        if status in (_DISK_FULL, _QUOTA_EXCEEDED):
            return TransferError(
                f"The host's volume is full (or the account's quota used up) while {what} "
                f"(0x{status:08X}). Free space on it or restore to another folder."
            )
        return translate_status(status, what, self.username, self.admin_shares)


@dataclass
class _Write:
    offset: int
    length: int
    request: Any
    receive: Callable[[Any], int]


class SMBUpload:
    """One file being written over SMB as ``<name>.partial`` (see :meth:`SMBWriter.create`).

    :meth:`write` and :meth:`skip` append; :meth:`commit` makes the file appear under its
    name; :meth:`abort` (and leaving ``with`` without committing) deletes it. Not thread-safe:
    one writer thread per upload.
    """

    def __init__(
        self, writer: SMBWriter, raw_file: Any, *, host_path: str, unc: str, overwrite: bool
    ) -> None:
        self.host_path = host_path
        self.unc = unc
        self.partial = unc + PARTIAL_SUFFIX
        self.overwrite = overwrite
        self._writer = writer
        self._raw = raw_file
        self._open = raw_file.fd
        connection = self._open.connection
        block = min(writer.write_size, int(connection.max_write_size))
        # Without multi-credit (SMB 2.0.2) a request may carry one credit's worth only.
        self._block = block if connection.supports_multi_credit else min(block, _CREDIT)
        self._depth = writer.write_behind
        self._buffer = bytearray()
        self._buffer_offset = 0
        self._size = 0
        self._data_end = 0
        self._pending: deque[_Write] = deque()
        self._state = "open"

    def __repr__(self) -> str:
        return f"SMBUpload({self.partial!r}, {self._size} bytes, {self._state})"

    def __enter__(self) -> SMBUpload:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.abort()  # a no-op after commit

    @property
    def size(self) -> int:
        """Bytes written and skipped so far: the file's size once committed."""
        return self._size

    @property
    def committed(self) -> bool:
        """The file is on the host under its name."""
        return self._state == "committed"

    # --- appending ---------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``; sent in blocks of the write size, several in flight."""
        self._check_open()
        self._buffer += data
        self._size += len(data)
        while len(self._buffer) >= self._block:
            self._send(bytes(self._buffer[: self._block]))
            del self._buffer[: self._block]

    def skip(self, length: int) -> None:
        """Append ``length`` zero bytes without sending them: the server fills the gap."""
        self._check_open()
        if length < 0:
            raise ValueError(f"cannot skip {length} bytes")
        self._send_buffer()
        self._size += length
        self._buffer_offset = self._size

    # --- the end -----------------------------------------------------------------------------

    def commit(self) -> None:
        """Finish the writes, flush them to the host's disk, give the file its name.

        On any failure the partial file is deleted and the error raised; an existing file of
        that name (with ``overwrite`` False) is :class:`~hyperv_backup.errors.HostFileExistsError`.
        """
        self._check_open()
        try:
            self._send_buffer()
            self._drain()
            if self._size > self._data_end:  # ends in skipped zeros: set the length
                self._raw.truncate(self._size)
            # Durable before visible: the name must never point at data still in a cache.
            self._open.flush()
            self._raw.close()
        except BaseException as err:
            self.abort()
            raise self._writer._translate(err, self.host_path, self.partial) from None
        try:
            self._writer._finish(self)
        except BaseException:
            self._state = "aborted"  # closed already: only the partial file is left to delete
            self._writer._discard(self)
            raise
        self._state = "committed"

    def abort(self) -> None:
        """Drop the file: wait for the writes in flight, close, delete the partial file.

        Safe to call twice, and after :meth:`commit` (then it does nothing).
        """
        if self._state != "open":
            return
        self._state = "aborted"
        # Every write sent is answered before the file closes: an unanswered one would stay
        # in the connection's table, and its answer would arrive for a file that is gone.
        for item in self._pending:
            try:
                item.receive(item.request)
            except Exception as err:  # failing already: the first error is what counts
                logger.debug("discarded write to %s failed: %s", self.partial, err)
        self._pending.clear()
        try:
            self._raw.close()
        except Exception as err:
            logger.debug("closing %s failed: %s", self.partial, err)
        self._writer._discard(self)

    # --- internals ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._state != "open":
            raise ValueError(f"{self!r} is no longer open for writing")

    def _send_buffer(self) -> None:
        if self._buffer:
            self._send(bytes(self._buffer))
            self._buffer.clear()

    def _send(self, data: bytes) -> None:
        """Send one WRITE at the buffer's offset, once the credit window has room for it."""
        offset = self._buffer_offset
        connection = self._open.connection
        charge = (len(data) - 1) // _CREDIT + 1 if connection.supports_multi_credit else 1
        while True:
            with self._writer._credit_lock:
                window = connection.sequence_window
                reserve = _RESERVED_CREDITS if self._pending else 0
                if window["high"] - window["low"] - reserve >= charge:
                    try:
                        message, receive = self._open.write(data, offset, send=False)
                        request = connection.send(
                            message,
                            sid=self._open.tree_connect.session.session_id,
                            tid=self._open.tree_connect.tree_connect_id,
                            # More than this write costs, so the window grows until
                            # ``write_behind`` writes fit in it.
                            credit_request=charge * (self._depth + 1),
                        )
                    except Exception as err:
                        raise self._writer._translate(err, self.host_path, self.partial) from None
                    break
            if self._pending:
                self._receive_oldest()  # its credits come back with its answer
            else:
                time.sleep(0.001)  # other files on the connection hold the credits
        self._pending.append(_Write(offset, len(data), request, receive))
        self._buffer_offset = offset + len(data)
        self._data_end = max(self._data_end, self._buffer_offset)
        if len(self._pending) >= self._depth:
            self._receive_oldest()

    def _receive_oldest(self) -> None:
        item = self._pending.popleft()
        try:
            written = int(item.receive(item.request))
        except Exception as err:
            raise self._writer._translate(err, self.host_path, self.partial) from None
        if written != item.length:
            raise TransferError(
                f"The host wrote {written} of {item.length} bytes at offset {item.offset} of "
                f"{self.partial}: the write was cut short."
            )

    def _drain(self) -> None:
        while self._pending:
            self._receive_oldest()
