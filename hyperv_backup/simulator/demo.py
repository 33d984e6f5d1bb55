"""The demo: back up an emulated Hyper-V host into real repositories, verify and restore.

:func:`run_demo` starts the simulator with the default scenario (and Samba serving its
drives, when it can), starts an embedded S3 server when one is installed, backs every VM up
into an encrypted, deduplicating repository in a local folder and into a second one on that
S3 server, re-reads every stored byte of both (``check --read-data``), restores one VM and
verifies its files, and returns a :class:`DemoReport` of all of it. Each step is handed to
``on_step`` as it ends, so a caller can narrate while it runs.

One "conflicting operation" refusal is injected into the backup checkpoint of the
replicated VM (``sql01``, a Hyper-V Replica primary) during the local backup, so the report
shows the engine retrying the way it does when Replica is sending a cycle.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hyperv_backup.backup import BackupJob
from hyperv_backup.host import HyperVHost
from hyperv_backup.policy import BackupPolicy, RetryPolicy, Selection
from hyperv_backup.repository import CheckReport, Repository
from hyperv_backup.results import EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL, JobResult
from hyperv_backup.simulator import FaultSpec, SambaError, Simulator, default_scenario_path
from hyperv_backup.simulator.s3server import (
    ACCESS_KEY,
    SECRET_KEY,
    EmbeddedS3,
    S3ServerKind,
    S3ServerUnavailableError,
    embedded_s3,
    rclone_binary,
)
from hyperv_backup.targets import LocalTarget, S3Target, Target
from hyperv_backup.transfer import FileReader, LocalPathReader

__all__ = [
    "DEMO_BUCKET",
    "DEMO_PASSWORD",
    "DEMO_PREFIX",
    "DedupFigures",
    "DemoReport",
    "DemoRestore",
    "DemoStep",
    "RepositoryRun",
    "S3Choice",
    "S3Info",
    "run_demo",
]

DEMO_PASSWORD = "demo-password"  # noqa: S105 - the demo's repository is throw-away
"""The demo repositories' password (it demonstrates encryption; it protects nothing)."""
DEMO_BUCKET = "demo"
"""The bucket the demo creates on the embedded S3 server."""
DEMO_PREFIX = "repository"
"""The key prefix of the demo's S3 repository in :data:`DEMO_BUCKET`."""
RESTORED_VM = "web01"
RETRIED_VM = "sql01"
_INJECTED_REFUSALS = 2
# Short waits: the demo shows a retry, it need not wait like a production job would.
_DEMO_RETRY = RetryPolicy(initial_wait=0.25, max_wait=1.0, deadline=60.0)

S3Choice = Literal["auto", "moto", "rclone", "none"]


@dataclass
class DemoStep:
    """One step of the demo: what it did, in how long, and what came out."""

    number: int
    title: str
    seconds: float
    detail: str
    ok: bool = True


@dataclass
class DedupFigures:
    """What one backup run read and what it added to a repository, and the repository's size.

    ``stored_bytes`` is what the run's new chunks took after compression and encryption;
    ``repository_stored_bytes`` is the size of every object of the repository.
    """

    backups: int
    bytes_read: int
    chunks: int
    new_chunks: int
    new_bytes: int
    stored_bytes: int
    repository_backups: int
    repository_logical_bytes: int
    repository_stored_bytes: int

    @property
    def reused_chunks(self) -> int:
        """Chunks of this run the repository held already."""
        return self.chunks - self.new_chunks

    @property
    def reused_percent(self) -> float:
        """``reused_chunks`` as a share of the run's chunks."""
        return 100.0 * self.reused_chunks / self.chunks if self.chunks else 0.0


@dataclass
class RepositoryRun:
    """One repository of the demo: the backup into it, its dedup figures and its check."""

    kind: Literal["local", "s3"]
    location: str
    created: bool
    job: JobResult
    dedup: DedupFigures
    check: CheckReport


