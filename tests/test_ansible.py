"""The Ansible collection, as an operator runs it: real ansible-playbook against the simulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest

from hyperv_backup.repository import Repository
from hyperv_backup.simulator import Simulator
from hyperv_backup.targets import LocalTarget, S3Settings, S3Target

ROOT = Path(__file__).resolve().parent.parent
COLLECTION = ROOT / "ansible_collections" / "hyperv_backup" / "hyperv"
BIN = Path(sys.executable).parent
ANSIBLE_PLAYBOOK = BIN / "ansible-playbook"
ANSIBLE_DOC = BIN / "ansible-doc"
MODULE = "hyperv_backup.hyperv.hyperv_backup"

# A password no log line would contain by chance.
HOST_PASSWORD = "Hv-0nly-In-Vault-4711"
REPO_PASSWORD = "repo-secret-horse-0815"

pytestmark = pytest.mark.skipif(
    not ANSIBLE_PLAYBOOK.exists(),
    reason=f"ansible-playbook is not installed next to {sys.executable}: "
    "install the test extra (pip install -e '.[test]')",
)

SCENARIO: dict[str, Any] = {
    "credentials": {"username": "administrator", "password": HOST_PASSWORD},
    "vms": [
        {"name": "web"},
        {"name": "db", "state": "Off"},
        {"name": "scratch"},
        {"name": "appliance", "integration_services": "none"},
    ],
}


def _env(tmp_path: Path) -> dict[str, str]:
    """Ansible confined to tmp_path: its home, temp folders, config; only this collection."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANSIBLE_", "HYPERV_BACKUP_", "AWS_"))
    }
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env.update(
        {
            "HOME": str(home),
            "LC_ALL": "C.UTF-8",
            "ANSIBLE_CONFIG": str(tmp_path / "no-ansible.cfg"),
            "ANSIBLE_COLLECTIONS_PATH": str(ROOT),
            "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "False",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"),
            "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote"),
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_NOCOLOR": "1",
            "HYPERV_BACKUP_STATE_DIR": str(tmp_path / "state"),
        }
    )
    return env


def _inventory(tmp_path: Path, interpreter: str = sys.executable) -> Path:
    path = tmp_path / "inventory.ini"
    path.write_text(
        "[hyperv_hosts]\n"
        "hv-sim ansible_host=127.0.0.1\n\n"
        "[management]\n"
        f"localhost ansible_connection=local ansible_python_interpreter={interpreter}\n",
        encoding="utf-8",
    )
    return path


def _playbook(
    tmp_path: Path, playbook: str | Path, *args: str, interpreter: str = sys.executable
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(ANSIBLE_PLAYBOOK),
            "-i",
            str(_inventory(tmp_path, interpreter)),
            str(playbook),
            *args,
        ],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _connection(sim: Simulator) -> dict[str, Any]:
    """The module's connection options for the simulator (HTTPS, Basic, its own CA)."""
    return {
        "host": "127.0.0.1",
        "port": sim.port,
        "auth": "basic",
        "username": sim.scenario.credentials.username,
        "password": sim.scenario.credentials.password,
        "ca_path": str(sim.ca_pem),
    }


def _nightly_vars(sim: Simulator, tmp_path: Path) -> Path:
    """The sample playbook's variables, pointed at the simulator (a vars file, as with Vault)."""
    path = tmp_path / "nightly-vars.json"
    values = {
        "hyperv_port": sim.port,
        "hyperv_auth": "basic",
        "hyperv_username": sim.scenario.credentials.username,
        "hyperv_password": sim.scenario.credentials.password,
        "hyperv_ca_path": str(sim.ca_pem),
        "hyperv_smb_port": sim.smb_port,
        "hyperv_exclude": ["scratch"],
        "hyperv_vms": ["web", "db", "scratch"],
        "hyperv_repository": str(tmp_path / "repo"),
        "hyperv_repository_password": REPO_PASSWORD,
        "hyperv_state_dir": str(tmp_path / "state"),
        "hyperv_report_dir": str(tmp_path / "report"),
    }
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


