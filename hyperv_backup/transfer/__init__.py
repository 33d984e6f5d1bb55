"""Readers of files on the Hyper-V host: how captured bytes reach the management box.

A reader maps a host path (``D:\\Hyper-V\\web01\\web01.vhdx``) to a readable stream. This
package has the local-path reader (the tool runs on the host, or the host's volumes are
mounted here), the SMB reader (the fast path: administrative or staging shares) and the PSRP
reader (a slow fallback where SMB is blocked), all on the same protocol.

A reader that can also map a host folder to a share made at run time
(:class:`ShareMappingReader`, e.g. :class:`SMBReader`) lets the engine share what it cannot
read otherwise: a VSS shadow copy, whose folder link on the host an SMB client cannot follow.

A :class:`FileWriter` (:class:`SMBWriter`) goes the other way: a restore writes a VM's files
back onto the host through it, each file appearing under its name only once complete.
"""

from __future__ import annotations

from types import TracebackType
from typing import BinaryIO, Protocol, runtime_checkable

from hyperv_backup.transfer.local import LocalPathReader
from hyperv_backup.transfer.psrp import PSRPReader
from hyperv_backup.transfer.smb import SMBReader
from hyperv_backup.transfer.smb_writer import SMBUpload, SMBWriter

__all__ = [
    "FileReader",
    "FileUpload",
    "FileWriter",
    "LocalPathReader",
    "PSRPReader",
    "SMBReader",
    "SMBUpload",
    "SMBWriter",
    "ShareMappingReader",
]


class FileReader(Protocol):
    """Opens host files for reading."""

    def reachable(self, host_path: str) -> bool:
        """True when ``host_path`` can be read by this reader (without opening it)."""
        ...

    def open(self, host_path: str) -> BinaryIO:
        """A binary stream of the file; the caller closes it."""
        ...


@runtime_checkable
class ShareMappingReader(Protocol):
    """A reader that reads host paths under a prefix through a share made at run time."""

    def map_share(self, host_prefix: str, share: str) -> None:
        """Read files under ``host_prefix`` through ``share`` from now on."""
        ...

    def unmap_share(self, host_prefix: str) -> bool:
        """Forget the mapping of ``host_prefix``; False if there was none."""
        ...


class FileUpload(Protocol):
    """One host file being written; it appears under its name only when committed."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append ``data``."""
        ...

    def skip(self, length: int) -> None:
        """Append ``length`` zero bytes (without sending them, where the writer can)."""
        ...

    def commit(self) -> None:
        """Finish the file and give it its name."""
        ...

    def abort(self) -> None:
        """Drop the file (a no-op once committed)."""
        ...

    def __enter__(self) -> FileUpload:
        """The upload itself."""
        ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Abort unless committed."""
        ...


class FileWriter(Protocol):
    """Writes files to host paths."""

    def reachable(self, host_path: str) -> bool:
        """True when this writer can write ``host_path`` (decided without the network)."""
        ...

    def exists(self, host_path: str) -> bool:
        """True when a file or folder exists at ``host_path``."""
        ...

    def makedirs(self, host_folder: str) -> None:
        """Create the folder and its missing parents."""
        ...

    def create(self, host_path: str, *, overwrite: bool = False) -> FileUpload:
        """Start writing ``host_path``; an existing file is refused unless ``overwrite``."""
        ...