@dataclass
class S3Info:
    """The embedded S3 server, or why there is none."""

    server: S3ServerKind | None = None
    endpoint: str | None = None
    bucket: str = DEMO_BUCKET
    prefix: str = DEMO_PREFIX
    data_folder: Path | None = None
    conditional_writes: bool | None = None
    note: str = ""

    @property
    def location(self) -> str:
        """``s3://bucket/prefix``."""
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass
class DemoRestore:
    """The restored VM and its files (each verified against its recorded hash while written)."""

    vm: str
    snapshot: str
    folder: Path
    files: list[tuple[str, int]]
    bytes: int


@dataclass
class DemoReport:
    """Everything the demo did and where it left its files."""

    output: Path
    scenario: Path
    host: str
    simulator_url: str
    smb: bool
    smb_note: str
    steps: list[DemoStep] = field(default_factory=list)
    injected: list[str] = field(default_factory=list)
    local: RepositoryRun | None = None
    s3: S3Info = field(default_factory=S3Info)
    s3_run: RepositoryRun | None = None
    restore: DemoRestore | None = None
    seconds: float = 0.0

    @property
    def repositories(self) -> list[RepositoryRun]:
        """The local repository, then the S3 one (if there was a server)."""
        return [r for r in (self.local, self.s3_run) if r is not None]

    @property
    def exit_code(self) -> int:
        """1 if a check found errors or a job failed, 3 if a job was partial, else 0."""
        runs = self.repositories
        if not runs or any(not r.check.ok for r in runs):
            return EXIT_FAILURE
        codes = {r.job.exit_code for r in runs}
        for code in (EXIT_FAILURE, EXIT_PARTIAL):
            if code in codes:
                return code
        return EXIT_OK

    def next_commands(self) -> list[str]:
        """Shell commands to try next on what the demo left (paths as ``output`` was given)."""
        repo = shlex.quote(str(self.output / "repository"))
        env = f"HYPERV_BACKUP_REPO_PASSWORD={DEMO_PASSWORD}"
        tool = _hyperv_backup_command()
        commands = [
            f"{env} {tool} snapshots --repo {repo}",
            f"{env} {tool} check --repo {repo} --read-data",
        ]
        if self.restore is not None:
            again = shlex.quote(str(self.output / "restore-again"))
            commands.append(
                f"{env} {tool} restore {self.restore.snapshot[:8]} --repo {repo} --to {again}"
            )
        if self.s3.server == "rclone" and self.s3.data_folder is not None:
            binary = _rclone_command()
            keys = f"{ACCESS_KEY},{SECRET_KEY}"
            commands += [
                f"{binary} serve s3 {shlex.quote(str(self.s3.data_folder))} "
                f"--addr 127.0.0.1:9000 --auth-key {keys} &",
                f"AWS_ACCESS_KEY_ID={ACCESS_KEY} AWS_SECRET_ACCESS_KEY={SECRET_KEY} {env} "
                f"{tool} snapshots --repo {self.s3.location} "
                "--s3-endpoint http://127.0.0.1:9000",
            ]
        commands.append(f"{tool} simulator serve")
        return commands

    def to_json(self) -> dict[str, Any]:
        """One JSON-ready document (paths absolute). ``job``/``check``/``restored`` are the
        local repository's, as the first version of the demo reported them."""
        local = self.local
        return {
            "job": local.job.model_dump(mode="json") if local else None,
            "check": _check_json(local.check) if local else None,
            "restored": str(self.restore.folder.resolve()) if self.restore else None,
            "exit_code": self.exit_code,
            "seconds": round(self.seconds, 2),
            "steps": [
                {
                    "step": s.number,
                    "title": s.title,
                    "seconds": round(s.seconds, 2),
                    "detail": s.detail,
                    "ok": s.ok,
                }
                for s in self.steps
            ],
            "simulator": {
                "url": self.simulator_url,
                "host": self.host,
                "scenario": str(self.scenario),
                "smb": self.smb,
                "note": self.smb_note,
                "injected_faults": self.injected,
            },
            "repositories": [_run_json(r) for r in self.repositories],
            "s3": {
                "available": self.s3.server is not None,
                "server": self.s3.server,
                "endpoint": self.s3.endpoint,
                "bucket": self.s3.bucket,
                "prefix": self.s3.prefix,
                "location": self.s3.location if self.s3.server else None,
                "data_folder": str(self.s3.data_folder.resolve()) if self.s3.data_folder else None,
                "conditional_writes": self.s3.conditional_writes,
                "note": self.s3.note,
            },
            "restore": (
                {
                    "vm": self.restore.vm,
                    "snapshot": self.restore.snapshot,
                    "folder": str(self.restore.folder.resolve()),
                    "files": [{"path": p, "bytes": b} for p, b in self.restore.files],
                    "bytes": self.restore.bytes,
                    "verified": True,
                }
                if self.restore
                else None
            ),
            "where": {
                "output": str(self.output.resolve()),
                "repository": str((self.output / "repository").resolve()),
                "password": DEMO_PASSWORD,
                "restore": str(self.restore.folder.resolve()) if self.restore else None,
                "state": str((self.output / ".state").resolve()),
                "s3": self.s3.location if self.s3.server else None,
            },
            "next_commands": self.next_commands(),
        }


