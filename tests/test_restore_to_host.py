"""Restore straight back onto the Hyper-V host, over SMB, and import the VM there.

Against the simulator with Samba: VMs are backed up into a repository by the engine, then
restored onto the emulated host through :class:`SMBWriter` (the files land under
``sim.host_root``) and imported with ``import-vm``: byte-exact files, a new VM with a new id
beside the untouched original, and every refusal — a taken name, too little space, files
that exist — before anything is written; a damaged chunk leaves no partial file behind.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest
from typer.testing import CliRunner

from hyperv_backup import (
    BackupJob,
    BackupPolicy,
    HostFileExistsError,
    HyperVHost,
    InsufficientSpaceError,
    IntegrityError,
    JobStatus,
    LocalPathReader,
    RetryPolicy,
    Selection,
    VMImportError,
)
from hyperv_backup.cli import app
from hyperv_backup.ps_scripts import SCRIPTS, ImportVMParams
from hyperv_backup.repository import Repository, Snapshot
from hyperv_backup.repository.host_restore import restore_to_host
from hyperv_backup.repository.pack import pack_key
from hyperv_backup.repository.restore import ChunkReader
from hyperv_backup.simulator import Simulator
from hyperv_backup.targets import LocalTarget
from tests.repository_helpers import back_up, vm_info, vm_like

MiB = 2**20
PASSWORD = "restore-pw"
FAST_RETRY = RetryPolicy(attempts=5, initial_wait=0.01, max_wait=0.05, deadline=30)
DEV = {  # running, Standard checkpoints, a differencing chain: the in-place capture's hard case
    "name": "dev",
    "checkpoint_type": "Standard",
    "disks": [
        {
            "file": {
                "path": r"D:\VMs\dev\dev_B.avhdx",
                "size": "80 GiB",
                "file_size": MiB,
                "parent": {"path": r"D:\VMs\dev\dev.vhdx", "size": "80 GiB", "file_size": 2 * MiB},
            }
        }
    ],
    "checkpoints": [{"name": "base"}, {"name": "branch-a", "parent": "base"}],
}
BEFORE_BACKUP: dict[str, bytes] = {}
SCENARIO = {
    "host": {
        # E: has room for nothing; F: for one restore of web, not for its import copy too.
        "volumes": {"E": {"free_bytes": MiB}, "F": {"free_bytes": 5 * MiB}},
    },
    "vms": [
        {
            "name": "web",
            "state": "Off",
            "disks": [
                {"file": {"path": r"D:\VMs\web\web.vhdx", "size": "60 GiB", "file_size": 3 * MiB}}
            ],
        },
        DEV,
    ],
}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SCENARIO, smb=True) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def repo(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repository]:
    """Both VMs backed up by the engine (in place: disks read where they lie)."""
    folder = tmp_path_factory.mktemp("restore-to-host")
    # The backup's checkpoint merges into the disk afterwards: keep the bytes it read.
    BEFORE_BACKUP["web.vhdx"] = sim.local_path(r"D:\VMs\web\web.vhdx").read_bytes()
    repository = Repository.init(LocalTarget(folder / "repo"), PASSWORD, chunk_size=64 * 1024)
    job = BackupJob(
        sim.connection_settings(),
        BackupPolicy(retry=FAST_RETRY),
        sink=repository,
        reader=LocalPathReader(sim.path_map()),
        state_dir=folder / "state",
    )
    result = job.run(Selection(all=True))
    assert result.status == JobStatus.SUCCESS, [(v.vm_name, v.error) for v in result.vms]
    with repository:
        yield repository


@pytest.fixture
def host(sim: Simulator) -> Iterator[HyperVHost]:
    with HyperVHost(sim.connection_settings()) as connected:
        yield connected


def latest(repo: Repository, vm: str) -> Snapshot:
    return repo.snapshots(vm=vm)[0]


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def partial_files(sim: Simulator) -> list[Path]:
    return [p for p in sim.host_root.rglob("*.partial")]


# --- restoring the files -----------------------------------------------------------------------


def test_every_file_lands_on_the_host_byte_exact(
    sim: Simulator, repo: Repository, host: HyperVHost
) -> None:
    snapshot = latest(repo, "web")
    host_disk = BEFORE_BACKUP["web.vhdx"]
    with sim.smb_writer(write_size=256 * 1024, write_behind=3) as writer:
        report = restore_to_host(repo, snapshot.id, host, writer, r"D:\Restore")

    assert report.folder == r"D:\Restore\web"
    assert report.imported is None
    restored = files_under(sim.local_path(report.folder))
    assert set(restored) == {f.path for f in snapshot.files}  # the Export-VM layout
    for entry in snapshot.files:
        assert blake3.blake3(restored[entry.path]).hexdigest() == entry.blake3, entry.path
    assert restored["Virtual Hard Disks/web.vhdx"] == host_disk
    assert report.bytes == sum(f.size for f in snapshot.files)
    assert partial_files(sim) == []

    # Nothing that exists is ever overwritten unless asked; then it is.
    with sim.smb_writer() as writer, pytest.raises(HostFileExistsError, match="overwrite"):
        restore_to_host(repo, snapshot.id, host, writer, r"D:\Restore")
    with sim.smb_writer() as writer:
        again = restore_to_host(
            repo,
            snapshot.id,
            host,
            writer,
            r"D:\Restore",
            paths=["Virtual Hard Disks"],
            overwrite=True,
        )
    assert again.files == ["Virtual Hard Disks/web.vhdx"]
    assert sim.local_path(r"D:\Restore\web\Virtual Hard Disks\web.vhdx").read_bytes() == host_disk


def test_import_makes_a_new_vm_beside_the_untouched_original(
    sim: Simulator, repo: Repository, host: HyperVHost
) -> None:
    snapshot = latest(repo, "web")
    original = sim.emulator.vm_info("web")
    original_files = {
        f.path: sha256(sim.local_path(f.path).read_bytes())
        for f in sim.emulator.vm_files("web").files
    }
    with sim.smb_writer() as writer:
        report = restore_to_host(
            repo, snapshot.id, host, writer, r"D:\Import", import_vm=True, new_name="web-restored"
        )

    imported = report.imported
    assert imported is not None
    assert (imported.name, imported.original_name) == ("web-restored", "web")
    assert imported.original_id == original.id
    assert imported.id != original.id
    assert imported.path == r"D:\Import\Hyper-V\web-restored"
    new_vm = sim.emulator.vm_info("web-restored")
    assert (new_vm.id, new_vm.state.value) == (imported.id, "Off")
    [disk] = new_vm.virtual_disks
    assert disk.path == r"D:\Import\Hyper-V\web-restored\Virtual Hard Disks\web.vhdx"
    restored_disk = sim.local_path(r"D:\Import\web\Virtual Hard Disks\web.vhdx").read_bytes()
    assert sim.local_path(disk.path or "").read_bytes() == restored_disk
    configuration = sim.local_path(
        rf"{imported.path}\Virtual Machines\{str(imported.id).upper()}.vmcx"
    )
    assert json.loads(configuration.read_bytes())["id"] == str(imported.id)
    # The original: same id, same disks, same bytes.
    assert sim.emulator.vm_info("web") == original
    assert {
        f.path: sha256(sim.local_path(f.path).read_bytes())
        for f in sim.emulator.vm_files("web").files
    } == original_files
    [event] = [e for e in sim.events if e.event == "vm_imported"]
    assert (event.vm, event.detail["id"]) == ("web-restored", str(imported.id))


def test_a_vm_with_a_checkpoint_chain_imports_on_its_copied_chain(
    sim: Simulator, repo: Repository, host: HyperVHost
) -> None:
    snapshot = latest(repo, "dev")
    with sim.smb_writer() as writer:
        report = restore_to_host(
            repo, snapshot.id, host, writer, r"D:\Chain", import_vm=True, new_name="dev-2"
        )
    assert report.imported is not None
    [disk] = sim.emulator.vm_info("dev-2").virtual_disks
    assert [link.path.rsplit("\\", 1)[0] for link in disk.chain] == [
        r"D:\Chain\Hyper-V\dev-2\Virtual Hard Disks"
    ] * len(disk.chain)
    assert disk.chain[-1].path.endswith(r"\dev.vhdx")
    for link in disk.chain:  # every file of the chain is the restored one, copied
        name = link.path.rsplit("\\", 1)[1]
        restored = sim.local_path(rf"D:\Chain\dev\Virtual Hard Disks\{name}").read_bytes()
        assert sim.local_path(link.path).read_bytes() == restored


# --- refusals: nothing is written ----------------------------------------------------------------


def test_a_taken_name_is_refused_before_anything_is_written(
    sim: Simulator, repo: Repository, host: HyperVHost
) -> None:
    snapshot = latest(repo, "web")
    before = len(sim.emulator.calls_to("get-free-space"))
    with sim.smb_writer() as writer, pytest.raises(VMImportError, match="named 'web' exists"):
        restore_to_host(repo, snapshot.id, host, writer, r"D:\Clash", import_vm=True)
    assert not sim.local_path(r"D:\Clash").exists()
    assert len(sim.emulator.calls_to("get-free-space")) == before  # refused before that

    # The host refuses it too (the script is the last word, should a VM appear meanwhile).
    with sim.smb_writer() as writer:
        restore_to_host(repo, snapshot.id, host, writer, r"D:\Clash")
    params = ImportVMParams(path=r"D:\Clash\web", virtual_machine_path=r"D:\Clash\copy")
    with pytest.raises(VMImportError, match="refusing to import a second one") as refused:
        host.runner.run(SCRIPTS["import-vm"], params)
    assert refused.value.kind == "import"
    assert not sim.local_path(r"D:\Clash\copy").exists()


def test_compare_vm_incompatibilities_are_reported_and_nothing_is_imported(
    sim: Simulator, repo: Repository, host: HyperVHost
) -> None:
    snapshot = latest(repo, "web")
    with sim.smb_writer() as writer:
        restore_to_host(repo, snapshot.id, host, writer, r"D:\Broken")
    sim.local_path(r"D:\Broken\web\Virtual Hard Disks\web.vhdx").unlink()
    params = ImportVMParams(
        path=r"D:\Broken\web", virtual_machine_path=r"D:\Broken\copy", new_name="web-broken"
    )
    with pytest.raises(VMImportError, match=r"\[40010\].*web\.vhdx.*Nothing was imported"):
        host.runner.run(SCRIPTS["import-vm"], params)
    assert "web-broken" not in [vm.name for vm in sim.emulator.inventory()]


@pytest.mark.parametrize(
    ("destination", "import_vm", "words"),
    [
        (r"E:\Restore", False, r"volume holding E:\\Restore has 0\.00 GiB"),
        (r"F:\Restore", True, "the restore, and Import-VM's copy of it"),
    ],
    ids=["restore", "restore-and-import"],
)
def test_too_little_space_is_refused_before_anything_is_written(
    sim: Simulator,
    repo: Repository,
    host: HyperVHost,
    destination: str,
    import_vm: bool,
    words: str,
) -> None:
    snapshot = latest(repo, "web")
    options: dict[str, Any] = {"import_vm": True, "new_name": "web-f"} if import_vm else {}
    with sim.smb_writer() as writer, pytest.raises(InsufficientSpaceError, match=words):
        restore_to_host(repo, snapshot.id, host, writer, destination, **options)
    drive = sim.local_path(destination[:3])
    assert not any(drive.iterdir())


def test_a_damaged_chunk_aborts_and_leaves_no_partial_file(
    sim: Simulator, host: HyperVHost, tmp_path: Path
) -> None:
    repo = Repository.init(
        LocalTarget(tmp_path / "repo"),
        PASSWORD,
        chunk_size=64 * 1024,
        pack_size=MiB,
        scrypt_n=2**12,
    )
    disk = vm_like(3 * MiB, seed=5)
    config = b'{"configuration": "small"}' * 40
    with repo:
        back_up(
            repo,
            vm_info("db"),
            {"Virtual Machines/A.vmcx": config, "Virtual Hard Disks/db.vhdx": disk},
        )
        snapshot = latest(repo, "db")
        entry = next(f for f in snapshot.files if f.path.endswith(".vhdx"))
        # Flip one byte in the middle of a stored chunk (not all zeros: those are never read)
        # two thirds into the disk.
        store = repo._store
        ids = list(ChunkReader(store).chunk_ids(entry))
        stored = [store.locate(chunk_id) for chunk_id in ids[2 * len(ids) // 3 :]]
        pack_id, location = next(f for f in stored if f is not None and f[1].length > 4096)
        pack = tmp_path / "repo" / pack_key(pack_id)
        data = bytearray(pack.read_bytes())
        data[location.offset + location.length // 2] ^= 0xFF
        pack.write_bytes(bytes(data))

        with sim.smb_writer(write_size=64 * 1024) as writer:
            # How much of the disk had reached the host when its partial file was deleted.
            discard = writer._discard
            partial = r"D:\Damaged\db\Virtual Hard Disks\db.vhdx.partial"
            written: list[int] = []

            def measure_then_discard(upload: Any) -> None:
                written.append(sim.local_path(partial).stat().st_size)
                discard(upload)

            writer._discard = measure_then_discard  # type: ignore[method-assign]
            with pytest.raises(IntegrityError, match="partial file on the host was removed"):
                restore_to_host(repo, snapshot.id, host, writer, r"D:\Damaged")
    assert len(written) == 1
    assert 0 < written[0] < len(disk)  # it stopped midway through the disk
    folder = sim.local_path(r"D:\Damaged\db")
    assert files_under(folder) == {"Virtual Machines/A.vmcx": config}  # verified, kept
    assert partial_files(sim) == []


# --- the command line --------------------------------------------------------------------------


def test_cli_restores_onto_the_host_and_imports(
    sim: Simulator, repo: Repository, tmp_path: Path
) -> None:
    snapshot = latest(repo, "web")
    assert isinstance(repo.target, LocalTarget)
    repo_path = str(repo.target.root)
    connection = [
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
        "--smb-port",
        str(sim.smb_port),
    ]
    env = {
        "HYPERV_BACKUP_PASSWORD": sim.scenario.credentials.password,
        "HYPERV_BACKUP_REPO_PASSWORD": PASSWORD,
    }
    runner = CliRunner()
    base = ["restore", snapshot.short_id, "--repo", repo_path]
    result = runner.invoke(
        app,
        [*base, "--to-host", r"D:\Cli", *connection, "--import", "--new-name", "web-cli", "--json"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["folder"] == r"D:\Cli\web"
    assert document["imported"]["name"] == "web-cli"
    assert sim.emulator.vm_info("web-cli").id != sim.emulator.vm_info("web").id
    for entry in snapshot.files:
        local = sim.local_path(r"D:\Cli\web\\" + entry.path.replace("/", "\\"))
        assert blake3.blake3(local.read_bytes()).hexdigest() == entry.blake3

    both = runner.invoke(app, [*base, "--to", str(tmp_path), "--to-host", r"D:\X"], env=env)
    neither = runner.invoke(app, base, env=env)
    no_host = runner.invoke(app, [*base, "--to-host", r"D:\X"], env=env)
    assert (both.exit_code, neither.exit_code, no_host.exit_code) == (2, 2, 2)
    assert "exactly one of --to" in both.stderr
    assert "--host" in no_host.stderr
