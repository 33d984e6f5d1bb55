"""The repository: a deduplicating, optionally encrypted store of VM backups on a target.

>>> repo = Repository.init(LocalTarget("/backups/repo"), password="…")     # doctest: +SKIP
>>> job = BackupJob(settings, policy, sink=repo, reader=reader)              # doctest: +SKIP
>>> job.run(Selection(all=True))                                             # doctest: +SKIP
>>> [s.describe() for s in repo.snapshots(vm="web*")]                        # doctest: +SKIP
>>> repo.restore("1a2b3c4d", Path("/restore"))                               # doctest: +SKIP
>>> repo.close()           # waits for uploads, releases locks  # doctest: +SKIP

Objects on the target (see each module for its format)::

    config                  plain JSON: version, id, chunker, pack size, compression, key
    data/<2 hex>/<pack id>  packs of blobs (chunks and chunk lists)     — pack.py
    index/<id>              which blobs each pack holds                 — index.py
    snapshots/<id>          one manifest per VM backup, written last    — snapshot.py
    locks/<id>, locks/exclusive                                         — lock.py

With a retention (``retain_days``, or the S3 target's ``object_lock_days``) the config, every
pack and every snapshot are written with an Object Lock retain-until date, so nobody — not
even someone holding the repository's credentials — can delete a backup before it ends.
Index and lock objects are not retained: prune rewrites the index, and locks are refreshed
and removed all the time (the index can be rebuilt from the retained packs: repair_index).
``forget`` keeps a retained snapshot (and says until when) instead of pretending to delete it.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import logging
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path

from pydantic import ValidationError

from hyperv_backup.errors import (
    HyperVBackupError,
    IntegrityError,
    RepositoryError,
    TargetError,
    WrongPasswordError,
)
from hyperv_backup.models import VMInfo
from hyperv_backup.repository.check import CheckProblem, CheckReport, check_repository
from hyperv_backup.repository.chunker import Chunker
from hyperv_backup.repository.codec import BLOB_OVERHEAD, Codec
from hyperv_backup.repository.config import (
    CONFIG_KEY,
    FORMAT_VERSION,
    ChunkerParams,
    CompressionParams,
    RepositoryConfig,
)
from hyperv_backup.repository.index import INDEX_PREFIX
from hyperv_backup.repository.keys import (
    DEFAULT_SCRYPT_N,
    KeySet,
    KeyUnwrapError,
    lock_master_key,
    unlock_master_key,
)
from hyperv_backup.repository.lock import (
    DEFAULT_REFRESH_EVERY,
    DEFAULT_STALE_AFTER,
    LockInfo,
    RepositoryLock,
    acquire_exclusive,
    acquire_shared,
    read_locks,
)
from hyperv_backup.repository.parent import ParentGuides
from hyperv_backup.repository.prune import PruneReport, prune_repository
from hyperv_backup.repository.repair import IndexRepairReport, repair_index
from hyperv_backup.repository.restore import RestoreReport, restore_snapshot
from hyperv_backup.repository.retention import (
    ForgetReport,
    RetentionDecision,
    RetentionPolicy,
    plan_retention,
)
from hyperv_backup.repository.snapshot import (
    CHUNK_IDS_PER_LIST,
    SNAPSHOT_PREFIX,
    Snapshot,
    SnapshotFilter,
    read_snapshot,
    snapshot_keys,
)
from hyperv_backup.repository.store import BlobStore
from hyperv_backup.repository.writer import SnapshotWriter
from hyperv_backup.targets.base import (
    DEFAULT_ABANDONED_AFTER,
    Target,
    resolve_retention,
    retain_until_for,
)

__all__ = ["DEFAULT_CHUNK_SIZE", "DEFAULT_PACK_MEMORY", "DEFAULT_PACK_SIZE", "Repository"]

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 384 * 1024
"""Average chunk size; see :mod:`hyperv_backup.repository.chunker` for the measurements."""
DEFAULT_PACK_SIZE = 16 * 1024 * 1024
"""Target pack size: few objects per TiB, small enough to hold a few in memory."""
DEFAULT_PACK_MEMORY = 96 * 1024 * 1024
"""Packs being filled or uploaded, all writers together (5 buffers of ~17.6 MiB). With the
interpreter and libraries (~85 MiB), chunker and encoding buffers and the index, a backup
of one VM peaks at 180-230 MiB (``bench/compare.py``)."""


def _max_blob_size(config: RepositoryConfig) -> int:
    """The largest stored blob: a maximum-size chunk or a full chunk list, plus overhead."""
    largest = max(config.chunker.max_size, CHUNK_IDS_PER_LIST * 32)
    return largest + BLOB_OVERHEAD + 1024  # zstd frame slack for a blob it cannot shrink


class Repository:
    """A backup repository on a :class:`~hyperv_backup.targets.Target`; also a capture sink.

    Create one with :meth:`init`, open an existing one with :meth:`open`. As a sink
    (``BackupJob(..., sink=repo)``) every VM backup becomes one snapshot. Thread-safe: the
    engine writes several VMs at once, sharing dedup state and the upload pool.
    """

    def __init__(
        self,
        target: Target,
        config: RepositoryConfig,
        keys: KeySet,
        *,
        upload_threads: int = 3,
        pack_memory: int = DEFAULT_PACK_MEMORY,
        index_every_packs: int = 4,
        lock_stale_after: timedelta = DEFAULT_STALE_AFTER,
        lock_refresh_every: timedelta = DEFAULT_REFRESH_EVERY,
        retain_days: int | None = None,
    ) -> None:
        """Use :meth:`init` or :meth:`open`; the keyword options are the same as theirs."""
        self._target = target
        self._config = config
        self._retention = resolve_retention(target, retain_days)
        self._codec = Codec(keys, config.compression.level)
        self._chunker = Chunker(config.chunker)
        self._store = BlobStore(
            target,
            self._codec,
            pack_size=config.pack_size,
            max_blob_size=_max_blob_size(config),
            pack_id_hash=config.pack_id_hash,
            upload_threads=upload_threads,
            pack_memory=pack_memory,
            index_every_packs=index_every_packs,
            retention=self._retention,
        )
        self._stale_after = lock_stale_after
        self._refresh_every = lock_refresh_every
        self._guard = threading.Lock()
        self._shared: RepositoryLock | None = None
        self._shared_users = 0
        self._summaries_lock = threading.Lock()
        self._summaries: dict[str, tuple[str, datetime, str]] = {}  # key: vm id, time, id

    def __repr__(self) -> str:
        return f"Repository({self.id[:8]}, {self._target!r}, encrypted={self.encrypted})"

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- create and open ----------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        target: Target,
        password: str | bytes | None = None,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        pack_size: int = DEFAULT_PACK_SIZE,
        compression_level: int = 3,
        scrypt_n: int = DEFAULT_SCRYPT_N,
        upload_threads: int = 3,
        pack_memory: int = DEFAULT_PACK_MEMORY,
        index_every_packs: int = 4,
        lock_stale_after: timedelta = DEFAULT_STALE_AFTER,
        lock_refresh_every: timedelta = DEFAULT_REFRESH_EVERY,
        retain_days: int | None = None,
    ) -> Repository:
        """Create a repository on an empty ``target`` and open it.

        With ``password`` everything but ``config`` is encrypted (AES-256-GCM); ``scrypt_n``
        is the scrypt cost of unlocking it. ``chunk_size`` is the FastCDC average (fixed for
        the repository's life), ``pack_size`` the pack target (16-32 MiB recommended),
        ``compression_level`` zstd's. The other options are those of :meth:`open`.
        """
        retention = resolve_retention(target, retain_days)
        if target.stat(CONFIG_KEY) is not None:
            raise RepositoryError(f"{target!r} already holds a repository; open it instead")
        if any(True for _ in target.list(SNAPSHOT_PREFIX)) or any(
            True for _ in target.list(INDEX_PREFIX)
        ):
            raise RepositoryError(
                f"{target!r} holds repository objects but no config; refusing to create a new "
                "repository over them"
            )
        repository_id = secrets.token_hex(16)
        try:
            fields: dict[str, object] = {
                "id": repository_id,
                "created": datetime.now(timezone.utc),
                "chunker": ChunkerParams.for_average(chunk_size),
                "pack_size": pack_size,
                "compression": CompressionParams(level=compression_level),
                "pack_id_hash": "blake3",
            }
            if password is not None:
                master_key, encryption = lock_master_key(repository_id, password, scrypt_n=scrypt_n)
                keys = KeySet.from_master_key(master_key)
                fields["encryption"] = encryption
            else:
                keys = KeySet.unencrypted(secrets.token_bytes(32))
                fields["id_key"] = base64.b64encode(keys.id_key).decode()
            config = RepositoryConfig.model_validate(fields)
        except ValidationError as err:
            raise RepositoryError(f"invalid repository settings: {err}") from None
        data = config.model_dump_json(indent=2).encode("utf-8")
        # Retained too: it holds the wrapped key, without which the retained data is noise.
        if not target.put(
            CONFIG_KEY, data, if_absent=True, retain_until=retain_until_for(retention)
        ):
            raise RepositoryError(f"{target!r} already holds a repository; open it instead")
        logger.info("created repository %s on %r", repository_id[:8], target)
        return cls(
            target,
            config,
            keys,
            upload_threads=upload_threads,
            pack_memory=pack_memory,
            index_every_packs=index_every_packs,
            lock_stale_after=lock_stale_after,
            lock_refresh_every=lock_refresh_every,
            retain_days=retain_days,
        )

    @staticmethod
    def exists(target: Target) -> bool:
        """True when ``target`` holds a repository (its ``config`` object); nothing is read
        or unlocked. Use it to choose between :meth:`init` and :meth:`open`."""
        return target.stat(CONFIG_KEY) is not None

    @classmethod
    def open(
        cls,
        target: Target,
        password: str | bytes | None = None,
        *,
        upload_threads: int = 3,
        pack_memory: int = DEFAULT_PACK_MEMORY,
        index_every_packs: int = 4,
        lock_stale_after: timedelta = DEFAULT_STALE_AFTER,
        lock_refresh_every: timedelta = DEFAULT_REFRESH_EVERY,
        retain_days: int | None = None,
    ) -> Repository:
        """Open the repository on ``target``.

        The index is loaded when a backup, check or restore takes the repository's lock
        (never earlier: only under a lock is it sure not to be pruned meanwhile).

        ``upload_threads`` packs upload in parallel; packs being filled or uploaded hold at
        most ``pack_memory`` bytes (at least two packs), however many VMs are written at once
        (a writer waits for an upload beyond it); an index object is written every
        ``index_every_packs`` packs, so a re-run after a crash reuses what the killed run
        stored. A lock is refreshed every ``lock_refresh_every`` and is stale (ignored by
        others) when not refreshed for ``lock_stale_after``.

        ``retain_days``: Object Lock retention of the packs and snapshots this session
        writes (0: none); by default the target's (S3: ``object_lock_days``).
        :class:`~hyperv_backup.errors.TargetError` if the target cannot retain.

        What killed writers left on the target more than a day ago (unfinished multipart
        uploads, temporary files) is removed; :meth:`prune` removes the younger ones too.
        """
        config = cls._read_config(target)
        keys = cls._unlock(target, config, password)
        repository = cls(
            target,
            config,
            keys,
            upload_threads=upload_threads,
            pack_memory=pack_memory,
            index_every_packs=index_every_packs,
            lock_stale_after=lock_stale_after,
            lock_refresh_every=lock_refresh_every,
            retain_days=retain_days,
        )
        repository._abort_incomplete_uploads(DEFAULT_ABANDONED_AFTER)
        return repository

    def _abort_incomplete_uploads(self, older_than: timedelta) -> int:
        """Remove partial uploads abandoned more than ``older_than`` ago; best effort."""
        try:
            aborted = self._target.abort_incomplete_uploads(older_than)
        except TargetError as err:
            # Read-only credentials may not list uploads; it is only housekeeping.
            logger.warning("could not look for unfinished uploads on %r: %s", self._target, err)
            return 0
        if aborted:
            logger.info("removed %d unfinished upload(s) killed writers left", aborted)
        return aborted

    @staticmethod
    def _read_config(target: Target) -> RepositoryConfig:
        try:
            data = target.get(CONFIG_KEY)
        except FileNotFoundError:
            raise RepositoryError(
                f"no repository at {target!r} (it has no config object); create one with init"
            ) from None
        try:
            config = RepositoryConfig.model_validate_json(data)
        except ValidationError as err:
            raise RepositoryError(
                f"the config of the repository at {target!r} is invalid: {err}"
            ) from None
        if config.version > FORMAT_VERSION:
            raise RepositoryError(
                f"the repository at {target!r} has format version {config.version}; this "
                f"hyperv-backup reads up to {FORMAT_VERSION}: upgrade it"
            )
        return config

    @staticmethod
    def _unlock(target: Target, config: RepositoryConfig, password: str | bytes | None) -> KeySet:
        name = f"repository {config.id[:8]} at {target!r}"
        if config.encryption is None:
            if password is not None:
                raise RepositoryError(
                    f"{name} is not encrypted, but a password was given; open it without one "
                    "(its data is not protected by a password)"
                )
            assert config.id_key is not None
            return KeySet.unencrypted(base64.b64decode(config.id_key))
        if password is None:
            raise RepositoryError(f"{name} is encrypted: give its password")
        try:
            master_key = unlock_master_key(config.id, password, config.encryption)
        except KeyUnwrapError:
            raise WrongPasswordError(
                f"wrong password for {name}: it does not unlock the repository key. Check the "
                "password (or the password file) and try again."
            ) from None
        return KeySet.from_master_key(master_key)

    # --- facts --------------------------------------------------------------------------------

    @property
    def id(self) -> str:
        """The repository id (32 hex characters)."""
        return self._config.id

    @property
    def config(self) -> RepositoryConfig:
        """The repository's config object."""
        return self._config

    @property
    def encrypted(self) -> bool:
        """True when a password protects the repository."""
        return self._config.encrypted

    @property
    def target(self) -> Target:
        """Where the repository's objects live."""
        return self._target

    @property
    def retention(self) -> timedelta | None:
        """How long the packs and snapshots this session writes are retained (Object Lock)."""
        return self._retention

    # --- locks --------------------------------------------------------------------------------

    def _hold_shared(self, purpose: str) -> None:
        with self._guard:
            if self._shared is None:
                lock = acquire_shared(
                    self._target,
                    self._codec,
                    purpose,
                    stale_after=self._stale_after,
                    refresh_every=self._refresh_every,
                )
                try:
                    # Loaded afresh under each new lock: while none was held, another process
                    # may have pruned blobs this process would otherwise dedup against.
                    self._store.load_index()
                except BaseException:
                    lock.release()
                    raise
                self._shared = lock
            self._shared_users += 1

    def _release_shared(self) -> None:
        with self._guard:
            self._shared_users -= 1
            if self._shared_users == 0 and self._shared is not None:
                self._shared.release()
                self._shared = None

    def _check_shared(self) -> None:
        with self._guard:
            if self._shared is not None:
                self._shared.ensure_fresh()

    @contextmanager
    def shared_lock(self, purpose: str = "backup") -> Iterator[None]:
        """Hold the shared lock for a whole job: ``with repo.shared_lock(): job.run(...)``.

        :meth:`open_vm` takes it anyway; taking it first makes a job fail before any VM is
        touched when a forget/prune holds the repository (:class:`LockedError`).
        """
        self._hold_shared(purpose)
        try:
            yield
        finally:
            self._release_shared()

    @contextmanager
    def _exclusive_lock(self, purpose: str, assume_single_writer: bool) -> Iterator[RepositoryLock]:
        with acquire_exclusive(
            self._target,
            self._codec,
            purpose,
            assume_single_writer=assume_single_writer,
            stale_after=self._stale_after,
            refresh_every=self._refresh_every,
        ) as lock:
            yield lock

    def locks(self) -> list[LockInfo]:
        """Every readable lock of the repository (stale ones included; see ``is_stale``)."""
        return [info for _key, info in read_locks(self._target, self._codec) if info is not None]

    def unlock(self, *, remove_all: bool = False) -> list[str]:
        """Remove stale locks (with ``remove_all``: every lock — only when nothing runs)."""
        removed = []
        for key, info in read_locks(self._target, self._codec):
            if remove_all or info is None or info.is_stale(self._stale_after):
                self._target.delete(key)
                removed.append(key)
        return removed

    # --- backup -------------------------------------------------------------------------------

    def open_vm(
        self,
        job_id: str,
        vm: VMInfo,
        *,
        host: str,
        tags: Sequence[str] = (),
        parent: str | None = "latest",
    ) -> SnapshotWriter:
        """Start one VM's backup (the :class:`~hyperv_backup.sink.CaptureSink` protocol).

        Takes the shared lock (released when the last writer commits or aborts).
        ``parent`` is the earlier backup whose chunks guide this one's chunking (the same
        chunks, found faster; see :mod:`~hyperv_backup.repository.guide`): ``"latest"``
        (the newest snapshot of the same VM id, looked up when the first file is written),
        a snapshot id, or None for no guide.
        """
        find_parent: Callable[[], Snapshot | None]
        if parent == "latest":
            find_parent = functools.partial(self._latest_snapshot_of, vm)
        elif parent is None:
            find_parent = _no_parent
        else:
            chosen = self.snapshot(parent)  # a wrong id fails here, before any work
            find_parent = functools.partial(_given, chosen)
        self._hold_shared(f"backup of job {job_id}")
        return SnapshotWriter(
            repository_id=self.id,
            store=self._store,
            chunker=self._chunker,
            job_id=job_id,
            vm=vm,
            host=host,
            tags=tags,
            check_lock=self._check_shared,
            on_close=self._release_shared,
            guides=ParentGuides(self._store, find_parent),
        )

    def _latest_snapshot_of(self, vm: VMInfo) -> Snapshot | None:
        """The newest snapshot of ``vm`` (by id). Manifests are read once per repository
        object; later lookups read only new ones."""
        with self._summaries_lock:
            keys = snapshot_keys(self._target)
            unseen = [key for key in keys if key not in self._summaries]
            fresh: dict[str, Snapshot] = {}
            for key, snapshot in zip(unseen, self._read_snapshots(unseen), strict=True):
                if snapshot is not None:
                    fresh[key] = snapshot
                    self._summaries[key] = (str(snapshot.vm.id), snapshot.time, snapshot.id)
            wanted = str(vm.id)
            mine = [key for key in keys if self._summaries.get(key, ("",))[0] == wanted]
        if not mine:
            return None
        newest = max(mine, key=lambda key: self._summaries[key][1:])
        if newest in fresh:
            return fresh[newest]
        try:
            return read_snapshot(self._target, self._codec, newest)
        except FileNotFoundError:
            return None  # forgotten meanwhile

    # --- snapshots ----------------------------------------------------------------------------

    def snapshots(
        self,
        *,
        vm: str | None = None,
        host: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        tags: Sequence[str] = (),
    ) -> list[Snapshot]:
        """Snapshots matching every given filter, newest first (see :class:`SnapshotFilter`)."""
        wanted = SnapshotFilter(vm=vm, host=host, since=since, until=until, tags=tuple(tags))
        found = [s for s in self._read_all_snapshots() if wanted.matches(s)]
        return sorted(found, key=lambda s: (s.time, s.id), reverse=True)

    def _read_all_snapshots(self) -> list[Snapshot]:
        return [s for s in self._read_snapshots(snapshot_keys(self._target)) if s is not None]

    def _read_snapshots(self, keys: list[str]) -> list[Snapshot | None]:
        """The manifests at ``keys``, in order; None where one is gone or damaged."""

        def read(key: str) -> Snapshot | None:
            try:
                return read_snapshot(self._target, self._codec, key)
            except FileNotFoundError:
                return None  # forgotten meanwhile
            except IntegrityError as err:
                logger.warning("skipping snapshot object %s: %s", key, err)
                return None

        if len(keys) <= 1:
            return [read(key) for key in keys]
        with ThreadPoolExecutor(4, "hyperv-backup-snapshots") as pool:
            return list(pool.map(read, keys))

    def snapshot(self, snapshot_id: str) -> Snapshot:
        """One snapshot by id, unique id prefix (≥ 4 characters) or location string."""
        repository_id, _, wanted = snapshot_id.strip().lower().rpartition(":")
        if repository_id and repository_id != self.id:
            raise RepositoryError(
                f"{snapshot_id!r} is a backup in repository {repository_id[:8]}, but this is "
                f"repository {self.id[:8]} ({self._target!r})"
            )
        if len(wanted) < 4:
            raise RepositoryError(
                f"snapshot id {snapshot_id!r} is too short (4 characters at least)"
            )
        keys = [
            k for k in snapshot_keys(self._target) if k[len(SNAPSHOT_PREFIX) :].startswith(wanted)
        ]
        if not keys:
            raise RepositoryError(f"no snapshot {snapshot_id!r} in repository {self.id[:8]}")
        if len(keys) > 1:
            raise RepositoryError(f"snapshot id {snapshot_id!r} is ambiguous: give more of it")
        return read_snapshot(self._target, self._codec, keys[0])

    # --- verify and restore -------------------------------------------------------------------

    def check(
        self,
        *,
        read_data: bool = False,
        threads: int = 2,
        progress: Callable[[int], None] | None = None,
    ) -> CheckReport:
        """Verify the repository; a report, not exceptions, for damaged data.

        Structure always; with ``read_data`` every pack is downloaded and every blob
        decrypted and hashed (``threads`` packs at a time). Damaged data is reported with the
        VM backups and files it affects. ``progress``: called with each verified pack's size.
        """
        with self.shared_lock("check"):
            config_problem: CheckProblem | None = None
            try:
                self._read_config(self._target)
            except HyperVBackupError as err:
                config_problem = CheckProblem("config", str(err))
            self._store.refresh_index()
            report = check_repository(
                self._store, read_data=read_data, threads=threads, progress=progress
            )
        if config_problem is not None:
            report.errors.insert(0, config_problem)
        return report

    def restore(
        self,
        snapshot_id: str,
        destination: Path | str,
        *,
        paths: Sequence[str] | None = None,
        overwrite: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> RestoreReport:
        """Write a snapshot's files under ``destination/<VM name>/`` in the Export-VM layout.

        ``paths``: only files whose relative path equals or lies under one of these
        ('Virtual Hard Disks', 'Virtual Machines/…vmcx'). Every file is verified against its
        recorded hash as it is written (:class:`IntegrityError` names file and snapshot; the partial
        file is removed). Existing files are refused unless ``overwrite``. ``progress``: called
        with the byte count of each chunk written.
        """
        snapshot = self.snapshot(snapshot_id)
        with self.shared_lock(f"restore of {snapshot.short_id}"):
            self._store.refresh_index()
            return restore_snapshot(
                self._store,
                snapshot,
                Path(destination),
                paths=paths,
                overwrite=overwrite,
                progress=progress,
            )

    # --- retention ----------------------------------------------------------------------------

    def forget(
        self,
        policy: RetentionPolicy,
        *,
        dry_run: bool = True,
        vm: str | None = None,
        host: str | None = None,
        zone: tzinfo | None = None,
        assume_single_writer: bool = False,
    ) -> ForgetReport:
        """Apply ``policy`` per VM: remove the snapshots no rule keeps (see retention.py).

        Dry run by default. The newest successful backup of each VM is always kept. Removing
        takes the exclusive lock, so it refuses (:class:`LockedError`) while a backup runs.
        Data is freed by :meth:`prune`. ``vm``/``host`` narrow it; periods count in ``zone``
        (default: local time).

        A snapshot still under Object Lock retention is kept, with the reason "retained
        until …" (see :attr:`ForgetReport.retained`): deleting it would only hide it.
        """
        if dry_run:
            chosen = self.snapshots(vm=vm, host=host)
            decisions = self._keep_retained(plan_retention(chosen, policy, zone))
            return ForgetReport(dry_run=True, decisions=decisions)
        with self._exclusive_lock("forget", assume_single_writer) as lock:
            # Decided under the lock: a backup may have finished since a dry run.
            chosen = self.snapshots(vm=vm, host=host)
            decisions = self._keep_retained(plan_retention(chosen, policy, zone))
            report = ForgetReport(dry_run=False, decisions=decisions)
            for decision in report.retained:
                logger.info(
                    "kept %s: %s", decision.snapshot.describe(), ", ".join(decision.reasons)
                )
            for decision in report.removed:
                lock.ensure_fresh()
                self._target.delete(SNAPSHOT_PREFIX + decision.snapshot.id)
                logger.info("forgot %s", decision.snapshot.describe())
            return report

    def _keep_retained(self, decisions: list[RetentionDecision]) -> list[RetentionDecision]:
        """Turn "remove" into "keep" for snapshots whose Object Lock retention has not ended."""
        if not self._target.capabilities.object_lock:
            return decisions
        candidates = [d for d in decisions if not d.keep]
        with ThreadPoolExecutor(4, "hyperv-backup-retention") as pool:
            ends = list(
                pool.map(
                    lambda d: self._target.retention(SNAPSHOT_PREFIX + d.snapshot.id), candidates
                )
            )
        now = datetime.now(timezone.utc)
        retained = {
            d.snapshot.id: end
            for d, end in zip(candidates, ends, strict=True)
            if end is not None and end > now
        }
        out = []
        for decision in decisions:
            end = retained.get(decision.snapshot.id)
            if end is None:
                out.append(decision)
                continue
            when = end.astimezone(timezone.utc).isoformat(" ", "seconds")
            reason = f"retained until {when} (Object Lock): it cannot be deleted before then"
            out.append(
                dataclasses.replace(decision, keep=True, reasons=(reason,), retained_until=end)
            )
        return out

    def prune(
        self,
        *,
        dry_run: bool = True,
        repack_threshold: float | None = None,
        assume_single_writer: bool = False,
    ) -> PruneReport:
        """Delete packs no snapshot uses and rewrite the index (see prune.py).

        Dry run by default. ``repack_threshold`` (0-1): repack packs whose unused share is at
        least this. Takes the exclusive lock: refuses while a backup runs. Under it no other
        process writes, so every unfinished upload on the target was abandoned by a killed
        one: prune removes them whatever their age.
        """
        if repack_threshold is not None and not 0 < repack_threshold <= 1:
            raise RepositoryError("repack_threshold is a fraction between 0 and 1")
        with self._exclusive_lock("prune", assume_single_writer) as lock:
            aborted = 0 if dry_run else self._abort_incomplete_uploads(timedelta(0))
            self._store.load_index()
            report = prune_repository(
                self._store,
                dry_run=dry_run,
                repack_threshold=repack_threshold,
                ensure_locked=lock.ensure_fresh,
            )
            report.uploads_aborted = aborted
            return report

    def repair_index(self, *, assume_single_writer: bool = False) -> IndexRepairReport:
        """Rebuild what the index lacks from the packs' headers (see repair.py).

        For an index object that ``check`` reports unreadable, or packs left unindexed by a
        killed backup (they then serve dedup again). Takes the exclusive lock.
        """
        with self._exclusive_lock("repair-index", assume_single_writer):
            return repair_index(self._store)

    # --- end ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Finish uploads, write what the index still lacks, release locks."""
        try:
            self._store.close()
            self._store.index.flush()
        finally:
            with self._guard:
                lock, self._shared = self._shared, None
                self._shared_users = 0
            if lock is not None:
                lock.release()


def _no_parent() -> Snapshot | None:
    return None


def _given(snapshot: Snapshot) -> Snapshot | None:
    return snapshot