def _rclone_command() -> str:
    """How to call rclone from here: its name when on PATH, else its (relative) path."""
    rclone = rclone_binary()
    return "rclone" if rclone is None else _as_typed(rclone, "rclone")


def _hyperv_backup_command() -> str:
    """How to call hyperv-backup from here: its name when it is on PATH (an activated
    environment), else the path of the one beside this Python (``./dev.sh`` runs the demo
    from ``.venv`` without activating it)."""
    beside = Path(sys.executable).parent / "hyperv-backup"
    return _as_typed(beside, "hyperv-backup") if beside.exists() else "hyperv-backup"


def _as_typed(program: Path, name: str) -> str:
    found = shutil.which(name)
    if found is not None and Path(found).resolve() == program.resolve():
        return name
    cwd = Path.cwd()
    shown = program.relative_to(cwd) if program.is_relative_to(cwd) else program
    return shlex.quote(str(shown))


def _check_json(check: CheckReport) -> dict[str, Any]:
    return {
        "ok": check.ok,
        "errors": [str(e) for e in check.errors],
        "warnings": list(check.warnings),
        "snapshots": check.snapshots,
        "packs": check.packs,
        "blobs": check.blobs,
        "bytes_read": check.bytes_read,
    }


def _run_json(run: RepositoryRun) -> dict[str, Any]:
    dedup = run.dedup
    return {
        "kind": run.kind,
        "location": run.location,
        "created": run.created,
        "job": run.job.model_dump(mode="json"),
        "dedup": {
            "backups": dedup.backups,
            "bytes_read": dedup.bytes_read,
            "chunks": dedup.chunks,
            "new_chunks": dedup.new_chunks,
            "reused_chunks": dedup.reused_chunks,
            "reused_percent": round(dedup.reused_percent, 1),
            "new_bytes": dedup.new_bytes,
            "stored_bytes": dedup.stored_bytes,
            "repository_backups": dedup.repository_backups,
            "repository_logical_bytes": dedup.repository_logical_bytes,
            "repository_stored_bytes": dedup.repository_stored_bytes,
        },
        "check": _check_json(run.check),
    }


StepCallback = Callable[[DemoStep], None]


class _Narrator:
    """Numbers the steps, times them, and hands each to the callback as it ends."""

    def __init__(self, report: DemoReport, on_step: StepCallback | None) -> None:
        self._report = report
        self._on_step = on_step
        self._started = time.monotonic()

    def restart_clock(self) -> None:
        self._started = time.monotonic()

    def done(self, title: str, detail: str, *, ok: bool = True) -> DemoStep:
        now = time.monotonic()
        step = DemoStep(len(self._report.steps) + 1, title, now - self._started, detail, ok)
        self._started = now
        self._report.steps.append(step)
        if self._on_step is not None:
            self._on_step(step)
        return step


def _start_simulator(stack: ExitStack) -> tuple[Simulator, FileReader, str]:
    """The simulator with Samba if it can run here, else with its drives read as folders."""
    try:
        sim = stack.enter_context(Simulator(smb=True))
        return sim, sim.smb_reader(), ""
    except SambaError as err:
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        note = f"Samba is not available: {first_line}"
    sim = stack.enter_context(Simulator())
    return sim, LocalPathReader(sim.path_map()), note


