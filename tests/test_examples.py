"""The scripts in examples/, run as an ops engineer runs them: each a separate process.

Each test starts an emulated Hyper-V host (the simulator, with Samba serving its drives, so
disk data is read over SMB as on a real host), runs ``python examples/<script>.py`` with
flags and environment variables only, and checks what the engineer would: the exit code, the
lines printed, the backups now in the repository (opened with the API), the restored files'
hashes against the host's originals, and the host's state afterwards (replication resumed,
refused VMs untouched). The S3 example writes to moto's S3 server on loopback.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import blake3

from hyperv_backup import (
    BackupJob,
    BackupPolicy,
    ConsistencyLevel,
    JobStatus,
    LocalPathReader,
    Selection,
)
from hyperv_backup.repository import Repository, Snapshot, vm_folder_name
from hyperv_backup.simulator import Simulator
from hyperv_backup.targets import LocalTarget, S3Target
from tests.repository_helpers import back_up
from tests.s3_servers import ACCESS_KEY, SECRET_KEY, MotoS3, new_bucket, settings_for

MakeSimulator = Callable[..., Simulator]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REPO_PASSWORD = "examples-repo-password"
MiB = 2**20


def run_example(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python examples/<script> ARGS`` with only the given settings in its environment."""
    # Nothing of the caller's own hyperv-backup or AWS settings may leak into the script.
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HYPERV_BACKUP_", "AWS_"))}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        env={**base, **env},
        timeout=120,
        check=False,
    )


def host_args(sim: Simulator, state_dir: Path) -> list[str]:
    """The flags that reach the simulator: WinRM over HTTPS with its CA, SMB on its port."""
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
        "--smb-port",
        str(sim.smb_port),
        "--state-dir",
        str(state_dir),
    ]


def secrets_env(sim: Simulator) -> dict[str, str]:
    return {
        "HYPERV_BACKUP_PASSWORD": sim.scenario.credentials.password,
        "HYPERV_BACKUP_REPO_PASSWORD": REPO_PASSWORD,
    }


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def disk(path: str, mib: int = 1) -> dict[str, object]:
    return {"file": {"path": path, "size": "60 GiB", "file_size": mib * MiB}}


def events(sim: Simulator, vm: str) -> list[str]:
    return [e.event for e in sim.emulator.events_for(vm)]


# --- nightly_to_s3.py -------------------------------------------------------------------------