def _report(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "report" / "hv-sim.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _task_playbook(tmp_path: Path, tasks: list[dict[str, Any]]) -> Path:
    """A play on localhost running ``tasks`` (each registers ``r<i>``, errors ignored), then
    writing every result to results.json. JSON is valid YAML."""
    body = []
    for i, task in enumerate(tasks):
        body.append({**task, "register": f"r{i}", "ignore_errors": True})
    results = "{" + ", ".join(f'"r{i}": r{i}' for i in range(len(tasks))) + "}"
    body.append(
        {
            "name": "Keep the results",
            "check_mode": False,
            "ansible.builtin.copy": {
                "content": "{{ " + results + " | to_json }}",
                "dest": str(tmp_path / "results.json"),
                "mode": "0600",
            },
        }
    )
    play = [{"name": "Try the module", "hosts": "localhost", "gather_facts": False, "tasks": body}]
    path = tmp_path / "play.yml"
    path.write_text(json.dumps(play, indent=2), encoding="utf-8")
    return path


def _results(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_ansible_doc_renders_options_examples_and_return_values(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(ANSIBLE_DOC), MODULE],
        cwd=tmp_path,
        env={**_env(tmp_path), "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for text in ("repository_password", "fail_on_partial", "EXAMPLES", "RETURN VALUES", "smb_port"):
        assert text in done.stdout


def test_check_mode_of_the_nightly_playbook_plans_and_changes_nothing(
    make_simulator,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    sim = make_simulator(SCENARIO, smb=True)
    done = _playbook(
        tmp_path,
        "hyperv_backup.hyperv.nightly",
        "-e",
        f"@{_nightly_vars(sim, tmp_path)}",
        "--check",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = _report(tmp_path)
    assert report["changed"] is True  # a backup would run
    assert report["status"] == "success"
    planned = {v["name"]: v for v in report["vms"]}
    assert set(planned) == {"web", "db"}
    assert report["excluded_by_selection"] == ["scratch"]
    assert planned["web"]["status"] == "planned"
    assert planned["web"]["method"] == "production_checkpoint"
    assert planned["web"]["consistency_expected"] == "application"
    assert planned["web"]["estimated_bytes"] > 0
    assert report["plan"]["host"]["computer_name"] == "HV01"
    assert "Would back up 2 of 2 VM(s)" in report["msg"]
    # Nothing at the destination, nothing done on the host.
    assert not (tmp_path / "repo").exists()
    assert not [e for e in sim.events if "checkpoint" in e.event]
    assert "changed: [hv-sim -> localhost]" in done.stdout


def test_nightly_playbook_backs_up_into_a_repository_and_never_shows_passwords(
    make_simulator,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    sim = make_simulator(SCENARIO, smb=True)
    done = _playbook(
        tmp_path, "hyperv_backup.hyperv.nightly", "-e", f"@{_nightly_vars(sim, tmp_path)}", "-vvv"
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert HOST_PASSWORD not in output
    assert REPO_PASSWORD not in output
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in output  # -vvv shows the masked arguments

    report = _report(tmp_path)
    assert report["changed"] is True
    assert report["failed"] is False
    assert (report["status"], report["exit_code"]) == ("success", 0)
    assert report["repository_created"] is True
    vms = {v["name"]: v for v in report["vms"]}
    assert set(vms) == {"web", "db"}
    web = vms["web"]
    assert web["status"] == "success"
    assert (web["consistency_requested"], web["consistency_achieved"]) == (
        "app_preferred",
        "application",
    )
    assert web["bytes"] > 0
    assert web["files"] > 0
    assert web["retries"] == 0
    assert web["excluded"] == []
    assert web["location"]
    assert "Backed up 2 of 2 VM(s)" in report["msg"]
    for secret in (HOST_PASSWORD, REPO_PASSWORD):
        assert secret not in json.dumps(report)

    # The repository holds what the task reported, and only with its password.
    with Repository.open(LocalTarget(tmp_path / "repo"), REPO_PASSWORD) as repository:
        snapshots = repository.snapshots()
    assert sorted(s.vm_name for s in snapshots) == ["db", "web"]
    assert all("nightly" in s.tags for s in snapshots)


def test_plain_folders_from_a_play_on_localhost_read_through_path_map(
    make_simulator,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    sim = make_simulator(SCENARIO)
    exports = tmp_path / "exports"
    task = {
        "name": "Back up through local mounts of the host's drives",
        MODULE: {
            **_connection(sim),
            "all": True,
            "exclude": ["scratch", "db"],
            "consistency": "app_required",
            "to": str(exports),
            "path_map": {drive: str(folder) for drive, folder in sim.path_map().items()},
            "state_dir": str(tmp_path / "state"),
            "fail_on_partial": False,
        },
    }
    strict = {"name": "Same, partial fails", MODULE: {**task[MODULE], "fail_on_partial": True}}
    done = _playbook(tmp_path, _task_playbook(tmp_path, [task, strict]))
    assert done.returncode == 0, done.stdout + done.stderr
    results = _results(tmp_path)
    lenient, failing = results["r0"], results["r1"]
    # web is application-consistent; the appliance cannot be, and app_required fails it.
    assert (lenient["status"], lenient["exit_code"]) == ("partial", 3)
    assert lenient["changed"] is True
    assert not lenient.get("failed")
    vms = {v["name"]: v for v in lenient["vms"]}
    assert vms["web"]["status"] == "success"
    assert vms["appliance"]["status"] == "failed"
    assert vms["appliance"]["error"]
    assert "appliance" in lenient["msg"]
    assert list(exports.glob(f"{lenient['job_id']}/web-*/**/*.vhdx"))
    assert failing["failed"] is True
    assert failing["changed"] is True  # web was stored all the same
    assert failing["status"] == "partial"


def test_bad_options_fail_with_clear_messages(
    simulator: Simulator,
    tmp_path: Path,
) -> None:
    base = {**_connection(simulator), "all": True, "state_dir": str(tmp_path / "state")}
    tasks = [
        {"name": "both destinations", MODULE: {**base, "repository": "/r", "to": "/t"}},
        {"name": "no destination", MODULE: {**base}},
        {"name": "names and all", MODULE: {**base, "vms": ["web01"], "to": "/t"}},
        {"name": "wrong password", MODULE: {**base, "password": "nope-x1", "to": "/t"}},
        {"name": "unknown option", MODULE: {**base, "to": "/t", "compresion": 9}},
    ]
    done = _playbook(tmp_path, _task_playbook(tmp_path, tasks), "--check")
    assert done.returncode == 0, done.stdout + done.stderr
    results = _results(tmp_path)
    assert all(results[f"r{i}"]["failed"] for i in range(len(tasks)))
    assert "mutually exclusive: repository|to" in results["r0"]["msg"]
    assert "one of the following is required: repository, to" in results["r1"]["msg"]
    assert "vms" in results["r2"]["msg"]
    assert "not both" in results["r2"]["msg"]
    assert "refused the credentials" in results["r3"]["msg"]
    assert "compresion" in results["r4"]["msg"]
    output = done.stdout + done.stderr + json.dumps(results)
    assert simulator.scenario.credentials.password not in output
    assert "nope-x1" not in output


def test_missing_library_says_which_interpreter_to_set(tmp_path: Path) -> None:
    bare = tmp_path / "bare-python"
    venv.create(bare, with_pip=False)  # a Python without hyperv-backup
    python = bare / "bin" / "python"
    task = {
        "name": "Back up with the wrong interpreter",
        MODULE: {"host": "127.0.0.1", "all": True, "to": str(tmp_path / "t")},
    }
    done = _playbook(tmp_path, _task_playbook(tmp_path, [task]), interpreter=str(python))
    assert done.returncode == 0, done.stdout + done.stderr
    result = _results(tmp_path)["r0"]
    assert result["failed"] is True
    assert "hyperv-backup" in result["msg"]
    assert "ansible_python_interpreter" in result["msg"]
    assert str(python) in result["msg"]


def test_repository_on_s3_through_the_s3_options(
    make_simulator,  # type: ignore[no-untyped-def]
    moto_s3,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    from tests.s3_servers import ACCESS_KEY, SECRET_KEY, new_bucket

    sim = make_simulator({**SCENARIO, "vms": [{"name": "web"}]}, smb=True)
    bucket = new_bucket(moto_s3.endpoint)
    task = {
        "name": "Back up into S3",
        MODULE: {
            **_connection(sim),
            "vms": ["web"],
            "smb_port": sim.smb_port,
            "repository": f"s3://{bucket}/hyperv",
            "repository_password": REPO_PASSWORD,
            "init_repository": True,
            "s3_endpoint": moto_s3.endpoint,
            "s3_region": "us-east-1",
            "s3_access_key": ACCESS_KEY,
            "s3_secret_key": SECRET_KEY,
            "state_dir": str(tmp_path / "state"),
        },
    }
    done = _playbook(tmp_path, _task_playbook(tmp_path, [task]))
    assert done.returncode == 0, done.stdout + done.stderr
    result = _results(tmp_path)["r0"]
    assert not result.get("failed"), result["msg"]
    assert result["changed"] is True
    assert [v["status"] for v in result["vms"]] == ["success"]
    assert SECRET_KEY not in done.stdout + done.stderr
    settings = S3Settings(
        bucket=bucket,
        prefix="hyperv",
        endpoint_url=moto_s3.endpoint,
        region="us-east-1",
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
    )
    with Repository.open(S3Target(settings), REPO_PASSWORD) as repository:
        assert [s.vm_name for s in repository.snapshots()] == ["web"]
