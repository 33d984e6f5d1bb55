"""Shadow copies read over SMB: each one shared for the backup, then removed.

VMs captured through a host VSS shadow copy (``vss_snapshot``: Hyper-V Replica copies and VMs
whose checkpoints are off; ``pause_and_vss``: hosts older than Server 2016) are read through
links ``<staging>\\vss\\<letter>`` to the shadow devices. An SMB client cannot follow those
links (nor can Samba in the simulator), so for an :class:`SMBReader` the engine shares each
shadow device as ``hyperv-backup-<job>-<vm>-<letter>`` and maps the link's path to it. These
tests run the engine against ``Simulator(smb=True)``: byte-exact files, shares gone after the
backup, and a killed run's shares undone by the next run (journal) or by the sweep (no
journal).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hyperv_backup import (
    BackupJob,
    BackupPolicy,
    CaptureMethod,
    ConsistencyLevel,
    DirectorySink,
    HyperVHost,
    JobStatus,
    ProgressEvent,
    RetryPolicy,
    Selection,
    SMBReader,
    VMBackupResult,
    VMStatus,
)
from hyperv_backup.journal import UNDO_ORDER, Journal
from hyperv_backup.ps_scripts import (
    SCRIPTS,
    GetBackupLeftoversParams,
    NewStagingShareParams,
)
from hyperv_backup.resources import shadow_share_name
from hyperv_backup.simulator import Simulator
from hyperv_backup.transfer import LocalPathReader, PSRPReader, ShareMappingReader

MiB = 2**20
FAST_RETRY = RetryPolicy(attempts=5, initial_wait=0.01, max_wait=0.05, deadline=30)
REPO = Path(__file__).resolve().parents[1]
SHADOW_DEVICE = "\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy"


def vm(name: str, **fields: Any) -> dict[str, Any]:
    """A small Gen2 VM with a 3 MiB disk on D: and a 1 MiB one on E:."""
    disks = [
        {"file": {"path": rf"D:\VMs\{name}\{name}.vhdx", "size": "60 GiB", "file_size": 3 * MiB}},
        {"file": {"path": rf"E:\Data\{name}-data.vhdx", "size": "20 GiB", "file_size": MiB}},
    ]
    return {"name": name, "disks": disks, **fields}


REPLICA = vm("erp", state="Off", replication={"mode": "Replica", "primary_server": "hv03"})
SERVER_2012 = {
    "os_caption": "Microsoft Windows Server 2012 Datacenter",
    "os_version": "6.2.9200",
    "os_build": 9200,
}


@pytest.fixture
def smb_simulator() -> Iterator[Any]:
    """Start ``Simulator(..., smb=True)`` hosts; all stopped at the end of the test."""
    started: list[Simulator] = []

    def start(scenario: Any = None) -> Simulator:
        sim = Simulator(scenario, smb=True)
        started.append(sim)
        sim.start()
        return sim

    try:
        yield start
    finally:
        for sim in started:
            sim.stop()


def make_job(sim: Simulator, tmp_path: Path, **options: Any) -> BackupJob:
    options.setdefault("state_dir", tmp_path / "state")
    return BackupJob(
        sim.connection_settings(),
        BackupPolicy(retry=FAST_RETRY),
        sink=DirectorySink(tmp_path / "backups"),
        reader=sim.smb_reader(),
        **options,
    )


class ShadowWitness:
    """A progress callback that, while the first file is read, takes the SHA-256 of every
    file in every shadow copy (what the backup must hold) and notes the shares that exist."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.frozen: dict[str, str] = {}  # host path (case-folded) → sha256 in the shadow
        self.shares: list[tuple[str, str]] = []
        self.link_unreadable: list[bool] = []

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind != "file_started" or self.shares:
            return
        self.shares = [(s.name, s.path) for s in self.sim.emulator.smb_shares]
        for shadow in self.sim.emulator.shadows:
            for local in shadow.copy.rglob("*"):
                if local.is_file():
                    relative = local.relative_to(shadow.copy).as_posix().replace("/", "\\")
                    host_path = shadow.volume + relative
                    sha = hashlib.sha256(local.read_bytes()).hexdigest()
                    self.frozen[host_path.casefold()] = sha
            # The problem this all solves: through the administrative share, the link to the
            # shadow copy cannot be read (Samba, like Windows, does not follow it).
            any_file = next(p for p in shadow.copy.rglob("*") if p.is_file())
            link_file = shadow.link_path + "\\" + str(any_file.relative_to(shadow.copy))
            with self.sim.smb_reader() as plain:
                try:
                    plain.open(link_file.replace("/", "\\")).close()
                    self.link_unreadable.append(False)
                except OSError:
                    self.link_unreadable.append(True)


