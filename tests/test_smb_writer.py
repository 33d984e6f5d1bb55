"""The SMB writer against a real SMB server: Samba (``smbd``) on a loopback port.

Byte-exact files across the write-behind's block boundaries and skipped zero runs, a file's
name appearing only on commit, never overwriting (also when a file appears meanwhile), the
partial file gone after any failure, and the errors a user meets.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from hyperv_backup import (
    ConfigError,
    HostFileExistsError,
    SMBWriter,
    TransferError,
    WriteAccessDeniedError,
)
from hyperv_backup.simulator import SambaServer
from hyperv_backup.simulator.samba import SambaShare

KiB = 2**10
MiB = 2**20
PASSWORD = "Wr1te-test-Pa55"  # the test server's own throwaway login


@pytest.fixture(scope="module")
def drive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("host")
    (root / "D").mkdir()
    (root / "R").mkdir()
    (root / "R" / "kept.bin").write_bytes(b"kept")
    return root


@pytest.fixture(scope="module")
def samba(drive: Path) -> Iterator[SambaServer]:
    """D$ writable (an administrator's administrative share); Reports read-only."""
    shares = [
        SambaShare("D$", drive / "D", read_only=False),
        SambaShare("Reports", drive / "R", read_only=True),
    ]
    with SambaServer(shares, password=PASSWORD) as server:
        yield server


def writer_for(samba: SambaServer, **options: object) -> SMBWriter:
    options.setdefault("password", SecretStr(PASSWORD))
    return SMBWriter(samba.host, port=samba.port, username=samba.username, **options)  # type: ignore[arg-type]


def test_large_writes_and_skipped_zeros_land_byte_exact(samba: SambaServer, drive: Path) -> None:
    rng = random.Random(3)
    head, tail = rng.randbytes(5 * 256 * KiB + 17), rng.randbytes(3 * MiB + 5)
    expected = head + bytes(700 * KiB) + tail + bytes(123)
    with writer_for(samba, write_size=256 * KiB, write_behind=3) as writer:
        writer.makedirs(r"D:\Restore\web01\Virtual Hard Disks")
        with writer.create(r"D:\Restore\web01\Virtual Hard Disks\web01.vhdx") as upload:
            for start in range(0, len(head), 100_000):  # writes smaller than a block
                upload.write(head[start : start + 100_000])
            upload.skip(700 * KiB)
            upload.write(tail)  # one write of many blocks
            upload.skip(123)  # a file ending in zeros
            folder = drive / "D" / "Restore" / "web01" / "Virtual Hard Disks"
            assert [p.name for p in folder.iterdir()] == ["web01.vhdx.partial"]
            upload.commit()
            assert upload.size == len(expected)
    assert [p.name for p in folder.iterdir()] == ["web01.vhdx"]
    assert (folder / "web01.vhdx").read_bytes() == expected


def test_an_empty_file_and_the_default_sizes(samba: SambaServer, drive: Path) -> None:
    with writer_for(samba) as writer:
        with writer.create(r"D:\empty.bin") as upload:
            upload.commit()
        assert writer.exists(r"D:\empty.bin")
        assert not writer.exists(r"D:\no-such-file.bin")
    assert (drive / "D" / "empty.bin").read_bytes() == b""


def test_existing_files_are_never_overwritten_unless_asked(samba: SambaServer, drive: Path) -> None:
    target = drive / "D" / "keep.vhdx"
    target.write_bytes(b"original")
    with writer_for(samba) as writer:
        with pytest.raises(HostFileExistsError, match="refusing to overwrite"):
            writer.create(r"D:\keep.vhdx")
        # A file that appears while the upload runs is not replaced by its rename either.
        with writer.create(r"D:\late.vhdx") as upload:
            upload.write(b"restored")
            (drive / "D" / "late.vhdx").write_bytes(b"appeared meanwhile")
            with pytest.raises(HostFileExistsError, match="was not replaced"):
                upload.commit()
        with writer.create(r"D:\keep.vhdx", overwrite=True) as upload:
            upload.write(b"restored")
            upload.commit()
    assert target.read_bytes() == b"restored"
    assert (drive / "D" / "late.vhdx").read_bytes() == b"appeared meanwhile"
    assert not list((drive / "D").glob("*.partial"))


def test_a_failure_or_an_abort_leaves_no_partial_file(samba: SambaServer, drive: Path) -> None:
    def fail_midway(writer: SMBWriter) -> None:
        with writer.create(r"D:\Failed\disk.vhdx") as upload:  # its folder is made
            upload.write(random.Random(1).randbytes(MiB))
            raise RuntimeError("the source failed")

    with writer_for(samba, write_size=64 * KiB) as writer:
        with pytest.raises(RuntimeError, match="the source failed"):
            fail_midway(writer)
        assert (drive / "D" / "Failed").is_dir()
        upload = writer.create(r"D:\aborted.vhdx")
        upload.write(b"x" * 1000)
        upload.abort()
        upload.abort()  # twice is fine
        with pytest.raises(ValueError, match="no longer open"):
            upload.write(b"more")
        assert not writer.remove(r"D:\aborted.vhdx")
    assert not list((drive / "D").rglob("*.partial"))
    assert not (drive / "D" / "aborted.vhdx").exists()


def test_errors_say_what_to_check(samba: SambaServer, drive: Path) -> None:
    with writer_for(samba, shares={"R:\\": "Reports", "D:\\": "D$"}) as writer:
        with pytest.raises(WriteAccessDeniedError, match="change rights on the share"):
            writer.create(r"R:\new.bin")
        with pytest.raises(TransferError, match="No SMB share covers"):
            writer.create(r"E:\x.bin")
        with pytest.raises(ConfigError, match="names a folder"):
            writer.create("D:\\")
    assert sorted(p.name for p in (drive / "R").iterdir()) == ["kept.bin"]
    with pytest.raises(ConfigError, match="below one SMB credit"):
        writer_for(samba, write_size=1000)
    wrong = writer_for(samba, password=SecretStr("not-it"))
    with wrong, pytest.raises(Exception, match="refused the credentials") as refused:
        wrong.makedirs(r"D:\x")
    assert "not-it" not in str(refused.value)
