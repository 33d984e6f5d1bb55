"""What the command prints, as a script and as a person read it.

With ``--json`` stdout holds exactly one JSON document — the report, or an error document
when the command fails — and nothing else. ``--dry-run`` changes nothing (compared on the
emulated host, in its journal and on disk). Progress bars are drawn for a terminal only.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from hyperv_backup import (
    BackupJob,
    BackupPolicy,
    DirectorySink,
    HyperVHost,
    LocalPathReader,
    Selection,
)
from hyperv_backup.backup import ProgressEvent
from hyperv_backup.cli import app
from hyperv_backup.cli.progress import BackupProgress, ByteProgress
from hyperv_backup.journal import Journal
from hyperv_backup.ps_scripts import SCRIPTS, NewBackupCheckpointParams, NewStagingFolderParams
from hyperv_backup.render import format_bytes
from hyperv_backup.repository import Repository
from hyperv_backup.simulator import Simulator
from hyperv_backup.targets import LocalTarget

MiB = 2**20
REPO_PASSWORD = "correct horse"


def vm(name: str) -> dict[str, Any]:
    """A small running VM with one 1 MiB disk."""
    disk = {"file": {"path": rf"D:\VMs\{name}\{name}.vhdx", "size": "60 GiB", "file_size": MiB}}
    return {"name": name, "disks": [disk]}


@dataclass
class World:
    """An emulated host (with SMB) and a repository holding one backup of each VM."""

    sim: Simulator
    repo: str
    state: Path
    snapshot: str
    """The backup of 'web'."""

    @property
    def env(self) -> dict[str, str | None]:
        return {
            "HYPERV_BACKUP_PASSWORD": self.sim.scenario.credentials.password,
            "HYPERV_BACKUP_REPO_PASSWORD": REPO_PASSWORD,
            "COLUMNS": "200",
        }

    @property
    def connect(self) -> list[str]:
        return _connect_args(self.sim)

    @property
    def read(self) -> list[str]:
        """The connection, reading the host's drives through their local folders."""
        maps = [a for d, f in self.sim.path_map().items() for a in ("--path-map", f"{d}={f}")]
        return [*self.connect, *maps]

    @property
    def smb(self) -> list[str]:
        return ["--smb-port", str(self.sim.smb_port)]

    def run(self, *args: str | Path, env: dict[str, str | None] | None = None) -> Result:
        return CliRunner().invoke(app, [str(a) for a in args], env={**self.env, **(env or {})})