def assert_byte_exact(result: VMBackupResult, witness: ShadowWitness) -> None:
    """Every stored file is what the result says, and what the shadow copy held."""
    assert result.location is not None
    disks = [f for f in result.files if f.relative_path.endswith(".vhdx")]
    assert len(disks) == 2, result.files
    for file in result.files:
        stored = (Path(result.location) / file.relative_path).read_bytes()
        assert len(stored) == file.size
        assert hashlib.sha256(stored).hexdigest() == file.sha256
        assert witness.frozen[file.host_path.casefold()] == file.sha256, file.host_path


def share_events(sim: Simulator, since: int = 0) -> list[tuple[str, str]]:
    return [
        (e.event, str(e.detail.get("name")))
        for e in sim.events[since:]
        if e.event in ("share_created", "share_removed")
    ]


def assert_no_share_left(sim: Simulator) -> None:
    assert sim.emulator.smb_shares == []
    assert sim.samba is not None
    assert not [name for name in sim.samba.shares if name.startswith("hyperv-backup-")]


# --- backups over SMB ------------------------------------------------------------------------


def test_smb_reader_maps_shares_and_the_others_do_not() -> None:
    reader = SMBReader("hv01", username="CORP\\backup", password="x")
    assert isinstance(reader, ShareMappingReader)
    assert not isinstance(LocalPathReader({"D:\\": "/mnt/d"}), ShareMappingReader)
    assert not isinstance(PSRPReader.__new__(PSRPReader), ShareMappingReader)
    assert UNDO_ORDER.index("paused_vm") < UNDO_ORDER.index("share") < UNDO_ORDER.index("shadow")


def test_shadow_share_names_fit_windows() -> None:
    vm_id = "a78c146e-0000-4000-8000-000000000000"
    name = shadow_share_name("hyperv-backup", "20261126T071500Z-3f9a1c", vm_id, "d:\\")
    assert name == "hyperv-backup-20261126T071500Z-3f9a1c-a78c146e-D"
    long = shadow_share_name("hyperv-backup", "j" * 64, vm_id, "E:\\")
    assert len(long) <= 80
    assert long.endswith("-a78c146e-E")
    NewStagingShareParams(name=long, path=SHADOW_DEVICE + "7\\", read_access="CORP\\backup")


@pytest.mark.parametrize(
    "path",
    [
        SHADOW_DEVICE + "7",  # no trailing backslash: the device, not its root folder
        SHADOW_DEVICE + "7\\x",
        "\\\\?\\GLOBALROOT\\Device\\HarddiskVolume2\\",
        "\\\\?\\C:\\Windows",
        "\\\\nas\\share",
        "\\Windows",
    ],
)
def test_only_a_shadow_device_is_a_share_path_besides_folders(path: str) -> None:
    with pytest.raises(ValueError, match="HarddiskVolumeShadowCopy"):
        NewStagingShareParams(name="hyperv-backup-x", path=path, read_access="CORP\\backup")


def test_hyperv_replica_copy_is_read_over_smb_through_a_share_of_its_shadow_copy(
    smb_simulator: Any, tmp_path: Path
) -> None:
    sim = smb_simulator({"vms": [REPLICA]})
    witness = ShadowWitness(sim)
    result = make_job(sim, tmp_path, progress=witness).run(Selection(names=["erp"]))
    [erp] = result.vms
    assert erp.status == VMStatus.SUCCESS, (erp.error, erp.warnings)
    assert (erp.method, erp.achieved) == (CaptureMethod.VSS_SNAPSHOT, ConsistencyLevel.CRASH)
    assert erp.warnings == []
    assert_byte_exact(erp, witness)
    # The VM is off: the shadow holds the host's files as they are.
    for file in erp.files:
        host = hashlib.sha256(sim.local_path(file.host_path).read_bytes()).hexdigest()
        assert host == file.sha256

    # One share per shadow copy (D: and E:), on the shadow's device, while it was read.
    vm_id = erp.vm_id[:8]
    names = {f"hyperv-backup-{result.job_id}-{vm_id}-{letter}" for letter in "DE"}
    assert {name for name, _ in witness.shares} == names
    assert all(path.startswith(SHADOW_DEVICE) and path.endswith("\\") for _, path in witness.shares)
    assert witness.link_unreadable == [True, True]
    expected = [("share_created", n) for n in names] + [("share_removed", n) for n in names]
    assert sorted(share_events(sim)) == sorted(expected)
    # The shares go before the shadow copies.
    kinds = [e.event for e in sim.events]
    assert max(i for i, k in enumerate(kinds) if k == "share_removed") < min(
        i for i, k in enumerate(kinds) if k == "shadow_removed"
    )
    assert_no_share_left(sim)
    assert sim.emulator.shadows == []
    assert Journal(tmp_path / "state", "127.0.0.1").pending() == []


