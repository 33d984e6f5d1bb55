"""Readers of files on the Hyper-V host: how captured bytes reach the management box.

A reader maps a host path (``D:\\Hyper-V\\web01\\web01.vhdx``) to a readable stream. This
package has the local-path reader (the tool runs on the host, or the host's volumes are
mounted here); the SMB reader and a PSRP fallback build on the same protocol.
"""

from __future__ import annotations

from typing import BinaryIO, Protocol

from hyperv_backup.transfer.local import LocalPathReader

__all__ = ["FileReader", "LocalPathReader"]


class FileReader(Protocol):
    """Opens host files for reading."""

    def reachable(self, host_path: str) -> bool:
        """True when ``host_path`` can be read by this reader (without opening it)."""
        ...

    def open(self, host_path: str) -> BinaryIO:
        """A binary stream of the file; the caller closes it."""
        ...
