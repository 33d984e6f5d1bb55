"""The emulated host's file system: Windows paths mapped into one local folder, and content.

``D:\\Hyper-V\\web01\\x.vhdx`` lives at ``<root>/D/Hyper-V/web01/x.vhdx``: the drive letter
upper-cased, each backslash a path part. Windows compares paths case-insensitively, so a path
part that already exists under another case resolves to it. Nothing is ever written outside
``root``: ``..`` is refused.

File content is deterministic (seeded by the path), and shaped like a VM disk: runs of zeros
(left as holes), text, blocks shared by every disk (the same OS files in many VMs) and random
data, in 64 KiB blocks. Base disks can be real VHDX/VHD images made with ``qemu-img``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "BLOCK",
    "HostFS",
    "HostPathError",
    "drive_of",
    "mirror_path",
    "sanitize_file_name",
    "win_join",
    "win_name",
    "win_parent",
]

logger = logging.getLogger(__name__)

BLOCK = 64 * 2**10
"""Unit of generated content, and of guest writes."""

_DRIVE_PATH = re.compile(r"^([A-Za-z]):(?:[\\/]|$)")
# Windows forbids these in a file name (plus control characters); Export-VM needs a folder
# named after the VM, so the export scripts replace each with '_' (our assumption of what
# the .ps1 does; Hyper-V's own behaviour for such names is undocumented).
_FORBIDDEN_IN_NAME = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


class HostPathError(ValueError):
    """A Windows path the emulated host cannot map (relative, UNC, unknown drive, '..')."""


def sanitize_file_name(name: str) -> str:
    """``name`` with every character Windows forbids in a file name replaced by ``_``."""
    return _FORBIDDEN_IN_NAME.sub("_", name)


def drive_of(path: str) -> str:
    """The upper-case drive letter of an absolute Windows path."""
    match = _DRIVE_PATH.match(path)
    if match is None:
        raise HostPathError(f"not an absolute Windows path with a drive letter: {path!r}")
    return match.group(1).upper()


def _parts(path: str) -> list[str]:
    return [p for p in re.split(r"[\\/]", path[2:]) if p not in ("", ".")]


def mirror_path(root: Path, path: str) -> Path:
    """Where ``path`` (minus its drive) lands under ``root``: a shadow copy's layout."""
    parts = _parts(path)
    if ".." in parts:
        raise HostPathError(f"'..' is not supported in host paths: {path!r}")
    return root.joinpath(*parts)


def win_join(base: str, *parts: str) -> str:
    """``base\\part\\...`` with exactly one backslash between parts."""
    out = base.rstrip("\\/")
    for part in parts:
        out += "\\" + part.strip("\\/")
    return out


def win_parent(path: str) -> str:
    """The folder of a Windows path (``D:\\a\\b`` → ``D:\\a``; ``D:\\a`` → ``D:\\``)."""
    head = path.rstrip("\\/").rsplit("\\", 1)[0]
    return head + "\\" if re.fullmatch(r"[A-Za-z]:", head) else head


def win_name(path: str) -> str:
    """The last part of a Windows path."""
    return path.rstrip("\\/").rsplit("\\", 1)[-1]