def test_pause_and_vss_on_a_server_2012_host_is_read_over_smb(
    smb_simulator: Any, tmp_path: Path
) -> None:
    sim = smb_simulator(
        {
            "host": SERVER_2012,
            "vms": [vm("old", integration_services="none", configuration_version="5.0")],
        }
    )
    witness = ShadowWitness(sim)
    result = make_job(sim, tmp_path, progress=witness).run(Selection(names=["old"]))
    [old] = result.vms
    assert old.status == VMStatus.SUCCESS, (old.error, old.warnings)
    assert (old.method, old.achieved) == (CaptureMethod.PAUSE_AND_VSS, ConsistencyLevel.CRASH)
    assert old.pause_seconds is not None
    assert old.warnings == []
    assert_byte_exact(old, witness)
    assert any(f.relative_path.endswith(".xml") for f in old.files)  # 2012-era configuration
    # The guest runs on after the pause (appending to its disk): what the shadow froze is
    # the start of the disk as it is now.
    disk = next(f for f in old.files if f.host_path.endswith("old.vhdx"))
    host_disk = sim.local_path(disk.host_path).read_bytes()
    assert hashlib.sha256(host_disk[: disk.size]).hexdigest() == disk.sha256

    events = [e.event for e in sim.events]
    assert events.index("paused") < events.index("shadow_created") < events.index("resumed")
    assert events.index("resumed") < events.index("share_created")
    assert events.count("share_created") == events.count("share_removed") == 2
    assert len(witness.shares) == 2
    assert_no_share_left(sim)
    assert sim.emulator.shadows == []


def test_whole_default_host_is_backed_up_over_smb(smb_simulator: Any, tmp_path: Path) -> None:
    sim = smb_simulator()
    result = make_job(sim, tmp_path).run(Selection(all=True))
    assert result.status == JobStatus.SUCCESS, [(v.vm_name, v.error) for v in result.vms]
    assert len(result.vms) == 9
    assert all(v.status == VMStatus.SUCCESS for v in result.vms)
    erp = next(v for v in result.vms if v.vm_name == "erp-replica")
    assert erp.method == CaptureMethod.VSS_SNAPSHOT
    for v in result.vms:
        for file in v.files:
            stored = (Path(v.location or "") / file.relative_path).read_bytes()
            assert hashlib.sha256(stored).hexdigest() == file.sha256
    created = [name for event, name in share_events(sim) if event == "share_created"]
    removed = [name for event, name in share_events(sim) if event == "share_removed"]
    assert created
    assert sorted(created) == sorted(removed)
    assert_no_share_left(sim)
    assert sim.emulator.shadows == []
    assert sim.emulator.staging_folders == []


def test_a_failing_share_fails_the_vm_and_leaves_nothing(
    smb_simulator: Any, tmp_path: Path
) -> None:
    sim = smb_simulator({"vms": [REPLICA]})
    # The account the share is for cannot log in to SMB: the share is made, reading fails.
    job = make_job(sim, tmp_path, share_account="CORP\\someone-else")
    [erp] = job.run(Selection(names=["erp"])).vms
    assert erp.status == VMStatus.FAILED
    assert erp.error_type == "ExportError"
    assert "Access denied" in (erp.error or "")
    events = [e for e, _ in share_events(sim)]
    assert events.count("share_created") == events.count("share_removed") == 2
    assert_no_share_left(sim)
    assert sim.emulator.shadows == []
    assert Journal(tmp_path / "state", "127.0.0.1").pending() == []


# --- a killed run's shares -------------------------------------------------------------------