def test_nightly_to_s3_backs_up_all_but_excluded_then_forgets_the_older_backup_of_a_day(
    make_simulator: MakeSimulator, moto_s3: MotoS3, tmp_path: Path
) -> None:
    sim = make_simulator(
        {
            "vms": [
                {"name": "web", "disks": [disk(r"D:\VMs\web\web.vhdx")]},
                {"name": "app", "state": "Off", "disks": [disk(r"D:\VMs\app\app.vhdx")]},
                {"name": "scratch-01", "disks": [disk(r"D:\VMs\scratch\scratch.vhdx")]},
            ]
        },
        smb=True,
    )
    bucket = new_bucket(moto_s3.endpoint)
    s3 = ["--bucket", bucket, "--prefix", "hyperv/hv01", "--s3-endpoint", moto_s3.endpoint]
    env = {
        **secrets_env(sim),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    args = [*host_args(sim, tmp_path / "state"), *s3, "--exclude", "scratch-*"]

    first = run_example("nightly_to_s3.py", *args, env=env)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert any(
        line.startswith("web: success, application-consistent (production_checkpoint)")
        for line in lines
    ), first.stdout
    assert any(line.startswith("app: success, offline-consistent") for line in lines)
    assert "scratch" not in first.stdout

    # Three days ago, two backups of web on one day (as if run twice that night).
    day = (datetime.now().astimezone() - timedelta(days=3)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    with (
        S3Target(settings_for(moto_s3.endpoint, bucket, prefix="hyperv/hv01")) as target,
        Repository.open(target, REPO_PASSWORD) as repository,
    ):
        assert repository.encrypted
        snapshots = repository.snapshots()
        assert sorted(s.vm_name for s in snapshots) == ["app", "web"]
        assert {s.host for s in snapshots} == {"127.0.0.1"}
        web = next(s for s in snapshots if s.vm_name == "web").vm
        earlier = back_up(
            repository,
            web,
            {"Virtual Hard Disks/web.vhdx": os.urandom(256 * 1024)},
            started_at=day,
            host="127.0.0.1",
        ).rpartition(":")[2]
        later = back_up(
            repository,
            web,
            {"Virtual Hard Disks/web.vhdx": os.urandom(256 * 1024)},
            started_at=day + timedelta(hours=1),
            host="127.0.0.1",
        ).rpartition(":")[2]

    second = run_example("nightly_to_s3.py", *args, env=env)
    assert second.returncode == 0, second.stderr
    assert f"retention: forgot web backup {earlier[:8]}" in second.stdout
    assert f"{later[:8]}" not in second.stdout  # the newest of its day: kept (daily)
    # The earlier backup's data was its own: prune deleted its pack.
    pruned = re.search(r"prune deleted (\d+) pack", second.stdout)
    assert pruned is not None, second.stdout
    assert int(pruned.group(1)) >= 1
    with (
        S3Target(settings_for(moto_s3.endpoint, bucket, prefix="hyperv/hv01")) as target,
        Repository.open(target, REPO_PASSWORD) as repository,
    ):
        web_backups = [s.id for s in repository.snapshots(vm="web")]
        assert earlier not in web_backups
        assert later in web_backups
        newest = web_backups[0]
        assert newest[:8] in second.stdout  # tonight's backup, printed and kept
        assert repository.check(read_data=True).ok


def test_nightly_to_s3_dry_run_retention_only_says_what_it_would_forget(
    make_simulator: MakeSimulator, moto_s3: MotoS3, tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [{"name": "app", "state": "Off"}]}, smb=True)
    bucket = new_bucket(moto_s3.endpoint)
    env = {
        **secrets_env(sim),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    args = [
        *host_args(sim, tmp_path / "state"),
        "--bucket",
        bucket,
        "--s3-endpoint",
        moto_s3.endpoint,
        "--retention-dry-run",
    ]
    for _ in range(2):  # two backups on one day: daily keeps only the newer one
        done = run_example("nightly_to_s3.py", *args, env=env)
        assert done.returncode == 0, done.stderr
    assert "retention: would forget app backup" in done.stdout
    assert "1 kept, 1 would forget" in done.stdout
    with (
        S3Target(settings_for(moto_s3.endpoint, bucket)) as target,
        Repository.open(target, REPO_PASSWORD) as repository,
    ):
        assert len(repository.snapshots(vm="app")) == 2  # nothing was forgotten


# --- backup_replica.py ------------------------------------------------------------------------


def test_backup_replica_backs_up_only_replicas_crash_consistent_and_resumes_replication(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    replica = {"mode": "Replica", "primary_server": "hv01.corp.example"}
    sim = make_simulator(
        {
            "vms": [
                {
                    "name": "sql01",
                    "replication": {"mode": "Primary", "replica_server": "hv02.corp.example"},
                },
                {"name": "erp-replica", "state": "Off", "replication": replica},
                # Replication is busy with it (resynchronising) for a while: left running,
                # it would make the backup wait and retry three times.
                {
                    "name": "crm-replica",
                    "state": "Off",
                    "replication": {**replica, "transient_attempts": 5},
                },
                {"name": "web"},
            ]
        },
        smb=True,
    )
    repo = tmp_path / "repo"
    done = run_example(
        "backup_replica.py",
        *host_args(sim, tmp_path / "state"),
        "--repo",
        str(repo),
        "--retry-initial-wait",
        "0.05",
        "--retry-max-wait",
        "0.2",
        env=secrets_env(sim),
    )
    assert done.returncode == 0, done.stderr
    for name in ("erp-replica", "crm-replica"):
        assert f"{name}: success, consistency=crash method=vss_snapshot" in done.stdout
    # Suspended first, so the busy replica went through without a single retry.
    assert done.stdout.count("retries=0 replication=suspended during the backup") == 2
    assert "sql01" not in done.stdout
    assert "skipping sql01: replication role Primary" in done.stderr

    with Repository.open(LocalTarget(repo), REPO_PASSWORD) as repository:
        snapshots = repository.snapshots()
    assert sorted(s.vm_name for s in snapshots) == ["crm-replica", "erp-replica"]
    assert {s.result.achieved for s in snapshots} == {ConsistencyLevel.CRASH}
    assert all(s.result.replication_suspended for s in snapshots)

    for name in ("erp-replica", "crm-replica"):
        happened = events(sim, name)
        assert happened.index("replication_suspended") < happened.index("replication_resumed")
        assert "shadow_created" in happened
    assert sim.emulator.vm_info("erp-replica").replication.state == "Replicating"
    assert sim.emulator.vm_info("crm-replica").replication.state != "Suspended"
    # The primary on the same host was left alone.
    assert not {"replication_suspended", "checkpoint_created"} & set(events(sim, "sql01"))
    assert sim.emulator.vm_info("sql01").replication.state == "Replicating"


# --- restore_copy.py --------------------------------------------------------------------------


def test_restore_copy_to_a_folder_and_onto_the_host_as_a_new_vm_with_verified_hashes(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator(
        {"vms": [{"name": "web", "state": "Off", "disks": [disk(r"D:\VMs\web\web.vhdx", 3)]}]},
        smb=True,
    )
    repo = tmp_path / "repo"
    with Repository.init(LocalTarget(repo), REPO_PASSWORD, scrypt_n=2**12) as repository:
        job = BackupJob(
            sim.connection_settings(),
            BackupPolicy(),
            sink=repository,
            reader=LocalPathReader(sim.path_map()),
            state_dir=tmp_path / "state",
        )
        for _ in range(2):
            # The checkpoint's merge rewrites the disk after each backup: keep what it read.
            original_disk = sha256_of(sim.local_path(r"D:\VMs\web\web.vhdx"))
            assert job.run(Selection(names=["web"])).status == JobStatus.SUCCESS
        newest: Snapshot = repository.snapshots(vm="web")[0]

    done = run_example(
        "restore_copy.py",
        "web",
        "--repo",
        str(repo),
        "--to",
        str(tmp_path / "restore"),
        "--to-host",
        r"D:\Restore",
        "--import-vm",
        *host_args(sim, tmp_path / "state"),
        env=secrets_env(sim),
    )
    assert done.returncode == 0, done.stderr
    assert f"web backup {newest.short_id}" in done.stdout

    local = tmp_path / "restore" / vm_folder_name("web")
    on_host = sim.local_path(r"D:\Restore" + "\\" + vm_folder_name("web"))
    for folder in (local, on_host):
        restored = sorted(
            p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
        )
        assert restored == sorted(f.path for f in newest.files)  # the Export-VM layout
        for entry in newest.files:
            data = (folder / entry.path).read_bytes()
            assert blake3.blake3(data).hexdigest() == entry.blake3, (folder, entry.path)
        assert sha256_of(folder / "Virtual Hard Disks" / "web.vhdx") == original_disk

    copy, original = sim.emulator.vm_info("web-restored"), sim.emulator.vm_info("web")
    assert copy.id != original.id  # a new VM beside the original, never the same id
    assert "vm_imported" in events(sim, "web-restored")
    assert f"imported as VM 'web-restored' id {copy.id}" in done.stdout


# --- custom_before_command.py -----------------------------------------------------------------

HOOK_SCENARIO = {
    "vms": [
        {"name": "web", "disks": [disk(r"D:\VMs\web\web.vhdx")]},
        {"name": "app", "state": "Off"},
        {"name": "db-main", "disks": [disk(r"D:\VMs\db\db.vhdx")]},
    ]
}


def test_before_vm_hook_refuses_the_maintenance_vm_untouched_and_the_others_succeed(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator(HOOK_SCENARIO, smb=True)
    done = run_example(
        "custom_before_command.py",
        "--to",
        str(tmp_path / "backups"),
        "--maintenance",
        "db-*",
        *host_args(sim, tmp_path / "state"),
        env=secrets_env(sim),
    )
    assert done.returncode == 3, done.stderr  # partial: one VM refused
    lines = done.stdout.splitlines()
    assert "db-main: FAILED (HookError) A before-VM command failed, so 'db-main' was not " in (
        done.stdout
    )
    assert (
        "  before_vm MaintenanceWindow.before_vm: FAILED: db-main is under maintenance "
        "(matches 'db-*'): not backed up tonight"
    ) in lines
    assert any(line.startswith("web: success, backed up") for line in lines)
    assert any(line.startswith("app: success, backed up") for line in lines)

    # Refused before anything happened on the host; the others were backed up.
    assert events(sim, "db-main") == []
    assert "checkpoint_created" in events(sim, "web")
    reports = {p.parent.name.rsplit("-", 1)[0] for p in (tmp_path / "backups").rglob("backup.json")}
    assert reports == {"web", "app"}
    # The PowerShell before-job command ran once on the host, with $JobId as a variable.
    before_job = [h for h in sim.emulator.hooks if h.phase == "before_job"]
    assert len(before_job) == 1
    assert "$JobId" in before_job[0].command
    assert "  before_job before-job check: ok" in lines


def test_failing_before_job_command_stops_the_job_before_any_vm_is_touched(
    make_simulator: MakeSimulator, tmp_path: Path
) -> None:
    sim = make_simulator(HOOK_SCENARIO, smb=True)
    done = run_example(
        "custom_before_command.py",
        "--to",
        str(tmp_path / "backups"),
        "--before-job",
        "throw 'change freeze until Monday'",
        *host_args(sim, tmp_path / "state"),
        env=secrets_env(sim),
    )
    assert done.returncode == 1, done.stderr
    assert "  before_job before-job check: FAILED: change freeze until Monday" in done.stdout
    assert "job stopped: A before-job command failed, so no VM was touched" in done.stdout
    for vm in ("web", "app", "db-main"):
        assert events(sim, vm) == []
    assert not list((tmp_path / "backups").rglob("backup.json"))


# --- bad settings -----------------------------------------------------------------------------


def test_examples_exit_2_with_what_to_fix_on_bad_settings(tmp_path: Path) -> None:
    # Checked before anything is contacted: no host or bucket is needed.
    args = ["--host", "127.0.0.1", "-u", "admin", "--bucket", "b-none", "--state-dir", "s"]
    no_repo_password = run_example("nightly_to_s3.py", *args, env={"HYPERV_BACKUP_PASSWORD": "x"})
    assert no_repo_password.returncode == 2
    assert "Set HYPERV_BACKUP_REPO_PASSWORD" in no_repo_password.stderr
    nowhere = run_example("restore_copy.py", "web", "--repo", str(tmp_path), env={})
    assert nowhere.returncode == 2
    assert "--to FOLDER and/or --to-host" in nowhere.stderr
