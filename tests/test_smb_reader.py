"""The SMB reader against a real SMB server: Samba (``smbd``) on a loopback port.

Byte-exact reads across the read-ahead's block boundaries, share mapping, the errors a user
meets (wrong password, missing share or file, access denied), shares added and removed while
the server runs, staging shares made through the simulator's scripts, and a whole backup job
reading the emulated host over SMB.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from hyperv_backup import (
    AuthenticationError,
    BackupJob,
    BackupPolicy,
    CaptureMode,
    ConfigError,
    ConnectionError,
    DirectorySink,
    HostFileNotFoundError,
    HyperVHost,
    JobStatus,
    ReadAccessDeniedError,
    RetryPolicy,
    Selection,
    ShareNotFoundError,
    SMBReader,
    TransferError,
    VMStatus,
)
from hyperv_backup.ps_scripts import (
    SCRIPTS,
    NewStagingFolderParams,
    NewStagingShareParams,
    RemoveStagingShareParams,
    VMExportParams,
)
from hyperv_backup.simulator import SambaError, SambaServer, Simulator
from hyperv_backup.simulator import samba as samba_module

KiB = 2**10
MiB = 2**20
BLOCK = 256 * KiB  # a small read size, so that small files span many read-ahead blocks
PASSWORD = "Sm8-test-Pa55"  # the test server's own throwaway login
# Around the block size, beyond the read-ahead window (2 blocks in flight), and a few MiB.
SIZES = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK, 5 * BLOCK + 17, 3 * MiB + 5]


def content(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A host drive: D:\\VMs\\f<size>.bin, one for each size in SIZES."""
    root = tmp_path_factory.mktemp("host")
    (root / "D" / "VMs" / "Sub Folder").mkdir(parents=True)
    for size in SIZES:
        (root / "D" / "VMs" / f"f{size}.bin").write_bytes(content(size, size))
    (root / "D" / "VMs" / "Sub Folder" / "Disk.VHDX").write_bytes(content(5 * MiB + 3, 7))
    return root


@pytest.fixture(scope="module")
def samba(files: Path) -> Iterator[SambaServer]:
    """Samba on a free loopback port: D$ (the drive) and HyperV (a folder of it)."""
    shares = {"D$": files / "D", "HyperV": files / "D" / "VMs"}
    with SambaServer(shares, password=PASSWORD) as server:
        yield server


def reader_for(samba: SambaServer, **options: Any) -> SMBReader:
    options.setdefault("password", SecretStr(PASSWORD))
    return SMBReader(samba.host, port=samba.port, username=samba.username, **options)


def read_all(reader: SMBReader, host_path: str) -> bytes:
    with reader.open(host_path) as stream:
        return stream.read()


# --- byte-exact reads --------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_reads_are_byte_exact_across_read_ahead_blocks(samba: SambaServer, size: int) -> None:
    with reader_for(samba, read_size=BLOCK, read_ahead=2) as reader:
        assert read_all(reader, rf"D:\VMs\f{size}.bin") == content(size, size)


def test_default_read_size_and_encryption_read_a_file_of_a_few_mib(samba: SambaServer) -> None:
    with reader_for(samba) as reader:
        assert reader.encrypt
        with reader.open(r"D:\VMs\Sub Folder\Disk.VHDX") as stream:
            digest = hashlib.sha256()
            while chunk := stream.read(1 * MiB):  # smaller than the 4 MiB SMB reads
                digest.update(chunk)
        assert digest.hexdigest() == hashlib.sha256(content(5 * MiB + 3, 7)).hexdigest()


def test_small_reads_seek_and_tell(samba: SambaServer) -> None:
    data = content(5 * BLOCK + 17, 5 * BLOCK + 17)
    with (
        reader_for(samba, read_size=BLOCK, encrypt=False) as reader,
        reader.open(rf"d:/vms/F{len(data)}.BIN") as stream,  # any case, any separator
    ):
        assert stream.read(1) == data[:1]
        assert stream.read(BLOCK) == data[1 : BLOCK + 1]
        stream.seek(3 * BLOCK - 5)
        assert stream.tell() == 3 * BLOCK - 5
        assert stream.read(10) == data[3 * BLOCK - 5 : 3 * BLOCK + 5]
        stream.seek(0)
        assert stream.read() == data
        assert stream.read(1) == b""


