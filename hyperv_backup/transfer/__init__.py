"""Readers of files on the Hyper-V host: how captured bytes reach the management box.

A reader maps a host path (``D:\\Hyper-V\\web01\\web01.vhdx``) to a readable stream. This
package has the local-path reader (the tool runs on the host, or the host's volumes are
mounted here), the SMB reader (the fast path: administrative or staging shares) and the PSRP
reader (a slow fallback where SMB is blocked), all on the same protocol.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol

from hyperv_backup.transfer.local import LocalPathReader
from hyperv_backup.transfer.psrp import PSRPReader
from hyperv_backup.transfer.smb import SMBReader

__all__ = ["FileReader", "LocalPathReader", "PSRPReader", "SMBReader"]


class FileReader(Protocol):
    """Opens host files for reading."""

    def reachable(self, host_path: str) -> bool:
        """True when ``host_path`` can be read by this reader (without opening it)."""
        ...

    def open(self, host_path: str) -> BinaryIO:
        """A binary stream of the file; the caller closes it."""
        ...
