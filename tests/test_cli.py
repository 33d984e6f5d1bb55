"""The hyperv-backup command, as an admin or a script runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hyperv_backup.cli import app
from hyperv_backup.simulator import Simulator

ODD_NAME = 'O\'Brien; $(Remove-Item C:\\) "ü"'


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


def _env(sim: Simulator) -> dict[str, str]:
    return {"HYPERV_BACKUP_PASSWORD": sim.scenario.credentials.password}


def test_inventory_json_lists_every_vm_with_host(simulator: Simulator) -> None:
    result = CliRunner().invoke(
        app, ["inventory", *_connect_args(simulator), "--json"], env=_env(simulator)
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["host"]["computer_name"] == "HV01"
    assert [vm["name"] for vm in document["vms"]] == [vm.name for vm in simulator.scenario.vms]
    fileserver = next(vm for vm in document["vms"] if vm["name"] == "fileserver")
    assert [d["is_passthrough"] for d in fileserver["hard_disks"]] == [False, True]


def test_inventory_table_shows_names_verbatim(simulator: Simulator) -> None:
    result = CliRunner().invoke(
        app,
        ["inventory", *_connect_args(simulator), ODD_NAME, "legacy-app"],
        env={**_env(simulator), "COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "HV01: Microsoft Windows Server 2022 Datacenter" in result.stdout
    assert "O'Brien; $(Remove-Item C:\\)" in result.stdout
    assert "legacy-app" in result.stdout


def test_unknown_vm_exits_1_with_message_on_stderr(simulator: Simulator) -> None:
    result = CliRunner().invoke(
        app, ["inventory", *_connect_args(simulator), "ghost"], env=_env(simulator)
    )
    assert result.exit_code == 1
    assert "No virtual machine named 'ghost'" in result.stderr


def test_bad_settings_exit_2(simulator: Simulator) -> None:
    result = CliRunner().invoke(
        app, ["inventory", "--host", "127.0.0.1", "--auth", "ntlm", "-u", "x"], env={}
    )
    assert result.exit_code == 2
    assert "needs a username and a password" in result.stderr


def test_wrong_password_exits_1_without_echoing_it(simulator: Simulator) -> None:
    result = CliRunner().invoke(
        app, ["inventory", *_connect_args(simulator)], env={"HYPERV_BACKUP_PASSWORD": "nope-123"}
    )
    assert result.exit_code == 1
    assert "refused the credentials" in result.stderr
    assert "nope-123" not in result.output + result.stderr


def test_demo_backs_up_verifies_and_restores_and_dedups_on_a_second_run(tmp_path: Path) -> None:
    def run_demo() -> dict:  # type: ignore[type-arg]
        done = subprocess.run(
            [sys.executable, "-m", "hyperv_backup", "demo", "--json", "--output", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    first = run_demo()
    assert first["job"]["status"] == "success"
    names = {vm["vm_name"]: vm for vm in first["job"]["vms"]}
    assert ODD_NAME in names
    assert names["web01"]["achieved"] == "application"
    assert names["erp-replica"]["achieved"] == "crash"
    assert names["fileserver"]["excluded"]
    assert first["check"]["ok"]
    restored = Path(first["restored"])
    assert (restored / "Virtual Hard Disks").is_dir()
    stored = sum(f.stat().st_size for f in (tmp_path / "repository").rglob("*") if f.is_file())

    second = run_demo()
    assert second["job"]["status"] == "success"
    grown = sum(f.stat().st_size for f in (tmp_path / "repository").rglob("*") if f.is_file())
    assert grown - stored < stored / 2  # the second night mostly deduplicates


@pytest.mark.parametrize("tls_args", [[], ["--no-tls"]], ids=["https-basic", "http-ntlm"])
def test_simulator_serve_prints_a_command_that_works_and_stops_on_sigterm(
    tls_args: list[str],
) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "hyperv_backup", "simulator", "serve", "--port", "0", *tls_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(lines)
        assert "listening on http" in text
        assert "host files: " in text  # the host's drives, as local folders
        assert "D:\\  = " in text
        suggested = lines[lines.index("Try:\n") + 1].strip()
        assert suggested.startswith("HYPERV_BACKUP_PASSWORD=")
        # The printed command is the one a user would paste: run it as printed.
        path = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
        done = subprocess.run(
            suggested + " --json",
            shell=True,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PATH": path},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert len(json.loads(done.stdout)["vms"]) == 9
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    assert proc.returncode == 0


def test_simulator_refuses_non_loopback_addresses() -> None:
    result = CliRunner().invoke(app, ["simulator", "serve", "--listen", "0.0.0.0"])
    assert result.exit_code == 2
    assert "not a loopback address" in result.stderr


def _backup_args(sim: Simulator) -> list[str]:
    maps = [
        arg
        for drive, folder in sim.path_map().items()
        for arg in ("--path-map", f"{drive}={folder}")
    ]
    return [*_connect_args(sim), *maps]


def test_plan_json_and_backup_exit_codes(make_simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sim = make_simulator(
        {"vms": [{"name": "web"}, {"name": "appliance", "integration_services": "none"}]}
    )
    runner = CliRunner()
    planned = runner.invoke(app, ["plan", "--all", *_backup_args(sim), "--json"], env=_env(sim))
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.stdout)
    assert {v["vm_name"]: v["expected"] for v in plan["vms"]} == {
        "web": "application",
        "appliance": "crash",
    }
    state = ["--state-dir", str(tmp_path / "state")]
    ok = runner.invoke(
        app,
        ["backup", "--all", "--to", str(tmp_path / "b"), *state, *_backup_args(sim), "--json"],
        env=_env(sim),
    )
    assert ok.exit_code == 0, ok.output
    partial = runner.invoke(
        app,
        [
            "backup",
            "--all",
            "--consistency",
            "app_required",
            "--to",
            str(tmp_path / "b"),
            *state,
            *_backup_args(sim),
        ],
        env={**_env(sim), "COLUMNS": "200"},
    )
    assert partial.exit_code == 3, partial.output
    assert "partial" in partial.stdout
    failed = runner.invoke(
        app,
        [
            "backup",
            "appliance",
            "--consistency",
            "app_required",
            "--to",
            str(tmp_path / "b"),
            *state,
            *_backup_args(sim),
        ],
        env=_env(sim),
    )
    assert failed.exit_code == 1
    nothing = runner.invoke(
        app, ["backup", *_backup_args(sim), "--to", str(tmp_path)], env=_env(sim)
    )
    assert nothing.exit_code == 2
    assert "give VM names" in nothing.stderr


def test_backup_help_teaches_exit_codes_and_options() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "3 partial success" in result.stdout
    backup_help = CliRunner().invoke(app, ["backup", "--help"], env={"COLUMNS": "200"})
    for option in (
        "--consistency",
        "--capture",
        "--suspend-replication",
        "--before-vm",
        "--path-map",
    ):
        assert option in backup_help.stdout


def test_backup_reads_over_smb_by_default(make_simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sim = make_simulator({"vms": [{"name": "web"}, {"name": "db"}]}, smb=True)
    result = CliRunner().invoke(
        app,
        [
            "backup",
            "--all",
            "--to",
            str(tmp_path / "b"),
            "--state-dir",
            str(tmp_path / "s"),
            "--smb-port",
            str(sim.smb_port),
            *_connect_args(sim),
            "--json",
        ],
        env=_env(sim),
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert {vm["status"] for vm in document["vms"]} == {"success"}
    assert all(vm["bytes"] > 0 for vm in document["vms"])


def test_repository_commands_init_backup_snapshots_check_restore_forget(
    make_simulator,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    sim = make_simulator({"vms": [{"name": "web"}, {"name": "db", "state": "Off"}]}, smb=True)
    repo = str(tmp_path / "repo")
    env = {**_env(sim), "HYPERV_BACKUP_REPO_PASSWORD": "correct horse", "COLUMNS": "200"}
    runner = CliRunner()
    assert runner.invoke(app, ["init", "--repo", repo], env=env).exit_code == 0
    no_password = runner.invoke(app, ["init", "--repo", str(tmp_path / "other")], env=_env(sim))
    assert no_password.exit_code == 2
    assert "--no-encryption" in no_password.stderr
    for _ in range(2):
        backup = runner.invoke(
            app,
            [
                "backup",
                "--all",
                "--repo",
                repo,
                "--state-dir",
                str(tmp_path / "s"),
                "--smb-port",
                str(sim.smb_port),
                *_connect_args(sim),
            ],
            env=env,
        )
        assert backup.exit_code == 0, backup.output
    listed = runner.invoke(app, ["snapshots", "--repo", repo, "--vm", "web", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    web_backups = json.loads(listed.stdout)
    assert len(web_backups) == 2
    checked = runner.invoke(app, ["check", "--repo", repo, "--read-data"], env=env)
    assert checked.exit_code == 0, checked.output
    assert "no errors" in checked.stdout
    restored = runner.invoke(
        app,
        ["restore", web_backups[0]["id"][:8], "--repo", repo, "--to", str(tmp_path / "r")],
        env=env,
    )
    assert restored.exit_code == 0, restored.output
    assert list((tmp_path / "r").rglob("*.vhdx"))
    wrong = runner.invoke(
        app, ["check", "--repo", repo], env={**env, "HYPERV_BACKUP_REPO_PASSWORD": "nope"}
    )
    assert wrong.exit_code == 1
    assert "nope" not in wrong.stderr
    dry = runner.invoke(app, ["forget", "--repo", repo, "--keep-last", "1", "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "2 would remove" in dry.stdout
    gone = runner.invoke(app, ["forget", "--repo", repo, "--keep-last", "1", "--prune"], env=env)
    assert gone.exit_code == 0, gone.output
    remaining = json.loads(
        runner.invoke(app, ["snapshots", "--repo", repo, "--json"], env=env).stdout
    )
    assert sorted(s["vm"]["name"] for s in remaining) == ["db", "web"]


def test_backup_to_s3_as_plain_folders_any_tool_can_fetch(
    make_simulator,  # type: ignore[no-untyped-def]
    moto_s3,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    from tests.s3_servers import ACCESS_KEY, SECRET_KEY, new_bucket, raw_client

    sim = make_simulator({"vms": [{"name": "web"}]}, smb=True)
    bucket = new_bucket(moto_s3.endpoint)
    env = {
        **_env(sim),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    result = CliRunner().invoke(
        app,
        [
            "backup",
            "web",
            "--to",
            f"s3://{bucket}/nightly",
            "--s3-endpoint",
            moto_s3.endpoint,
            "--state-dir",
            str(tmp_path / "s"),
            "--smb-port",
            str(sim.smb_port),
            *_connect_args(sim),
            "--json",
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    keys = [
        o["Key"] for o in raw_client(moto_s3.endpoint).list_objects_v2(Bucket=bucket)["Contents"]
    ]
    assert any(k.startswith("nightly/") and k.endswith(".vhdx") for k in keys)
    assert any(k.endswith("backup.json") for k in keys)


def test_simulator_serve_json_with_smb_gives_what_a_backup_over_smb_needs(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hyperv_backup",
            "simulator",
            "serve",
            "--no-tls",
            "--smb",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        endpoint = json.loads(proc.stdout.readline())  # one line, once ready
        assert endpoint["smb_port"]
        assert endpoint["auth"] == "ntlm"
        assert not endpoint["tls"]
        assert set(endpoint["path_map"]) >= {"C:\\", "D:\\"}
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "hyperv_backup",
                "backup",
                "web01",
                "--to",
                str(tmp_path / "backups"),
                "--host",
                endpoint["host"],
                "--port",
                str(endpoint["port"]),
                "--no-tls",
                "--auth",
                endpoint["auth"],
                "-u",
                endpoint["username"],
                "--smb-port",
                str(endpoint["smb_port"]),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HYPERV_BACKUP_PASSWORD": endpoint["password"]},
            check=False,
        )
        assert done.returncode == 0, done.stderr
        [vm] = json.loads(done.stdout)["vms"]
        assert vm["status"] == "success"
        assert list((tmp_path / "backups").rglob("*.vhdx"))  # read over SMB, stored as files
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
    assert proc.returncode == 0
