"""The hyperv-backup command, as an admin or a script runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

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


def test_demo_runs_inventory_against_the_simulator() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hyperv_backup", "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert ODD_NAME in [vm["name"] for vm in document["vms"]]


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