def test_many_files_in_flight_on_one_session(samba: SambaServer) -> None:
    """Threads share the reader's one session; every stream reads ahead at the same time."""
    with reader_for(samba, read_size=BLOCK, read_ahead=3) as reader:
        results: dict[int, bytes] = {}
        errors: list[BaseException] = []

        def read(size: int) -> None:
            try:
                results[size] = read_all(reader, rf"D:\VMs\f{size}.bin")
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=read, args=(size,)) for size in SIZES * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors
        assert all(results[size] == content(size, size) for size in SIZES)


def test_closing_a_stream_early_leaves_the_reader_usable(samba: SambaServer) -> None:
    with reader_for(samba, read_size=BLOCK, read_ahead=4) as reader:
        for _ in range(3):
            with reader.open(rf"D:\VMs\f{3 * MiB + 5}.bin") as stream:
                assert stream.read(100) == content(3 * MiB + 5, 3 * MiB + 5)[:100]
        assert read_all(reader, rf"D:\VMs\f{BLOCK}.bin") == content(BLOCK, BLOCK)


# --- mapping host paths to shares -----------------------------------------------------------


def test_admin_shares_map_every_drive_and_need_no_network() -> None:
    reader = SMBReader("hv01.corp.example", username="CORP\\backup", password=SecretStr("x"))
    assert reader.unc(r"D:\VMs\x.vhdx") == r"\\hv01.corp.example\D$\VMs\x.vhdx"
    assert reader.unc("c:/ClusterStorage/Volume1/a.vhdx") == (
        r"\\hv01.corp.example\C$\ClusterStorage\Volume1\a.vhdx"
    )
    assert reader.unc(r"D:\VMs\..\Other\y.avhdx") == r"\\hv01.corp.example\D$\Other\y.avhdx"
    assert reader.reachable(r"E:\anything")
    assert not reader.reachable(r"\\nas\share\x.vhdx")
    assert not reader.reachable("relative\\x.vhdx")


def test_configured_prefixes_longest_wins_case_insensitively() -> None:
    reader = SMBReader(
        "hv01",
        username="backup",
        password=SecretStr("x"),
        shares={"D:\\Hyper-V": "HyperV", "d:\\hyper-v\\web01": "Web\\disks", "C:\\": "C$"},
    )
    assert reader.unc(r"D:\Hyper-V\sql01\a.vhdx") == r"\\hv01\HyperV\sql01\a.vhdx"
    assert reader.unc(r"D:\HYPER-V\Web01\b.vhdx") == r"\\hv01\Web\disks\b.vhdx"
    assert reader.unc(r"C:\x") == r"\\hv01\C$\x"
    assert not reader.reachable(r"D:\Other\c.vhdx")  # no admin shares once shares are given
    assert not reader.reachable(r"D:\Hyper-V2\c.vhdx")  # a prefix is a folder, not a string
    reader.map_share(r"D:\staging\hyperv-backup-1", "hyperv-backup-1")
    unc = reader.unc(r"D:\staging\hyperv-backup-1\vm\x.vhdx")
    assert unc == r"\\hv01\hyperv-backup-1\vm\x.vhdx"
    assert reader.unmap_share(r"d:\STAGING\hyperv-backup-1\\")
    assert not reader.reachable(r"D:\staging\hyperv-backup-1\vm\x.vhdx")
    with pytest.raises(ConfigError, match="share name"):
        reader.map_share(r"D:\x", "bad:name")
    with pytest.raises(ConfigError, match="absolute"):
        reader.map_share("relative", "Share")


def test_reads_through_a_configured_share(samba: SambaServer) -> None:
    with reader_for(samba, shares={"D:\\VMs": "HyperV"}) as reader:
        assert read_all(reader, rf"D:\VMs\f{BLOCK + 1}.bin") == content(BLOCK + 1, BLOCK + 1)
        assert read_all(reader, r"D:\VMs\Sub Folder\Disk.VHDX") == content(5 * MiB + 3, 7)
        with pytest.raises(TransferError, match="No SMB share covers"):
            reader.open(r"D:\elsewhere\x.bin")


# --- errors that say what to do ------------------------------------------------------------


def test_wrong_password_is_an_authentication_error_without_the_password(
    samba: SambaServer,
) -> None:
    secret = "Wr0ng-But-Secret-Passw0rd"
    reader = reader_for(samba, password=SecretStr(secret))
    with reader, pytest.raises(AuthenticationError) as caught:
        reader.open(r"D:\VMs\f1.bin")
    message = str(caught.value)
    assert "refused the credentials" in message
    assert samba.username in message
    assert secret not in message
    assert secret not in repr(reader)
    assert isinstance(caught.value, OSError)  # the engine treats reader errors as OSError