def _connect_args(sim: Simulator) -> list[str]:
    return [
        "--host",
        "127.0.0.1",
        "--port",
        str(sim.port),
        "--auth",
        "basic",
        "-u",
        sim.scenario.credentials.username,
        "--ca-bundle",
        str(sim.ca_pem),
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("cli-output")
    with Simulator({"vms": [vm("web"), vm("db")]}, smb=True) as sim:
        here = World(sim, str(folder / "repo"), folder / "state", snapshot="")
        assert here.run("init", "--repo", here.repo).exit_code == 0
        backup = here.run(
            "backup", "--all", "--repo", here.repo, "--state-dir", here.state, *here.read, "--json"
        )
        assert backup.exit_code == 0, backup.output
        web = next(v for v in json.loads(backup.stdout)["vms"] if v["vm_name"] == "web")
        here.snapshot = web["location"].rpartition(":")[2][:12]
        yield here


def one_document(result: Result) -> Any:
    """stdout parsed as a single JSON document (json.loads refuses anything around it)."""
    assert "\x1b" not in result.stdout  # no terminal control codes
    return json.loads(result.stdout)


# --- --json: one document per command -----------------------------------------------------

Command = Callable[[World, Path], list[Any]]

COMMANDS: dict[str, tuple[Command, Callable[[Any], bool]]] = {
    "inventory": (
        lambda w, t: ["inventory", *w.connect, "--json"],
        lambda d: len(d["vms"]) == 2,
    ),
    "plan": (
        lambda w, t: ["plan", "--all", *w.read, "--json"],
        lambda d: {v["vm_name"] for v in d["vms"]} == {"web", "db"},
    ),
    "backup": (
        lambda w, t: ["backup", "web", "--to", t / "b", "--state-dir", w.state, *w.read, "--json"],
        lambda d: d["status"] == "success",
    ),
    "backup --dry-run": (
        lambda w, t: ["backup", "--all", "--repo", w.repo, "--dry-run", *w.read, "--json"],
        lambda d: len(d["vms"]) == 2,
    ),
    "cleanup": (
        lambda w, t: ["cleanup", "--state-dir", w.state, *w.connect, "--json"],
        lambda d: d == {"undone": [], "errors": []},
    ),
    "cleanup --dry-run": (
        lambda w, t: ["cleanup", "--state-dir", w.state, "--dry-run", *w.connect, "--json"],
        lambda d: d["dry_run"] and d["would_undo"] == [],
    ),
    "init": (
        lambda w, t: ["init", "--repo", t / "new", "--json"],
        lambda d: d["encrypted"] and len(d["id"]) == 32,
    ),
    "init --dry-run": (
        lambda w, t: ["init", "--repo", t / "new", "--dry-run", "--json"],
        lambda d: d["dry_run"] and d["refusals"] == [],
    ),
    "snapshots": (
        lambda w, t: ["snapshots", "--repo", w.repo, "--json"],
        lambda d: {s["vm"]["name"] for s in d} >= {"web", "db"},
    ),
    "check --read-data": (
        lambda w, t: ["check", "--repo", w.repo, "--read-data", "--json"],
        lambda d: d["ok"] and d["bytes_read"] > 0,
    ),
    "restore": (
        lambda w, t: ["restore", w.snapshot, "--repo", w.repo, "--to", t / "r", "--json"],
        lambda d: d["bytes"] > MiB,
    ),
    "restore --dry-run": (
        lambda w, t: ["restore", w.snapshot, "--repo", w.repo, "--to", t, "--dry-run", "--json"],
        lambda d: d["dry_run"] and d["bytes"] > MiB,
    ),
    "restore --to-host --dry-run": (
        lambda w, t: [
            "restore",
            w.snapshot,
            "--repo",
            w.repo,
            "--to-host",
            r"D:\Preview",
            "--dry-run",
            *w.connect,
            *w.smb,
            "--json",
        ],
        lambda d: d["dry_run"] and d["host"] == "127.0.0.1",
    ),
    "forget --dry-run": (
        lambda w, t: ["forget", "--repo", w.repo, "--keep-last", "1", "--dry-run", "--json"],
        lambda d: d["dry_run"] and len(d["kept"]) >= 2,
    ),
    "prune --dry-run": (
        lambda w, t: ["prune", "--repo", w.repo, "--dry-run", "--json"],
        lambda d: d["dry_run"] and d["packs"] > 0,
    ),
    "prune": (
        lambda w, t: ["prune", "--repo", w.repo, "--json"],
        lambda d: not d["dry_run"] and d["packs_deleted"] == [],
    ),
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_json_output_is_one_document(world: World, tmp_path: Path, command: str) -> None:
    args, looks_right = COMMANDS[command]
    result = world.run(*args(world, tmp_path))
    assert result.exit_code == 0, result.output
    document = one_document(result)
    assert looks_right(document), document


def test_logs_of_a_verbose_json_backup_go_to_stderr_only(world: World, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hyperv_backup",
            "-vv",
            "backup",
            "db",
            "--to",
            str(tmp_path / "b"),
            "--state-dir",
            str(world.state),
            *world.read,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HYPERV_BACKUP_PASSWORD": world.sim.scenario.credentials.password},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "success"
    assert "INFO hyperv_backup" in done.stderr  # -vv logs, and they went to stderr


FAILURES: dict[str, tuple[Command, int, str]] = {
    "bad --auth": (
        lambda w, t: ["inventory", "--host", "127.0.0.1", "--auth", "bogus", "-u", "x", "--json"],
        2,
        "ConfigError",
    ),
    "no VM selected": (
        lambda w, t: ["backup", "--to", t, *w.read, "--json"],
        2,
        "ConfigError",
    ),
    "backup with nowhere to go": (
        lambda w, t: ["backup", "--all", *w.read, "--json"],
        2,
        "ConfigError",
    ),
    "unknown VM": (
        lambda w, t: ["inventory", "ghost", *w.connect, "--json"],
        1,
        "VMNotFoundError",
    ),
    "init over a repository": (
        lambda w, t: ["init", "--repo", w.repo, "--json"],
        1,
        "RepositoryError",
    ),
    "unknown backup": (
        lambda w, t: ["restore", "ffffffff", "--repo", w.repo, "--to", t, "--json"],
        1,
        "RepositoryError",
    ),
    "restore with no destination": (
        lambda w, t: ["restore", w.snapshot, "--repo", w.repo, "--json"],
        2,
        "ConfigError",
    ),
    "forget without a rule": (
        lambda w, t: ["forget", "--repo", w.repo, "--json"],
        2,
        "ConfigError",
    ),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_a_failing_command_prints_an_error_document(
    world: World, tmp_path: Path, case: str
) -> None:
    args, code, kind = FAILURES[case]
    result = world.run(*args(world, tmp_path))
    assert result.exit_code == code, result.output
    document = one_document(result)
    assert document == {
        "error": {"type": kind, "message": document["error"]["message"]},
        "exit_code": code,
    }
    # The person watching reads the same words on stderr.
    assert "error:" in result.stderr
    assert document["error"]["message"][:30] in " ".join(result.stderr.split())


def test_a_wrong_repository_password_is_an_error_document_without_the_password(
    world: World,
) -> None:
    result = world.run(
        "snapshots", "--repo", world.repo, "--json", env={"HYPERV_BACKUP_REPO_PASSWORD": "nope-7"}
    )
    assert result.exit_code == 1
    document = one_document(result)
    assert document["exit_code"] == 1
    assert "password" in document["error"]["message"]
    assert "nope-7" not in result.stdout + result.stderr


# --- --dry-run changes nothing --------------------------------------------------------------


def _host_state(sim: Simulator) -> dict[str, Any]:
    emulator = sim.emulator
    return {
        "checkpoints": {
            name: sorted((c.name, str(c.id)) for c in emulator.checkpoints(name))
            for name in ("web", "db")
        },
        "staging": sorted(emulator.staging_folders),
        "shadows": len(emulator.shadows),
        "shares": sorted(s.name for s in emulator.smb_shares),
        "events": len(emulator.events),
        "vms": [(v.name, v.state, v.replication.state) for v in emulator.inventory()],
    }


def _scripts_called_since(sim: Simulator, count: int) -> set[str]:
    return {call.script for call in sim.emulator.calls[count:]}


def test_cleanup_dry_run_lists_what_a_cleanup_undoes_and_changes_nothing(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("web"), vm("db")]})
    state = tmp_path / "state"
    journal = Journal(state, "127.0.0.1")
    job = "20260101T000000Z-aaaaaa"
    web_id = str(sim.emulator.vm_info("web").id)
    # What a killed run of this machine left: a checkpoint and a staging folder, journalled.
    with HyperVHost(sim.connection_settings()) as host:
        entry = journal.acquire(
            job, "checkpoint", vm_name="web", vm_id=web_id, checkpoint_name=f"hyperv-backup-{job}"
        )
        checkpoint = host.runner.run(
            SCRIPTS["new-backup-checkpoint"],
            NewBackupCheckpointParams(
                vm_name="web", checkpoint_name=f"hyperv-backup-{job}", checkpoint_type="Standard"
            ),
        )
        journal.update(entry, checkpoint_id=str(checkpoint.id))
        entry = journal.acquire(job, "staging", vm_name="web", vm_id=web_id)
        folder = host.runner.run(
            SCRIPTS["new-staging-folder"],
            NewStagingFolderParams(
                root=BackupPolicy().staging_root, job_id=job, vm_id=web_id, required_bytes=0
            ),
        )
        journal.update(entry, path=folder.path)
        # And another machine's dead run, which no journal here knows.
        host.runner.run(
            SCRIPTS["new-backup-checkpoint"],
            NewBackupCheckpointParams(
                vm_name="db",
                checkpoint_name="hyperv-backup-20260102T000000Z-bbbbbb",
                checkpoint_type="Standard",
            ),
        )
    before, journalled, calls = _host_state(sim), journal.path.read_bytes(), len(sim.emulator.calls)
    env = {"HYPERV_BACKUP_PASSWORD": sim.scenario.credentials.password, "COLUMNS": "200"}
    cleanup = ["cleanup", "--state-dir", str(state), *_connect_args(sim)]
    runner = CliRunner()

    dry = runner.invoke(app, [*cleanup, "--dry-run", "--json"], env=env)
    assert dry.exit_code == 0, dry.output
    planned = one_document(dry)["would_undo"]
    # Each once, in the order a cleanup goes: the journal's, then the host's.
    assert [(p["source"], p["kind"], p["vm_name"]) for p in planned] == [
        ("journal", "checkpoint", "web"),
        ("journal", "staging", "web"),
        ("host", "checkpoint", "db"),
    ]
    assert folder.path in planned[1]["action"]
    assert "hyperv-backup-20260102T000000Z-bbbbbb" in planned[2]["action"]
    told = runner.invoke(app, [*cleanup, "--dry-run"], env=env)
    assert told.exit_code == 0, told.output
    assert told.stdout.count("would remove") == 3

    assert _host_state(sim) == before
    assert journal.path.read_bytes() == journalled
    assert _scripts_called_since(sim, calls) == {"get-host-info", "get-backup-leftovers"}

    # The real cleanup then undoes exactly what the dry run listed.
    done = runner.invoke(app, [*cleanup, "--json"], env=env)
    assert done.exit_code == 0, done.output
    assert len(one_document(done)["undone"]) == len(planned)
    assert sim.emulator.staging_folders == []
    assert not [c for c in sim.emulator.checkpoints("db") if c.name.startswith("hyperv-backup")]


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def test_restore_dry_run_lists_files_sizes_and_destinations_and_writes_nothing(
    world: World, tmp_path: Path
) -> None:
    with Repository.open(LocalTarget(world.repo), REPO_PASSWORD) as repository:
        snapshot = repository.snapshot(world.snapshot)
    target = tmp_path / "restore"
    restore = ["restore", world.snapshot, "--repo", world.repo, "--to", target]

    dry = world.run(*restore, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = one_document(dry)
    assert not target.exists()
    assert plan["folder"] == str(target / "web")
    assert plan["folder_exists"] is False
    assert {f["path"]: f["bytes"] for f in plan["files"]} == {
        f.path: f.size for f in snapshot.files
    }
    assert plan["bytes"] == sum(f.size for f in snapshot.files)
    assert all(Path(f["destination"]).is_relative_to(target / "web") for f in plan["files"])
    assert not any(f["exists"] for f in plan["files"])
    assert plan["refusals"] == []

    assert world.run(*restore).exit_code == 0
    restored = _digests(target)
    again = world.run(*restore, "--dry-run", "--json")
    # The restore itself would refuse to overwrite: the dry run says so, and exits as it would.
    assert again.exit_code == 1
    plan = one_document(again)
    assert plan["folder_exists"] is True
    assert all(f["exists"] for f in plan["files"])
    assert "existing file" in plan["refusals"][0]
    overwrite = world.run(*restore, "--overwrite", "--dry-run", "--json")
    assert overwrite.exit_code == 0
    assert one_document(overwrite)["refusals"] == []
    assert _digests(target) == restored

    told = world.run(*restore, "--dry-run")
    assert told.exit_code == 1
    assert "Would restore" in told.stdout
    assert "would refuse" in told.stderr


def test_restore_to_host_dry_run_writes_nothing_on_the_host(world: World) -> None:
    sim = world.sim
    restore = [
        "restore",
        world.snapshot,
        "--repo",
        world.repo,
        "--to-host",
        r"D:\Preview",
        "--dry-run",
        *world.connect,
        *world.smb,
    ]
    before, calls = _host_state(sim), len(sim.emulator.calls)
    dry = world.run(*restore, "--json")
    assert dry.exit_code == 0, dry.output
    plan = one_document(dry)
    assert plan["folder"] == r"D:\Preview\web"
    assert plan["folder_exists"] is False
    assert all(f["destination"].startswith("D:\\Preview\\web\\") for f in plan["files"])
    assert plan["import_to"] is None

    # Importing as 'web' while 'web' exists would be refused before any byte is written.
    imported = world.run(*restore, "--import", "--json")
    assert imported.exit_code == 1
    plan = one_document(imported)
    assert plan["import_to"] == r"D:\Preview\Hyper-V\web"
    assert any("named 'web' exists" in refusal for refusal in plan["refusals"])

    assert not sim.local_path(r"D:\Preview").exists()
    assert _host_state(sim) == before
    assert _scripts_called_since(sim, calls) <= {"get-host-info", "get-free-space", "get-inventory"}


def test_init_dry_run_creates_nothing_and_says_what_it_would(world: World, tmp_path: Path) -> None:
    new = tmp_path / "new-repo"
    dry = world.run("init", "--repo", new, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = one_document(dry)
    assert not new.exists()
    assert plan["encrypted"] is True
    assert plan["password_from"] == "HYPERV_BACKUP_REPO_PASSWORD"
    assert plan["would_create"] == [f"folder {new}", f"{new}/config"]

    unkeyed = world.run(
        "init", "--repo", new, "--dry-run", "--json", env={"HYPERV_BACKUP_REPO_PASSWORD": None}
    )
    assert unkeyed.exit_code == 2  # as init itself: a usage error
    assert "--no-encryption" in one_document(unkeyed)["refusals"][0]

    taken = world.run("init", "--repo", world.repo, "--dry-run", "--json")
    assert taken.exit_code == 1
    assert "already holds a repository" in one_document(taken)["refusals"][0]
    assert not new.exists()


# --- progress -------------------------------------------------------------------------------


def _job(sim: Simulator, tmp_path: Path, progress: Any) -> BackupJob:
    return BackupJob(
        sim.connection_settings(),
        BackupPolicy(parallel_vms=3),
        sink=DirectorySink(tmp_path / "backups"),
        reader=LocalPathReader(sim.path_map()),
        state_dir=tmp_path / "state",
        progress=progress,
    )


def test_backup_progress_on_a_terminal_shows_each_vm_its_files_and_bytes(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("web"), vm("db"), vm("app")]})
    screen = io.StringIO()
    bars = BackupProgress(Console(file=screen, force_terminal=True, width=160))
    assert bars.callback is not None
    with bars:
        result = _job(sim, tmp_path, bars.callback).run(Selection(all=True))
    text = screen.getvalue()
    assert len(result.vms) == 3
    for done in result.vms:
        assert f"{done.vm_name}: success ({format_bytes(done.bytes)}" in text
        disk = next(f for f in done.files if f.relative_path.endswith(".vhdx"))
        assert f"{done.vm_name}: {disk.relative_path}" in text  # its line while it was read
    assert "MiB" in text  # bytes done / total on the bars


def test_progress_events_carry_each_files_size_and_every_byte(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("web"), vm("db"), vm("app")]})
    events: list[ProgressEvent] = []
    lock = threading.Lock()

    def record(event: ProgressEvent) -> None:
        with lock:
            events.append(event)

    result = _job(sim, tmp_path, record).run(Selection(all=True))
    for done in result.vms:
        mine = [e for e in events if e.vm_name == done.vm_name]
        assert (mine[0].kind, mine[-1].kind) == ("vm_started", "vm_finished")
        assert mine[-1].result is not None
        assert mine[-1].result.bytes == done.bytes
        started = {e.file: e.file_size for e in mine if e.kind == "file_started"}
        assert started == {f.relative_path: f.size for f in done.files}
        assert sum(e.bytes for e in mine if e.kind == "bytes") == done.bytes
        assert {e.total for e in mine if e.kind in ("file_started", "bytes")} == {done.bytes}


