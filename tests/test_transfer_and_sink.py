"""Reading host paths through a local mapping, and the directory sink's layout."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hyperv_backup import (
    ConsistencyPolicy,
    DirectorySink,
    LocalPathReader,
    TargetError,
    VMBackupResult,
    VMInfo,
)
from hyperv_backup.sink import read_report


def test_longest_prefix_wins_and_case_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "csv" / "VMs").mkdir(parents=True)
    (tmp_path / "csv" / "VMs" / "a.vhdx").write_bytes(b"disk")
    reader = LocalPathReader(
        {"C:\\": tmp_path / "c", "C:\\ClusterStorage\\Volume1": tmp_path / "csv"}
    )
    assert (
        reader.local_path("c:\\clusterstorage\\volume1\\VMs\\a.vhdx")
        == tmp_path / "csv" / "VMs" / "a.vhdx"
    )
    with reader.open("C:\\ClusterStorage\\Volume1\\VMs\\a.vhdx") as stream:
        assert stream.read() == b"disk"
    assert reader.local_path("E:\\x") is None
    assert not reader.reachable("E:\\x")
    with pytest.raises(FileNotFoundError, match="no local mapping"):
        reader.open("E:\\x")


def _vm(name: str) -> VMInfo:
    return VMInfo.model_validate(
        {
            "id": "6f0c2c3e-8f2a-4d7c-9d55-0d8f5a0e7c11",
            "name": name,
            "state": "Running",
            "generation": 2,
            "configuration_version": "10.0",
            "path": "D:\\VMs",
            "checkpoint_type": "Production",
            "memory_startup": 1,
            "memory_assigned": 1,
            "has_saved_state": False,
        }
    )


def test_directory_sink_writes_layout_and_report_last(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path)
    capture = sink.open_vm("job1", host="hv01", vm=_vm('O\'Brien; $(Remove-Item C:\\) "ü"'))
    digest = capture.write_file("Virtual Hard Disks/os.vhdx", io.BytesIO(b"x" * 10))
    assert digest.size == 10
    folder = next((tmp_path / "job1").iterdir())
    assert "\\" not in folder.name
    assert '"' not in folder.name
    with pytest.raises(TargetError, match="incomplete"):
        read_report(folder)
    result = VMBackupResult(
        vm_name="x",
        vm_id="1",
        requested=ConsistencyPolicy.APP_PREFERRED,
        started_at=datetime.now(timezone.utc),
    )
    location = capture.commit(result)
    assert json.loads((Path(location) / "backup.json").read_text())["vm_name"] == "x"
    assert (folder / "Virtual Hard Disks" / "os.vhdx").read_bytes() == b"x" * 10


def test_directory_sink_refuses_paths_escaping_the_backup(tmp_path: Path) -> None:
    capture = DirectorySink(tmp_path).open_vm("job1", host="hv01", vm=_vm("a"))
    with pytest.raises(TargetError, match="unsafe path"):
        capture.write_file("../../etc/passwd", io.BytesIO(b""))


def test_aborted_capture_leaves_nothing(tmp_path: Path) -> None:
    capture = DirectorySink(tmp_path).open_vm("job1", host="hv01", vm=_vm("a"))
    capture.write_file("Virtual Machines/a.vmcx", io.BytesIO(b"cfg"))
    capture.abort()
    assert list((tmp_path / "job1").iterdir()) == []