def test_missing_share_says_admin_shares_may_be_off(samba: SambaServer) -> None:
    with (
        reader_for(samba) as reader,
        pytest.raises(ShareNotFoundError, match=r"AutoShareServer") as caught,
    ):
        reader.open(r"Q:\VMs\x.vhdx")
    assert r"\Q$\VMs\x.vhdx" in str(caught.value)


def test_missing_file_is_a_file_not_found_error(samba: SambaServer) -> None:
    with (
        reader_for(samba) as reader,
        pytest.raises(HostFileNotFoundError, match=r"No such file") as caught,
    ):
        reader.open(r"D:\VMs\gone.vhdx")
    assert isinstance(caught.value, FileNotFoundError)
    assert "gone.vhdx" in str(caught.value)


def test_share_the_account_may_not_use_is_access_denied(samba: SambaServer, files: Path) -> None:
    samba.add_share("Private", files / "D", valid_users=["nobody"])
    try:
        with (
            reader_for(samba, shares={"D:\\": "Private"}) as reader,
            pytest.raises(ReadAccessDeniedError, match="Access denied") as caught,
        ):
            reader.open(r"D:\VMs\f1.bin")
        assert isinstance(caught.value, PermissionError)
    finally:
        samba.remove_share("Private")


def test_closed_port_is_a_connection_error() -> None:
    reader = SMBReader("127.0.0.1", port=1, username="u", password=SecretStr("p"), timeout=5)
    with reader, pytest.raises(ConnectionError, match="port 1"):
        reader.open(r"D:\x")


# --- shares change while the server runs ---------------------------------------------------


def test_shares_are_added_and_removed_at_run_time(samba: SambaServer, files: Path) -> None:
    with reader_for(samba, shares={"D:\\VMs\\Sub Folder": "hyperv-backup-live"}) as reader:
        for _ in range(3):  # every time at once: the reload is awaited
            samba.add_share("hyperv-backup-live", files / "D" / "VMs" / "Sub Folder")
            assert read_all(reader, r"D:\VMs\Sub Folder\Disk.VHDX") == content(5 * MiB + 3, 7)
            assert samba.remove_share("hyperv-backup-live")
            # The open connection's tree is cut, as Remove-SmbShare -Force does.
            with pytest.raises(ShareNotFoundError):
                reader.open(r"D:\VMs\Sub Folder\Disk.VHDX")
    assert not samba.remove_share("hyperv-backup-live")


def test_samba_server_refuses_non_loopback_and_explains_a_missing_smbd(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match="loopback"):
        SambaServer(host="0.0.0.0")
    monkeypatch.setattr(samba_module.shutil, "which", lambda *a, **k: None)
    with pytest.raises(SambaError, match="apt-get install -y samba"):
        SambaServer().start()


# --- the simulator: administrative shares and staging shares ---------------------------------


def small_vm(name: str) -> dict[str, Any]:
    disk = {"file": {"path": rf"D:\VMs\{name}\{name}.vhdx", "size": "60 GiB", "file_size": 3 * MiB}}
    return {"name": name, "disks": [disk]}


@pytest.fixture(scope="module")
def smb_sim() -> Iterator[Simulator]:
    with Simulator({"vms": [small_vm("web"), small_vm("db")]}, smb=True) as sim:
        yield sim


def test_simulator_serves_each_drive_as_its_administrative_share(smb_sim: Simulator) -> None:
    assert smb_sim.samba is not None
    assert {"C$", "D$"} <= set(smb_sim.samba.shares)
    with smb_sim.smb_reader() as reader:
        for file in smb_sim.emulator.vm_files("web").files:
            assert read_all(reader, file.path) == smb_sim.local_path(file.path).read_bytes()
    with Simulator() as plain, pytest.raises(RuntimeError, match="smb=True"):
        plain.smb_reader()