def test_progress_draws_nothing_off_a_terminal_or_for_json() -> None:
    for console, enabled in (
        (Console(file=io.StringIO()), True),  # a pipe or a file
        (Console(file=io.StringIO(), force_terminal=True), False),  # --json
    ):
        bars = BackupProgress(console, enabled=enabled)
        assert bars.callback is None
        with bars:
            bars.update(ProgressEvent("vm_started", "web"))
            bars.update(ProgressEvent("file_started", "web", "web.vhdx", 0, MiB, file_size=MiB))
            bars.update(ProgressEvent("bytes", "web", "web.vhdx", MiB, MiB, file_size=MiB))
        one_bar = ByteProgress(console, "restoring web", MiB, enabled=enabled)
        assert one_bar.callback is None
        with one_bar:
            one_bar.advance(MiB)
        assert isinstance(console.file, io.StringIO)
        assert console.file.getvalue() == ""


def test_restore_and_check_report_every_byte_to_their_bar(world: World, tmp_path: Path) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=160)
    counted = {"restore": 0, "check": 0}

    def counter(what: str, bar: ByteProgress) -> Callable[[int], None]:
        def count(n: int) -> None:
            counted[what] += n
            bar.advance(n)

        return count

    with Repository.open(LocalTarget(world.repo), REPO_PASSWORD) as repository:
        with ByteProgress(console, "restoring web", None) as bar:
            restored = repository.restore(
                world.snapshot, tmp_path, progress=counter("restore", bar)
            )
        with ByteProgress(console, "reading and verifying packs", None) as bar:
            checked = repository.check(read_data=True, progress=counter("check", bar))
    assert counted == {"restore": restored.bytes, "check": checked.bytes_read}
    assert "restoring web" in screen.getvalue()


# --- help -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        "inventory",
        "plan",
        "backup",
        "cleanup",
        "init",
        "snapshots",
        "check",
        "restore",
        "forget",
        "prune",
    ],
)
def test_help_lists_the_exit_codes(command: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert (
        "Exit codes: 0 success; 1 failure; 2 usage or configuration error; 3 partial success."
        in text
    )
