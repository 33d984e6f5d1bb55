"""The configuration file, as an admin writes it: flags beat HYPERV_BACKUP_* variables, which
beat the file, which beats the built-in defaults — checked through real commands against the
simulator, and through ``config show --json``."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from hyperv_backup.cli import app
from hyperv_backup.cli.file_settings import SETTINGS
from hyperv_backup.configfile import (
    SECTIONS,
    BackupSection,
    ConfigFile,
    ConnectionSection,
    HooksSection,
    MonitoringSection,
    ReaderSection,
    RepositorySection,
    RetentionSection,
    example_config,
    load_config,
)
from hyperv_backup.simulator import Simulator

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No configuration file or HYPERV_BACKUP_* variable of this machine leaks in."""
    for name in list(os.environ):
        if name.startswith("HYPERV_BACKUP_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)


def _toml(value: Any) -> str:
    """A TOML value: JSON's strings, numbers, booleans and arrays are valid TOML."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Path):
        value = str(value)
    return json.dumps(value)


def _table(name: str, values: dict[str, Any]) -> str:
    return f"[{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())


def _connection(sim: Simulator, **extra: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": sim.port,
        "auth": "basic",
        "username": sim.scenario.credentials.username,
        "ca_bundle": sim.ca_pem,
        **extra,
    }


def _write(path: Path, *tables: str) -> Path:
    path.write_text("\n".join(tables), encoding="utf-8")
    return path


def _run(args: list[str], env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, args, env={"COLUMNS": "200", **(env or {})})


def _show(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    result = _run(["config", "show", "--json", *args], env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def web_and_appliance(make_simulator: Callable[..., Simulator]) -> Simulator:
    """A host where each consistency policy plans differently: 'web' can be application-
    consistent, 'appliance' (no integration services) cannot."""
    return make_simulator(
        {"vms": [{"name": "web"}, {"name": "appliance", "integration_services": "none"}]}
    )


def _plan(sim: Simulator, config: Path, args: list[str], env: dict[str, str]) -> dict[str, Any]:
    result = _run(["--config", str(config), "plan", "--json", *args], env)
    assert result.exit_code == 0, result.output
    vms = json.loads(result.stdout)["vms"]
    return {vm["vm_name"]: (vm["expected"], vm["will_fail"] is not None) for vm in vms}


def test_consistency_from_the_file_then_the_environment_then_the_flag(
    web_and_appliance: Simulator, tmp_path: Path
) -> None:
    sim = web_and_appliance
    config = _write(
        tmp_path / "site.toml",
        _table("connection", _connection(sim, password_env="SIM_PASSWORD")),
        _table("reader", {"path_maps": {k: str(v) for k, v in sim.path_map().items()}}),
        _table("backup", {"all": True, "consistency": "crash_ok"}),
    )
    env = {"SIM_PASSWORD": sim.scenario.credentials.password}

    # The file alone: host, account, password reference, reader, selection and policy.
    assert _plan(sim, config, [], env) == {"web": ("crash", False), "appliance": ("crash", False)}
    shown = _show(["--config", str(config), "plan"], env)["settings"]
    assert shown["backup"]["consistency"] == {
        "value": "crash_ok",
        "source": "file",
        "from": f"file {config} [backup]",
        "used": True,
    }
    assert shown["connection"]["port"]["value"] == sim.port

    # The environment beats the file.
    env["HYPERV_BACKUP_CONSISTENCY"] = "app_required"
    assert _plan(sim, config, [], env) == {
        "web": ("application", False),
        "appliance": (None, True),  # app_required: it will fail, and the plan says so
    }
    shown = _show(["--config", str(config), "plan"], env)["settings"]
    assert shown["backup"]["consistency"]["value"] == "app_required"
    assert shown["backup"]["consistency"]["from"] == "env HYPERV_BACKUP_CONSISTENCY"

    # A flag beats both.
    flag = ["--consistency", "app_preferred"]
    assert _plan(sim, config, flag, env) == {
        "web": ("application", False),
        "appliance": ("crash", False),
    }
    shown = _show(["--config", str(config), "plan", *flag], env)["settings"]
    assert shown["backup"]["consistency"]["value"] == "app_preferred"
    assert shown["backup"]["consistency"]["from"] == "flag --consistency"


def test_port_from_the_environment_beats_the_file_and_a_flag_beats_both(
    simulator: Simulator, tmp_path: Path
) -> None:
    password = simulator.scenario.credentials.password
    _write(
        tmp_path / "hyperv-backup.toml",  # found in the current directory
        _table("connection", _connection(simulator, port=_closed_port())),
    )
    env = {"HYPERV_BACKUP_PASSWORD": password}
    nothing_listens = _run(["inventory", "--json"], env)
    assert nothing_listens.exit_code == 1

    env["HYPERV_BACKUP_PORT"] = str(simulator.port)
    from_env = _run(["inventory", "--json"], env)
    assert from_env.exit_code == 0, from_env.output
    assert len(json.loads(from_env.stdout)["vms"]) == len(simulator.scenario.vms)

    env["HYPERV_BACKUP_PORT"] = str(_closed_port())
    from_flag = _run(["inventory", "--json", "--port", str(simulator.port)], env)
    assert from_flag.exit_code == 0, from_flag.output
    shown = _show(["inventory", "--port", str(simulator.port)], env)
    assert shown["config_file"] == str(tmp_path / "hyperv-backup.toml")
    assert shown["settings"]["connection"]["port"]["from"] == "flag --port"
    # The password was given through the environment: masked, and named by its variable.
    assert shown["settings"]["connection"]["password"] == {
        "value": "****",
        "source": "env",
        "from": "env HYPERV_BACKUP_PASSWORD",
        "used": True,
        "reference": "env HYPERV_BACKUP_PASSWORD",
    }
    assert password not in json.dumps(shown)


def test_the_user_file_is_used_when_there_is_none_here(tmp_path: Path) -> None:
    user_file = tmp_path / "xdg" / "hyperv-backup" / "config.toml"
    user_file.parent.mkdir(parents=True)
    _write(user_file, _table("backup", {"parallel": 5}))
    shown = _show([])
    assert shown["config_file"] == str(user_file)
    assert shown["settings"]["backup"]["parallel"]["value"] == 5
    _write(tmp_path / "hyperv-backup.toml", _table("backup", {"parallel": 3}))
    assert _show([])["settings"]["backup"]["parallel"]["value"] == 3
    assert _show([], {"HYPERV_BACKUP_PARALLEL": "4"})["settings"]["backup"]["parallel"] == {
        "value": 4,
        "source": "env",
        "from": "env HYPERV_BACKUP_PARALLEL",
        "used": True,
    }


def test_a_mistyped_key_exits_2_naming_the_file_the_key_and_the_right_one(
    tmp_path: Path,
) -> None:
    config = _write(
        tmp_path / "site.toml",
        _table("connection", {"host": "hv01", "porrt": 5986}),
        _table("hosts.hv02.backup", {"paralel": 4}),
    )
    result = _run(["--config", str(config), "inventory"])
    assert result.exit_code == 2
    assert str(config) in result.stderr
    assert "unknown key 'porrt' in [connection] (did you mean 'port'?)" in result.stderr
    assert "unknown key 'paralel' in [hosts.hv02.backup] (did you mean 'parallel'?)" in (
        result.stderr
    )
    shown = _run(["config", "show", "--config", str(config)])
    assert shown.exit_code == 2
    assert "porrt" in shown.stderr


def test_a_value_of_the_wrong_kind_names_the_key(tmp_path: Path) -> None:
    config = _write(tmp_path / "site.toml", _table("backup", {"consistency": "paranoid"}))
    result = _run(["--config", str(config), "plan", "--all", "-H", "hv01"])
    assert result.exit_code == 2
    assert f"Invalid configuration file {config}" in result.stderr
    assert "backup.consistency" in result.stderr


@pytest.mark.parametrize("section", ["connection", "repository", "hosts.hv01.connection"])
def test_an_inline_password_is_refused_with_the_references_to_use(
    tmp_path: Path, section: str
) -> None:
    config = _write(tmp_path / "site.toml", _table(section, {"password": "Secret-123"}))
    result = _run(["--config", str(config), "snapshots"])
    assert result.exit_code == 2
    assert f"{section}.password" in result.stderr
    for reference in ("password_env", "password_file", "password_command"):
        assert reference in result.stderr
    assert "Secret-123" not in result.stderr


def test_host_password_from_a_private_file_and_from_a_command(
    simulator: Simulator, tmp_path: Path
) -> None:
    secret = tmp_path / "host.password"
    secret.write_text(simulator.scenario.credentials.password + "\n", encoding="utf-8")
    secret.chmod(0o600)
    config = _write(
        tmp_path / "site.toml",
        _table("connection", _connection(simulator, password_file="host.password")),  # relative
    )
    result = _run(["--config", str(config), "inventory", "--json"])
    assert result.exit_code == 0, result.output
    assert "readable by every user" not in result.stderr
    shown = _show(["--config", str(config), "inventory"])["settings"]["connection"]["password"]
    assert shown["value"] == "****"
    assert shown["reference"] == f"file {secret}"
    assert shown["from"] == f"file {config} [connection]"

    printer = [sys.executable, "-c", f"print({simulator.scenario.credentials.password!r})"]
    _write(config, _table("connection", _connection(simulator, password_command=printer)))
    result = _run(["--config", str(config), "inventory", "--json"])
    assert result.exit_code == 0, result.output


def test_a_world_readable_password_file_works_with_a_warning(
    simulator: Simulator, tmp_path: Path
) -> None:
    secret = tmp_path / "host.password"
    secret.write_text(simulator.scenario.credentials.password, encoding="utf-8")
    secret.chmod(0o644)
    config = _write(
        tmp_path / "site.toml",
        _table("connection", _connection(simulator, password_file=secret)),
    )
    done = subprocess.run(
        [sys.executable, "-m", "hyperv_backup", "--config", str(config), "inventory", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "HYPERV_BACKUP_PASSWORD"},
    )
    assert done.returncode == 0, done.stderr
    assert f"Password file {secret} is readable by every user" in done.stderr
    assert "chmod 600" in done.stderr


def test_a_password_reference_that_cannot_be_followed_exits_2(
    simulator: Simulator, tmp_path: Path
) -> None:
    config = _write(
        tmp_path / "site.toml",
        _table("connection", _connection(simulator, password_env="NOT_SET_ANYWHERE")),
    )
    result = _run(["--config", str(config), "inventory"])
    assert result.exit_code == 2
    assert "NOT_SET_ANYWHERE" in result.stderr
    assert f"{config} [connection]" in result.stderr
    shown = _show(["--config", str(config), "inventory"])["settings"]["connection"]["password"]
    assert shown["problem"] == "environment variable NOT_SET_ANYWHERE is not set"


def test_host_tables_chosen_by_host_flag_environment_or_default_host(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    first = make_simulator({"vms": [{"name": "alpha"}]})
    second = make_simulator({"vms": [{"name": "beta"}, {"name": "gamma"}]})

    def host_table(sim: Simulator, variable: str) -> dict[str, Any]:
        return {"port": sim.port, "ca_bundle": sim.ca_pem, "password_env": variable}

    config = _write(
        tmp_path / "site.toml",
        'default_host = "hv01"\n',
        _table("connection", {"auth": "basic", "username": first.scenario.credentials.username}),
        _table("hosts.hv01.connection", {"host": "127.0.0.1", **host_table(first, "HV01_PW")}),
        # This table's address is its name, as a host known by DNS would be.
        _table('hosts."127.0.0.1".connection', host_table(second, "HV02_PW")),
    )
    env = {
        "HV01_PW": first.scenario.credentials.password,
        "HV02_PW": second.scenario.credentials.password,
    }

    def vms(args: list[str], extra: dict[str, str] | None = None) -> list[str]:
        command = ["--config", str(config), "inventory", "--json", *args]
        result = _run(command, {**env, **(extra or {})})
        assert result.exit_code == 0, result.output
        return [vm["name"] for vm in json.loads(result.stdout)["vms"]]

    assert vms([]) == ["alpha"]  # default_host
    assert vms(["--host", "127.0.0.1"]) == ["beta", "gamma"]
    assert vms(["-H", "hv01"]) == ["alpha"]
    assert vms([], {"HYPERV_BACKUP_HOST": "127.0.0.1"}) == ["beta", "gamma"]

    shown = _show(["--config", str(config), "inventory", "--host", "hv01"], env)
    assert shown["profile"] == "hv01"
    assert shown["settings"]["connection"]["host"]["value"] == "127.0.0.1"
    assert shown["settings"]["connection"]["port"] == {
        "value": first.port,
        "source": "file",
        "from": f"file {config} [hosts.hv01.connection]",
        "used": True,
    }
    assert shown["settings"]["connection"]["username"]["from"] == f"file {config} [connection]"
    assert shown["settings"]["connection"]["password"]["reference"] == "env HV01_PW"


def test_missing_explicit_file_exits_2_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    by_flag = _run(["--config", str(missing), "snapshots"])
    assert by_flag.exit_code == 2
    assert str(missing) in by_flag.stderr
    assert "--config" in by_flag.stderr
    by_env = _run(["snapshots"], {"HYPERV_BACKUP_CONFIG": str(missing)})
    assert by_env.exit_code == 2
    assert "HYPERV_BACKUP_CONFIG" in by_env.stderr
    shown = _run(["config", "show", "--config", str(missing)])
    assert shown.exit_code == 2
    assert str(missing) in shown.stderr


def test_repository_password_and_retention_from_the_file(tmp_path: Path) -> None:
    secret = tmp_path / "repo.password"
    secret.write_text("correct horse battery\n", encoding="utf-8")
    secret.chmod(0o600)
    config = _write(
        tmp_path / "site.toml",
        _table("repository", {"location": "repo", "password_file": "repo.password"}),
        _table("retention", {"keep_daily": 7, "prune": True}),
    )
    created = _run(["--config", str(config), "init"])
    assert created.exit_code == 0, created.output
    assert "Created encrypted repository" in created.stdout
    assert (tmp_path / "repo").is_dir()  # relative to the file's folder

    forgot = _run(["--config", str(config), "forget", "--dry-run"])
    assert forgot.exit_code == 0, forgot.output  # the file's --keep-daily reached forget
    assert "0 kept, 0 would remove" in forgot.stdout
    no_rules = _run(["forget", "--repo", str(tmp_path / "repo"), "--dry-run"])
    assert no_rules.exit_code == 2  # without the file, no rule

    wrong = _run(["--config", str(config), "check"], {"HYPERV_BACKUP_REPO_PASSWORD": "nope"})
    assert wrong.exit_code == 1  # the environment's password beats the file's reference
    shown = _show(["--config", str(config), "forget"])["settings"]
    assert shown["retention"]["keep_daily"]["value"] == 7
    assert shown["retention"]["prune"]["from"] == f"file {config} [retention]"
    assert shown["repository"]["password"]["reference"] == f"file {secret}"
    assert shown["repository"]["location"]["value"] == str(tmp_path / "repo")


def test_to_on_the_command_line_beats_the_files_repository(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [{"name": "web"}]})
    config = _write(
        tmp_path / "site.toml",
        _table("connection", _connection(sim, password_env="SIM_PASSWORD")),
        _table("reader", {"path_maps": {k: str(v) for k, v in sim.path_map().items()}}),
        _table("repository", {"location": str(tmp_path / "no-such-repository")}),
        _table("backup", {"all": True, "state_dir": "state"}),
    )
    result = _run(
        ["--config", str(config), "backup", "--to", str(tmp_path / "exports"), "--json"],
        {"SIM_PASSWORD": sim.scenario.credentials.password},
    )
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "exports").rglob("*.vhdx"))
    assert not (tmp_path / "no-such-repository").exists()
    assert (tmp_path / "state").is_dir()  # state_dir, relative to the file


def test_monitoring_from_the_file_writes_the_report_and_metrics_with_the_job_name(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [{"name": "web"}]})
    config = _write(
        tmp_path / "site.toml",
        _table("connection", _connection(sim, password_env="SIM_PASSWORD")),
        _table("reader", {"path_maps": {k: str(v) for k, v in sim.path_map().items()}}),
        _table("backup", {"all": True, "to": "exports", "state_dir": "state"}),
        _table("monitoring", {"report_file": "last.json", "metrics_file": "hv.prom"}),
        '[hosts.lab]\nmonitoring.job_name = "lab-nightly"\n',
    )
    env = {"SIM_PASSWORD": sim.scenario.credentials.password}
    result = _run(["--config", str(config), "backup", "--json"], env)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "last.json").read_text())  # relative to the file
    assert report["status"] == "success"
    assert 'backup_job="default"' in (tmp_path / "hv.prom").read_text()
    # A host table overrides one key; a flag overrides the file.
    shown = _show(["--config", str(config), "backup", "--host", "lab"])["settings"]
    assert shown["monitoring"]["job_name"]["value"] == "lab-nightly"
    flagged = _show(["--config", str(config), "backup", "--job-name", "x"])["settings"]
    assert flagged["monitoring"]["job_name"]["source"].startswith("flag")


def test_the_files_to_sends_backups_to_folders_while_repository_commands_keep_the_repository(
    tmp_path: Path,
) -> None:
    config = _write(
        tmp_path / "site.toml",
        _table("repository", {"location": "s3://bucket/repository"}),
        _table("backup", {"to": "exports"}),
    )
    backup = _show(["--config", str(config), "backup"])["settings"]
    assert backup["backup"]["to"]["value"] == str(tmp_path / "exports")
    assert backup["repository"]["location"]["source"] == "default"
    check = _show(["--config", str(config), "check"])["settings"]
    assert check["repository"]["location"]["value"] == "s3://bucket/repository"
    assert check["repository"]["location"]["source"] == "file"


def test_config_init_prints_a_valid_example_that_config_show_explains(tmp_path: Path) -> None:
    printed = _run(["config", "init"])
    assert printed.exit_code == 0
    path = _write(tmp_path / "hyperv-backup.toml", printed.stdout)
    example = load_config(path)
    assert set(example.hosts) == {"hv01", "hv02", "hv03"}
    assert example.for_host("hv03").reader.path_maps == {"D:\\": Path("/mnt/hv03-d")}
    shown = _show(["--host", "hv02"])
    assert shown["profile"] == "hv02"
    assert shown["settings"]["backup"]["exclude"]["value"] == ["test-*", "sql-cluster-*"]
    assert shown["settings"]["backup"]["exclude"]["from"] == f"file {path} [hosts.hv02.backup]"


def test_the_documentation_names_every_key_and_every_environment_variable() -> None:
    text = DOCS.read_text(encoding="utf-8")
    models = (ConnectionSection, ReaderSection, RepositorySection, BackupSection, HooksSection)
    for model in (*models, RetentionSection, MonitoringSection, ConfigFile):
        for key in model.model_fields:
            assert f"`{key}`" in text, f"{model.__name__}.{key} is not documented"
    for section in SECTIONS:
        assert f"[{section}]" in text
    # Every variable of an option the file can set, read from the commands themselves.
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    envvars = {"HYPERV_BACKUP_CONFIG", "HYPERV_BACKUP_PASSWORD", "HYPERV_BACKUP_REPO_PASSWORD"}
    for setting in SETTINGS:
        assert f"`{setting.key}`" in text
        for name in setting.commands:
            option = next(p for p in commands[name].params if p.name == setting.param)
            envvars.update([option.envvar] if isinstance(option.envvar, str) else [])
    assert len(envvars) > 15
    for name in envvars:
        assert f"`{name}`" in text, f"{name} is not documented"
    assert example_config().strip() in text  # the annotated example is the printed one