def _open_or_init(target: Target) -> tuple[Repository, bool]:
    if target.stat("config") is not None:
        return Repository.open(target, DEMO_PASSWORD), False
    return Repository.init(target, DEMO_PASSWORD), True


def _dedup(repository: Repository, target: Target, job: JobResult) -> DedupFigures:
    snapshots = repository.snapshots()
    mine = [s for s in snapshots if s.job_id == job.job_id]
    return DedupFigures(
        backups=len(mine),
        bytes_read=sum(s.stats.bytes for s in mine),
        chunks=sum(s.stats.chunks for s in mine),
        new_chunks=sum(s.stats.new_chunks for s in mine),
        new_bytes=sum(s.stats.new_bytes for s in mine),
        stored_bytes=sum(s.stats.stored_bytes for s in mine),
        repository_backups=len(snapshots),
        repository_logical_bytes=sum(s.stats.bytes for s in snapshots),
        repository_stored_bytes=sum(o.size for o in target.list("")),
    )


def _job_detail(job: JobResult) -> str:
    ok = sum(1 for v in job.vms if v.status.value == "success")
    retries = sum(v.retries for v in job.vms)
    read = sum(v.bytes for v in job.vms)
    return f"{job.status.value}: {ok} of {len(job.vms)} VMs, {_mib(read)} read" + (
        f", {retries} 'conflicting operation' retries" if retries else ""
    )


def _mib(value: int) -> str:
    return f"{value / 2**20:.1f} MiB"


def _check_detail(check: CheckReport) -> str:
    verdict = "no errors" if check.ok else f"{len(check.errors)} error(s)"
    return (
        f"{verdict}: {check.snapshots} backups, {check.packs} packs, "
        f"{_mib(check.bytes_read)} re-read"
    )


def _backup(
    sim: Simulator,
    reader: FileReader,
    repository: Repository,
    state_dir: Path,
) -> JobResult:
    job = BackupJob(
        sim.connection_settings(),
        BackupPolicy(tags=["demo"], retry=_DEMO_RETRY),
        sink=repository,
        reader=reader,
        state_dir=state_dir,
    )
    with repository.shared_lock("demo backup"):
        return job.run(Selection(all=True))


@contextmanager
def _s3_server(
    choice: S3Choice, output: Path, info: S3Info, narrator: _Narrator
) -> Iterator[EmbeddedS3 | None]:
    """Start the chosen (or any) embedded S3 server and its bucket; None if there is none."""
    if choice == "none":
        info.note = "skipped: --s3-server none"
        narrator.done("Start an embedded S3 server", info.note)
        yield None
        return
    try:
        server = embedded_s3(choice, output / "s3")
        server.start()
    except S3ServerUnavailableError as err:
        if choice != "auto":
            raise
        info.note = f"no S3 server available: {err}"
        narrator.done("Start an embedded S3 server", f"not available, skipping the S3 copy ({err})")
        yield None
        return
    try:
        server.create_bucket(DEMO_BUCKET)
        info.server, info.endpoint = server.name, server.endpoint
        info.data_folder = server.data_folder
        where = (
            f"objects kept in {server.data_folder}"
            if server.data_folder is not None
            else "objects kept in memory until the demo ends"
        )
        info.note = where
        narrator.done(
            "Start an embedded S3 server",
            f"{server.name} at {server.endpoint}, bucket '{DEMO_BUCKET}' ({where})",
        )
        yield server
    finally:
        server.stop()


