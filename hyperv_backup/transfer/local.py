"""Read host files through local paths: a mapping from host path prefixes to directories.

Use it when hyperv-backup runs on the Hyper-V host itself (``{"D:\\\\": Path("D:/")}``), when
the host's volumes are mounted on the management box, or with the simulator
(``Simulator.path_map()``).
"""

from __future__ import annotations

import ntpath
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

from hyperv_backup.errors import ConfigError

__all__ = ["LocalPathReader"]


def _normalise(host_path: str) -> str:
    # Windows paths are case-insensitive and may use either separator.
    return ntpath.normpath(host_path.replace("/", "\\")).casefold()


class LocalPathReader:
    """Maps host path prefixes (``D:\\``, ``\\\\nas\\share``) to local directories."""

    def __init__(self, mapping: Mapping[str, Path | str]) -> None:
        if not mapping:
            raise ConfigError("LocalPathReader needs at least one host prefix → local directory")
        # Longest prefix first, so C:\ClusterStorage\Volume1 wins over C:\.
        self._mapping = sorted(
            ((_normalise(prefix).rstrip("\\"), Path(local)) for prefix, local in mapping.items()),
            key=lambda item: len(item[0]),
            reverse=True,
        )

    def __repr__(self) -> str:
        return f"LocalPathReader({[p for p, _ in self._mapping]})"

    def local_path(self, host_path: str) -> Path | None:
        """The local path of ``host_path``, or None when no prefix covers it."""
        normal = _normalise(host_path)
        original = ntpath.normpath(host_path.replace("/", "\\"))
        for prefix, local in self._mapping:
            if normal == prefix or normal.startswith(prefix + "\\"):
                rest = original[len(prefix) :].lstrip("\\")
                parts = [p for p in rest.split("\\") if p]
                return local.joinpath(*parts) if parts else local
        return None

    def reachable(self, host_path: str) -> bool:
        """True when a prefix covers ``host_path`` and the file exists locally."""
        local = self.local_path(host_path)
        return local is not None and local.exists()

    def open(self, host_path: str) -> BinaryIO:
        """Open the file for reading; FileNotFoundError names the host path."""
        local = self.local_path(host_path)
        if local is None:
            raise FileNotFoundError(f"no local mapping covers host path {host_path!r}")
        return local.open("rb")
