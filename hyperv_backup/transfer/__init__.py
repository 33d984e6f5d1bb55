"""Readers of files on the Hyper-V host: how captured bytes reach the management box.

A reader maps a host path (``D:\\Hyper-V\\web01\\web01.vhdx``) to a readable stream. This
package has the local-path reader (the tool runs on the host, or the host's volumes are
mounted here), the SMB reader (the fast path: administrative or staging shares) and the PSRP
reader (a slow fallback where SMB is blocked), all on the same protocol.

A reader that can also map a host folder to a share made at run time
(:class:`ShareMappingReader`, e.g. :class:`SMBReader`) lets the engine share what it cannot
read otherwise: a VSS shadow copy, whose folder link on the host an SMB client cannot follow.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol, runtime_checkable

from hyperv_backup.transfer.local import LocalPathReader
from hyperv_backup.transfer.psrp import PSRPReader
from hyperv_backup.transfer.smb import SMBReader

__all__ = ["FileReader", "LocalPathReader", "PSRPReader", "SMBReader", "ShareMappingReader"]


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