def test_staging_share_is_created_read_and_removed_through_the_scripts(
    smb_sim: Simulator,
) -> None:
    sim = smb_sim
    vm_id = sim.emulator.vm_info("db").id
    with HyperVHost(sim.connection_settings()) as host, sim.smb_reader(shares={}) as reader:
        run = host.runner.run
        staging = run(
            SCRIPTS["new-staging-folder"],
            NewStagingFolderParams(
                root=r"D:\Staging", job_id="job-0001", vm_id=vm_id, required_bytes=0
            ),
        )
        export = run(SCRIPTS["export-vm"], VMExportParams(vm_name="db", destination=staging.path))
        name = "hyperv-backup-job-0001"
        params = NewStagingShareParams(
            name=name, path=staging.path, read_access="HV01\\administrator"
        )
        share = run(SCRIPTS["new-staging-share"], params)
        assert (share.name, share.path, share.created) == (name, staging.path, True)
        assert share.unc_path == rf"\\HV01\{name}"
        assert run(SCRIPTS["new-staging-share"], params).created is False  # a retry
        assert [s.name for s in sim.emulator.smb_shares] == [name]
        assert sim.samba is not None
        assert sim.samba.shares[name].path == sim.local_path(staging.path)  # served by Samba

        reader.map_share(staging.path, name)
        assert not reader.reachable(r"D:\VMs\db\db.vhdx")  # only the staging share is mapped
        for file in export.files:
            assert reader.reachable(file.path)
            assert read_all(reader, file.path) == sim.local_path(file.path).read_bytes()

        removed = run(SCRIPTS["remove-staging-share"], RemoveStagingShareParams(name=name))
        assert removed.removed
        assert name not in sim.samba.shares
        with pytest.raises(ShareNotFoundError):
            reader.open(export.files[0].path)
        again = run(SCRIPTS["remove-staging-share"], RemoveStagingShareParams(name=name))
        assert not again.removed
    events = [(e.event, e.detail.get("name")) for e in sim.events if "share" in e.event]
    assert events == [("share_created", name), ("share_removed", name)]
    assert sim.emulator.smb_shares == []


def test_staging_share_for_another_account_cannot_be_read(smb_sim: Simulator) -> None:
    sim = smb_sim
    with HyperVHost(sim.connection_settings()) as host, sim.smb_reader(shares={}) as reader:
        name = "hyperv-backup-other"
        params = NewStagingShareParams(name=name, path=r"D:\VMs\web", read_access="CORP\\someone")
        host.runner.run(SCRIPTS["new-staging-share"], params)
        try:
            reader.map_share(r"D:\VMs\web", name)
            with pytest.raises(ReadAccessDeniedError):
                reader.open(r"D:\VMs\web\web.vhdx")
        finally:
            host.runner.run(SCRIPTS["remove-staging-share"], RemoveStagingShareParams(name=name))
    with pytest.raises(ValueError, match="hyperv-backup-"):
        RemoveStagingShareParams(name="Users")  # refused before anything is sent


@pytest.mark.parametrize("capture", [CaptureMode.IN_PLACE, CaptureMode.EXPORT])
def test_backup_job_reads_the_host_over_smb(
    smb_sim: Simulator, tmp_path: Path, capture: CaptureMode
) -> None:
    sim = smb_sim
    job = BackupJob(
        sim.connection_settings(),
        BackupPolicy(
            capture=capture,
            retry=RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, deadline=30),
        ),
        sink=DirectorySink(tmp_path / "backups"),
        reader=sim.smb_reader(),
        state_dir=tmp_path / "state",
    )
    result = job.run(Selection(names=["web", "db"]))
    assert result.status == JobStatus.SUCCESS, [(v.vm_name, v.error) for v in result.vms]
    for vm in result.vms:
        assert vm.status == VMStatus.SUCCESS
        # 3 MiB, and what the running guest wrote before the checkpoint froze the disk.
        assert any(f.relative_path.endswith(".vhdx") and f.size >= 3 * MiB for f in vm.files)
        for file in vm.files:
            stored = (Path(vm.location or "") / file.relative_path).read_bytes()
            assert len(stored) == file.size
            assert hashlib.sha256(stored).hexdigest() == file.sha256
        disk = next(f for f in vm.files if f.relative_path.endswith(".vhdx"))
        # The base disk was frozen while read; the merge appended the guest's writes since.
        host_disk = sim.local_path(rf"D:\VMs\{vm.vm_name}\{vm.vm_name}.vhdx").read_bytes()
        assert hashlib.sha256(host_disk[: disk.size]).hexdigest() == disk.sha256


def test_reader_errors_fail_the_vm_with_a_clear_message(smb_sim: Simulator, tmp_path: Path) -> None:
    sim = smb_sim
    job = BackupJob(
        sim.connection_settings(),
        BackupPolicy(capture=CaptureMode.IN_PLACE),
        sink=DirectorySink(tmp_path / "backups"),
        reader=sim.smb_reader(password=SecretStr("not-the-password")),
        state_dir=tmp_path / "state",
    )
    [vm] = job.run(Selection(names=["web"])).vms
    assert vm.status == VMStatus.FAILED
    assert "refused the credentials" in (vm.error or "")
    assert "not-the-password" not in (vm.error or "")