# A backup over SMB that kills itself (SIGKILL: no finally, no exit handler) once it starts
# reading the first file — when the shadow copies and their shares exist.
CHILD = """
import os, signal, sys
from pathlib import Path
from hyperv_backup import (
    BackupJob, BackupPolicy, ConnectionSettings, DirectorySink, Selection, SMBReader,
)
host, port, user, ca, smb_port, state, out, name = sys.argv[1:9]
password = os.environ["HYPERV_BACKUP_PASSWORD"]

def die(event):
    if event.kind == "file_started":
        os.kill(os.getpid(), signal.SIGKILL)

settings = ConnectionSettings(
    host=host, port=int(port), auth="basic", username=user, password=password,
    ca_bundle=Path(ca),
)
reader = SMBReader(host, port=int(smb_port), username=user, password=password)
job = BackupJob(settings, BackupPolicy(), sink=DirectorySink(Path(out)), reader=reader,
                state_dir=Path(state), progress=die)
job.run(Selection(names=[name]))
"""


def kill_a_backup_while_it_reads(sim: Simulator, state: Path, out: Path, name: str) -> None:
    creds = sim.scenario.credentials
    command = [
        sys.executable,
        "-c",
        CHILD,
        sim.smb_server,
        str(sim.port),
        creds.username,
        str(sim.ca_pem),
        str(sim.smb_port),
        str(state),
        str(out),
        name,
    ]
    env = {**os.environ, "HYPERV_BACKUP_PASSWORD": creds.password}
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode(errors="replace")


def test_killed_runs_shadow_shares_are_removed_by_the_next_runs_cleanup(
    smb_simulator: Any, tmp_path: Path
) -> None:
    sim = smb_simulator({"vms": [REPLICA]})
    state = tmp_path / "state"
    kill_a_backup_while_it_reads(sim, state, tmp_path / "killed", "erp")
    left = [s.name for s in sim.emulator.smb_shares]
    assert len(left) == 2
    assert all(n.startswith("hyperv-backup-") for n in left)
    assert len(sim.emulator.shadows) == 2
    pending = {e.kind for e in Journal(state, "127.0.0.1").pending()}
    assert pending == {"share", "shadow", "staging"}

    since = len(sim.events)
    result = make_job(sim, tmp_path, state_dir=state).run(Selection(names=["erp"]))
    assert result.cleanup.errors == []
    undone = "\n".join(result.cleanup.undone)
    for name in left:
        assert f"removed share {name} of 'erp'" in undone
    assert "removed shadow copies of 'erp'" in undone
    # The dead run's shares went before its shadow copies.
    kinds = [e.event for e in sim.events[since:]]
    assert kinds.index("share_removed") < kinds.index("shadow_removed")
    assert {n for e, n in share_events(sim, since) if e == "share_removed"} >= set(left)
    # And the new run backed the VM up over SMB, its own shares gone too.
    [erp] = result.vms
    assert erp.status == VMStatus.SUCCESS, erp.error
    assert result.status == JobStatus.SUCCESS
    assert_no_share_left(sim)
    assert sim.emulator.shadows == []
    assert Journal(state, "127.0.0.1").pending() == []


def test_killed_runs_shadow_shares_are_swept_by_name_without_a_journal(
    smb_simulator: Any, tmp_path: Path
) -> None:
    sim = smb_simulator({"vms": [REPLICA]})
    state = tmp_path / "state"
    kill_a_backup_while_it_reads(sim, state, tmp_path / "killed", "erp")
    left = sorted(s.name for s in sim.emulator.smb_shares)
    assert len(left) == 2
    with HyperVHost(sim.connection_settings()) as host:
        found = host.runner.run(
            SCRIPTS["get-backup-leftovers"], GetBackupLeftoversParams(prefix="hyperv-backup")
        )
    assert sorted(found.staging_shares) == left

    # Another management box (no journal): the sweep finds the shares by their prefix.
    report = make_job(sim, tmp_path, state_dir=tmp_path / "elsewhere").cleanup()
    assert report.errors == []
    for name in left:
        assert f"removed leftover share {name}" in report.undone
    assert_no_share_left(sim)

    # The journal's own cleanup then finds the shares gone, and removes the shadow copies.
    report = make_job(sim, tmp_path, state_dir=state).cleanup()
    assert report.errors == []
    assert sum("found already gone share" in line for line in report.undone) == 2
    assert sim.emulator.shadows == []
    assert Journal(state, "127.0.0.1").pending() == []