class HostFS:
    """The host's drives as folders under ``root``, and deterministic file content."""

    def __init__(self, root: Path, drives: Iterable[str], *, disk_images: str = "plain") -> None:
        self.root = root
        self.drives = sorted({d.upper() for d in drives})
        self.disk_images = disk_images
        """'plain' (generated files) or 'qemu' (dynamic base disks are real VHDX/VHD images)."""

    # --- paths ---------------------------------------------------------------------------

    def path_map(self) -> dict[str, Path]:
        """``{"D:\\\\": <root>/D, ...}`` for every drive of the host."""
        return {f"{d}:\\": self.root / d for d in self.drives}

    def local_path(self, path: str) -> Path:
        """Where the Windows ``path`` lives locally (existing parts matched case-insensitively)."""
        drive = drive_of(path)
        if drive not in self.drives:
            raise HostPathError(
                f"Cannot find drive. A drive with the name '{drive}' does not exist."
            )
        local = self.root / drive
        for part in _parts(path):
            if part == "..":
                raise HostPathError(f"'..' is not supported in host paths: {path!r}")
            local = _existing_case(local, part)
        return local

    def exists(self, path: str) -> bool:
        """Whether the file or folder exists."""
        return self.local_path(path).exists()

    def size(self, path: str) -> int:
        """The file's size in bytes (0 if it is missing)."""
        try:
            return self.local_path(path).stat().st_size
        except FileNotFoundError:
            return 0

    def remove(self, path: str) -> None:
        """Delete a file if it exists."""
        self.local_path(path).unlink(missing_ok=True)

    # --- content -------------------------------------------------------------------------

    def write_bytes(self, path: str, data: bytes) -> None:
        """Create or replace a file."""
        local = self.local_path(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)

    def write_generated(self, path: str, size: int, *, seed: str | None = None) -> None:
        """Create ``path`` with ``size`` bytes of deterministic disk-like content."""
        local = self.local_path(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        with local.open("wb") as out:
            _write_content(out, seed or path, size)
            out.truncate(size)

    def write_disk(self, path: str, file_size: int, virtual_size: int, vhd_type: str) -> None:
        """Create a base or differencing disk file (a real image when ``disk_images='qemu'``)."""
        fmt = {".vhdx": "vhdx", ".vhd": "vpc"}.get(Path(path).suffix.lower())
        if self.disk_images == "qemu" and vhd_type == "Dynamic" and fmt is not None:
            self._write_image(path, file_size, virtual_size, fmt)
        else:
            self.write_generated(path, file_size)

    def append_generated(self, path: str, size: int, *, seed: str) -> None:
        """Append ``size`` bytes of deterministic content (a guest writing to its disk)."""
        with self.local_path(path).open("ab") as out:
            for length, block in _blocks(seed, size):
                out.write(block if block is not None else bytes(length))

    def append_file(self, path: str, source: str) -> None:
        """Append the bytes of ``source`` to ``path`` (a merge, as far as bytes go)."""
        with self.local_path(path).open("ab") as out, self.local_path(source).open("rb") as src:
            shutil.copyfileobj(src, out, 2**20)

    def copy_to(
        self,
        source: str,
        target: Path,
        length: int,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Copy the first ``length`` bytes of ``source`` to ``target``, reporting each MiB.

        Only a prefix, because a running VM's disk grows while it is copied: the copy is the
        disk as it was when the operation began.
        """
        target.parent.mkdir(parents=True, exist_ok=True)
        remaining = length
        with self.local_path(source).open("rb") as src, target.open("wb") as out:
            while remaining > 0:
                chunk = src.read(min(2**20, remaining))
                if not chunk:
                    break
                out.write(chunk)
                remaining -= len(chunk)
                if progress is not None:
                    progress(len(chunk))

    def _write_image(self, path: str, file_size: int, virtual_size: int, fmt: str) -> None:
        # Content goes into a sparse raw file of the full virtual size; qemu-img skips the
        # holes, so a 500 GiB disk holding a few MiB converts in a moment.
        local = self.local_path(path)
        local.parent.mkdir(parents=True, exist_ok=True)
        raw = local.with_name(local.name + ".raw")
        with raw.open("wb") as out:
            _write_content(out, path, min(file_size, virtual_size))
            out.truncate(virtual_size)
        qemu_img = shutil.which("qemu-img")
        if qemu_img is None:
            raise FileNotFoundError("qemu-img is not on PATH (disk_images='qemu' needs it)")
        options = "subformat=dynamic,block_size=1M" if fmt == "vhdx" else "subformat=dynamic"
        try:
            subprocess.run(  # noqa: S603 - fixed argument list, no shell
                [qemu_img, "convert", "-q", "-f", "raw", "-O", fmt, "-o", options, raw, local],
                check=True,
                capture_output=True,
                timeout=120,
            )
        finally:
            raw.unlink(missing_ok=True)


def _existing_case(folder: Path, part: str) -> Path:
    exact = folder / part
    if exact.exists() or exact.is_symlink() or not folder.is_dir():
        return exact
    folded = part.casefold()
    for entry in folder.iterdir():
        if entry.name.casefold() == folded:
            return entry
    return exact


# --- deterministic content -----------------------------------------------------------------

# Kinds of 64 KiB block and their weights: zeros (unused space), blocks every disk shares
# (common OS files: deduplicate across VMs), text (logs, configs), random (compressed data).
_KINDS = ("zero", "common", "text", "random")
_WEIGHTS = (25, 25, 20, 30)
_COMMON_BLOCKS = 64


@cache
def _text_pool() -> bytes:
    rng = random.Random("hyperv-backup-sim text")  # noqa: S311 - reproducible data, no secret
    words = [
        "service",
        "request",
        "GET",
        "POST",
        "/api/orders",
        "/index.html",
        "200",
        "404",
        "user",
        "session",
        "commit",
        "backup",
        "INFO",
        "WARN",
        "ERROR",
        "sql",
        "cache",
        "Microsoft-Windows-Kernel",
        "svchost.exe",
        "C:\\Windows\\System32",
        "update",
    ]
    lines = []
    for n in range(20000):
        picked = " ".join(rng.choice(words) for _ in range(rng.randint(4, 10)))
        lines.append(f"2026-01-05T22:{n // 60 % 60:02d}:{n % 60:02d}Z [{n:06d}] {picked}\n")
    return "".join(lines).encode()


@cache
def _common_block(index: int) -> bytes:
    # Half binary, half text: what an OS image looks like from far away.
    if index % 2:
        return hashlib.shake_256(f"common-{index}".encode()).digest(BLOCK)
    pool = _text_pool()
    start = (index * 7919) % (len(pool) - BLOCK)
    return pool[start : start + BLOCK]


def _blocks(seed: str, size: int) -> Iterable[tuple[int, bytes | None]]:
    """``size`` bytes as (length, data) blocks; data ``None`` stands for zeros."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, no secret
    pool = _text_pool()
    remaining = size
    while remaining > 0:
        n = min(BLOCK, remaining)
        kind = rng.choices(_KINDS, _WEIGHTS)[0]
        if kind == "zero":
            yield n, None
        elif kind == "common":
            yield n, _common_block(rng.randrange(_COMMON_BLOCKS))[:n]
        elif kind == "text":
            start = rng.randrange(len(pool) - BLOCK)
            yield n, pool[start : start + n]
        else:
            yield n, rng.randbytes(n)
        remaining -= n


def _write_content(out: BinaryIO, seed: str, size: int) -> None:
    """Write generated content; zero blocks become holes (the caller truncates to size)."""
    for length, block in _blocks(seed, size):
        if block is None:
            out.seek(length, os.SEEK_CUR)
        else:
            out.write(block)