def run_demo(
    output: Path, *, s3: S3Choice = "auto", on_step: StepCallback | None = None
) -> DemoReport:
    """Run the whole demo into ``output`` (created if missing; re-runs reuse its repositories).

    ``s3``: which embedded S3 server to use (``auto``: rclone, else moto, else none;
    ``none``: skip the S3 copy). Raises :class:`~hyperv_backup.errors.HyperVBackupError`
    when a step cannot be done at all; a VM that fails to back up is in the report.
    """
    started = time.monotonic()
    output.mkdir(parents=True, exist_ok=True)
    report = DemoReport(
        output=output,
        scenario=default_scenario_path(),
        host="",
        simulator_url="",
        smb=False,
        smb_note="",
    )
    narrator = _Narrator(report, on_step)
    with ExitStack() as stack:
        sim, reader, report.smb_note = _start_simulator(stack)
        report.smb = not report.smb_note
        report.simulator_url = sim.url
        with HyperVHost(sim.connection_settings()) as host:
            info = host.info()
            vms = host.inventory()
        report.host = f"{info.computer_name} ({info.os_caption})"
        reads = (
            f"its drives served over SMB by a private Samba on 127.0.0.1:{sim.smb_port}"
            if report.smb
            else f"its drives read as local folders ({report.smb_note})"
        )
        narrator.done(
            "Start the emulated Hyper-V host",
            f"{report.host} at {sim.url}, {len(vms)} VMs; {reads}",
        )

        server = stack.enter_context(_s3_server(s3, output, report.s3, narrator))

        local_target = LocalTarget(output / "repository")
        local_repo, created = _open_or_init(local_target)
        stack.enter_context(local_repo)
        sim.add_fault(
            FaultSpec(
                script="new-backup-checkpoint",
                action="conflicting_operation",
                vm=RETRIED_VM,
                times=_INJECTED_REFUSALS,
            )
        )
        report.injected.append(
            f"{_INJECTED_REFUSALS} 'conflicting operation' refusals of {RETRIED_VM}'s backup "
            "checkpoint (as while Hyper-V Replica sends a cycle)"
        )
        narrator.restart_clock()
        local_job = _backup(sim, reader, local_repo, output / ".state")
        local_dedup = _dedup(local_repo, local_target, local_job)
        narrator.done(
            f"Back up every VM into {output / 'repository'}",
            f"{_job_detail(local_job)}; {'new' if created else 'existing'} encrypted repository",
            ok=local_job.status.value != "failed",
        )

        s3_run: tuple[Repository, bool, JobResult, DedupFigures] | None = None
        if server is not None:
            narrator.restart_clock()
            s3_target = stack.enter_context(
                S3Target(server.settings(DEMO_BUCKET, prefix=DEMO_PREFIX))
            )
            report.s3.conditional_writes = s3_target.capabilities.conditional_writes
            s3_repo, s3_created = _open_or_init(s3_target)
            stack.enter_context(s3_repo)
            s3_job = _backup(sim, reader, s3_repo, output / ".state")
            s3_run = (s3_repo, s3_created, s3_job, _dedup(s3_repo, s3_target, s3_job))
            narrator.done(
                f"Back up every VM into {report.s3.location} on {server.name}",
                f"{_job_detail(s3_job)}; "
                f"{'new' if s3_created else 'existing'} encrypted repository",
                ok=s3_job.status.value != "failed",
            )

        narrator.restart_clock()
        local_check = local_repo.check(read_data=True)
        narrator.done(
            f"check --read-data {output / 'repository'}",
            _check_detail(local_check),
            ok=local_check.ok,
        )
        report.local = RepositoryRun(
            "local", str(output / "repository"), created, local_job, local_dedup, local_check
        )
        if s3_run is not None:
            s3_repo, s3_created, s3_job, s3_dedup = s3_run
            s3_check = s3_repo.check(read_data=True)
            narrator.done(
                f"check --read-data {report.s3.location}", _check_detail(s3_check), ok=s3_check.ok
            )
            report.s3_run = RepositoryRun(
                "s3", report.s3.location, s3_created, s3_job, s3_dedup, s3_check
            )

        restored_vm = next((v for v in local_job.vms if v.vm_name == RESTORED_VM), None)
        if restored_vm is not None and restored_vm.location is not None:
            restored = local_repo.restore(
                restored_vm.location, output / "restore" / local_job.job_id, overwrite=True
            )
            files = [
                (name, restored.folder.joinpath(*name.split("/")).stat().st_size)
                for name in restored.files
            ]
            report.restore = DemoRestore(
                RESTORED_VM,
                restored.snapshot_id,
                restored.folder,
                files,
                restored.bytes,
            )
            narrator.done(
                f"Restore {RESTORED_VM} from {output / 'repository'}",
                f"{len(files)} files, {_mib(restored.bytes)}, every file's hash verified, "
                f"into {restored.folder}",
            )
    report.seconds = time.monotonic() - started
    return report
