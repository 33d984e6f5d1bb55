"""Snapshot manifests: one per VM backup, ``snapshots/<id>``, written last.

A manifest exists only once every blob it names is in a pack and an index object, so a
crash can never leave a backup that points at missing data. It holds the VM's metadata, the
backup's result (consistency requested and achieved, method, what was excluded and why) and,
per file of the Export-VM layout: its relative path, role, size, hash of the whole file
(BLAKE3; SHA-256 in older manifests) and its ordered chunk list.

The chunk list of a file is stored as ``chunk_list`` blobs (each up to 16,384 concatenated
32-byte chunk ids, i.e. ~10 GiB of disk) and the manifest names those blobs in order: the
manifest of a 1 TiB VM stays a few KiB instead of 40 MiB, so listing snapshots stays cheap,
and memory while writing stays bounded.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import blake3
from pydantic import BaseModel, ConfigDict, Field

from hyperv_backup.errors import IntegrityError
from hyperv_backup.models import VMInfo
from hyperv_backup.ps_scripts import FileRole
from hyperv_backup.repository.codec import Codec
from hyperv_backup.results import VMBackupResult, VMStatus
from hyperv_backup.targets.base import Target

__all__ = [
    "CHUNK_IDS_PER_LIST",
    "SNAPSHOT_KIND",
    "SNAPSHOT_PREFIX",
    "FileHasher",
    "Snapshot",
    "SnapshotFile",
    "SnapshotFilter",
    "SnapshotStats",
    "aware",
    "read_snapshot",
    "snapshot_keys",
]

SNAPSHOT_PREFIX = "snapshots/"
SNAPSHOT_KIND = "snapshot"
CHUNK_IDS_PER_LIST = 16384


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SnapshotFile(_Model):
    """One file of the backup."""

    path: str = Field(description="Relative path in the Export-VM layout, '/'-separated.")
    role: FileRole | None = None
    size: int = Field(ge=0)
    sha256: str | None = Field(default=None, description="Whole-file SHA-256 (older backups).")
    blake3: str | None = Field(default=None, description="Whole-file BLAKE3.")
    chunks: int = Field(ge=0, description="How many chunks the file has.")
    chunk_lists: list[str] = Field(
        default_factory=list,
        description="Ids (hex) of the chunk_list blobs whose concatenation is the chunk list.",
    )

    def hasher(self) -> FileHasher:
        """A hash of the recorded kind, to check a restored copy of the file against."""
        if self.blake3 is not None:
            return FileHasher("BLAKE3", blake3.blake3(max_threads=1), self.blake3)
        if self.sha256 is not None:
            return FileHasher("SHA-256", hashlib.sha256(), self.sha256)
        raise IntegrityError(f"the manifest records no hash for {self.path!r}")


@dataclass
class FileHasher:
    """Hashes a file as it is restored; :meth:`matches` compares with the manifest."""

    name: str
    hash: _Hash
    expected: str

    def update(self, data: bytes | memoryview) -> None:
        """Hash the next bytes of the file."""
        self.hash.update(data)

    def matches(self) -> bool:
        """The hash of everything given equals the recorded one."""
        return self.hash.hexdigest() == self.expected


class _Hash(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...
    def hexdigest(self) -> str: ...


class SnapshotStats(_Model):
    """What the backup read and what it added to the repository."""

    bytes: int = 0
    chunks: int = 0
    new_chunks: int = 0
    new_bytes: int = Field(default=0, description="Plain bytes of chunks not stored before.")
    stored_bytes: int = Field(default=0, description="What those took after zstd/encryption.")


class Snapshot(_Model):
    """The manifest of one VM backup."""

    version: int = 1
    id: str
    time: datetime = Field(description="When the VM's backup started.")
    job_id: str
    host: str
    tags: list[str] = Field(default_factory=list)
    vm: VMInfo
    result: VMBackupResult
    files: list[SnapshotFile] = Field(default_factory=list)
    stats: SnapshotStats = Field(default_factory=SnapshotStats)

    @property
    def vm_name(self) -> str:
        """The VM's name when it was backed up."""
        return self.vm.name

    @property
    def short_id(self) -> str:
        """The first 8 characters of the id, as shown to people."""
        return self.id[:8]

    @property
    def successful(self) -> bool:
        """The backup succeeded (it may carry warnings)."""
        return self.result.status == VMStatus.SUCCESS

    def describe(self) -> str:
        """``web01 backup 1a2b3c4d of 2026-11-26 07:15:00+00:00``."""
        return f"{self.vm_name} backup {self.short_id} of {self.time.isoformat(' ', 'seconds')}"

    def to_bytes(self) -> bytes:
        """The JSON plaintext of the manifest."""
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Snapshot:
        """Parse a manifest's plaintext."""
        return cls.model_validate(json.loads(data))


def snapshot_keys(target: Target) -> list[str]:
    """Keys of every snapshot object."""
    return [info.key for info in target.list(SNAPSHOT_PREFIX)]


def read_snapshot(target: Target, codec: Codec, key: str) -> Snapshot:
    """One manifest; :class:`IntegrityError` when it is damaged or malformed."""
    plaintext = codec.unseal(SNAPSHOT_KIND, target.get(key))
    try:
        return Snapshot.from_bytes(plaintext)
    except ValueError as err:
        raise IntegrityError(f"snapshot object {key} is malformed: {err}") from None


def aware(moment: datetime) -> datetime:
    """``moment`` with a time zone: a naive one is taken as the machine's local time."""
    return moment if moment.tzinfo is not None else moment.astimezone()


@dataclass(frozen=True)
class SnapshotFilter:
    """Which snapshots to list: all given criteria must match.

    ``vm`` is a VM name or a shell wildcard (``web*``), compared case-insensitively like
    Hyper-V does; ``tags``: the snapshot has every one of them; ``since``/``until`` are
    inclusive bounds on the snapshot time.
    """

    vm: str | None = None
    host: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    tags: Sequence[str] = ()

    def matches(self, snapshot: Snapshot) -> bool:
        """True when ``snapshot`` passes every criterion (naive bounds are local time)."""
        if self.vm is not None and not fnmatch.fnmatchcase(
            snapshot.vm_name.casefold(), self.vm.casefold()
        ):
            return False
        if self.host is not None and snapshot.host.casefold() != self.host.casefold():
            return False
        if self.since is not None and snapshot.time < aware(self.since):
            return False
        if self.until is not None and snapshot.time > aware(self.until):
            return False
        return all(tag in snapshot.tags for tag in self.tags)
