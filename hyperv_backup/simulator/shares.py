"""SMB shares of the emulated host: what the staging-share scripts created, and where.

The host keeps a :class:`ShareRecord` per share made by ``new-staging-share``. When the
simulator runs Samba (``Simulator(smb=True)``) the share is also served for real, through a
:class:`ShareServer` (the simulator's :class:`~hyperv_backup.simulator.samba.SambaServer`);
without Samba the scripts behave the same, and nothing can read the share.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["ShareRecord", "ShareServer"]


@dataclass(frozen=True)
class ShareRecord:
    """A share on the emulated host: its name, host folder and the account that may read."""

    name: str
    path: str
    read_access: str


class ShareServer(Protocol):
    """Serves the emulated host's shares over SMB (the simulator's Samba)."""

    username: str
    """The login the server's users authenticate as."""
    aliases: tuple[str, ...]
    """Further login names for that same user (the host's Windows account names)."""

    def add_share(
        self,
        name: str,
        path: Path | str,
        *,
        read_only: bool = True,
        valid_users: Iterable[str] = (),
    ) -> Any:
        """Serve ``path`` as ``name`` to ``valid_users``."""
        ...

    def remove_share(self, name: str) -> bool:
        """Stop serving ``name``; False if it was not served."""
        ...
