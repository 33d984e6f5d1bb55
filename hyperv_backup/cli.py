"""The ``hyperv-backup`` command: a thin layer over the public API.

Exit codes (also in ``--help`` and the README):

- 0: success.
- 1: failure (the host, the network or a VM operation failed).
- 2: usage or configuration error (bad option, invalid settings or scenario file).
- 3: partial success (some VMs backed up, others failed) — used by backup commands.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.markup import escape

from hyperv_backup.config import AuthMethod, ConnectionSettings, Timeouts
from hyperv_backup.errors import ConfigError, HyperVBackupError
from hyperv_backup.host import HyperVHost
from hyperv_backup.render import host_summary, inventory_json, inventory_table
from hyperv_backup.simulator import Simulator, default_scenario_path

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "app", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3

_EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 failure; 2 usage or configuration error; "
    "3 partial success (some VMs failed)."
)

app = typer.Typer(
    name="hyperv-backup",
    help="Agentless backups of Hyper-V virtual machines over PowerShell Remoting. "
    + _EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
simulator_app = typer.Typer(
    help="An emulated Hyper-V host on loopback, for tests and trying things out.",
    no_args_is_help=True,
)
app.add_typer(simulator_app, name="simulator")


def _out() -> Console:
    # Built per use, not at import: rich reads COLUMNS and the TTY state when constructed.
    return Console()


def _err() -> Console:
    return Console(stderr=True)


@app.callback()
def _configure(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output on stderr (-vv).")
    ] = 0,
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def _fail(error: BaseException, code: int = EXIT_FAILURE) -> NoReturn:
    message = f"[bold red]error:[/] {escape(str(error))}"
    _err().print(message, markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _connection_settings(
    *,
    host: str,
    port: int | None,
    auth: AuthMethod,
    username: str | None,
    password: str | None,
    no_tls: bool,
    ca_bundle: Path | None,
    insecure: bool,
    script_timeout: float,
) -> ConnectionSettings:
    if password is None and auth not in ("kerberos", "certificate") and sys.stdin.isatty():
        password = typer.prompt(f"Password for {username or 'the host'}", hide_input=True)
    try:
        return ConnectionSettings(
            host=host,
            port=port,
            auth=auth,
            username=username,
            password=SecretStr(password) if password is not None else None,
            use_tls=not no_tls,
            ca_bundle=ca_bundle,
            cert_validation=not insecure,
            timeouts=Timeouts(script=script_timeout),
        )
    except ValidationError as err:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in err.errors())
        _fail(ConfigError(f"Invalid connection settings: {problems}"), EXIT_USAGE)


HostOpt = Annotated[
    str, typer.Option("--host", "-H", help="Hyper-V host name or IP.", envvar="HYPERV_BACKUP_HOST")
]
PortOpt = Annotated[
    int | None, typer.Option(help="WinRM port (default 5986 with TLS, 5985 without).")
]
AuthOpt = Annotated[
    str,
    typer.Option(help="negotiate, ntlm, kerberos, basic, credssp or certificate."),
]
UserOpt = Annotated[
    str | None,
    typer.Option(
        "--username", "-u", help="DOMAIN\\user or user@domain.", envvar="HYPERV_BACKUP_USERNAME"
    ),
]
PasswordOpt = Annotated[
    str | None,
    typer.Option(
        help="Password; better set HYPERV_BACKUP_PASSWORD, or type it when asked.",
        envvar="HYPERV_BACKUP_PASSWORD",
        show_envvar=True,
    ),
]
NoTlsOpt = Annotated[bool, typer.Option("--no-tls", help="Plain HTTP (port 5985).")]
CaOpt = Annotated[
    Path | None,
    typer.Option(help="PEM file of the CA that signed the host's certificate.", exists=True),
]
InsecureOpt = Annotated[
    bool,
    typer.Option("--insecure", help="Do not verify the host's TLS certificate (not recommended)."),
]
TimeoutOpt = Annotated[float, typer.Option(help="Deadline for each host script, in seconds.")]


@app.command()
def inventory(
    host: HostOpt,
    names: Annotated[
        list[str] | None, typer.Argument(help="VM names or wildcards (default: all VMs).")
    ] = None,
    port: PortOpt = None,
    auth: AuthOpt = "negotiate",
    username: UserOpt = None,
    password: PasswordOpt = None,
    no_tls: NoTlsOpt = False,
    ca_bundle: CaOpt = None,
    insecure: InsecureOpt = False,
    script_timeout: TimeoutOpt = 300.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the host's VMs with what decides how each is backed up.

    Shows state, generation, checkpoint setting and tree, the guest VSS integration service,
    disks (differencing chains, pass-through disks) and Hyper-V Replica role.
    """
    if auth not in ("negotiate", "ntlm", "kerberos", "basic", "credssp", "certificate"):
        _fail(ConfigError(f"Unknown --auth {auth!r}."), EXIT_USAGE)
    settings = _connection_settings(
        host=host,
        port=port,
        auth=auth,  # type: ignore[arg-type]  # checked against AuthMethod just above
        username=username,
        password=password,
        no_tls=no_tls,
        ca_bundle=ca_bundle,
        insecure=insecure,
        script_timeout=script_timeout,
    )
    _print_inventory(settings, names or [], as_json=as_json)


def _print_inventory(settings: ConnectionSettings, names: list[str], *, as_json: bool) -> None:
    try:
        with HyperVHost(settings) as hyperv:
            info = hyperv.ensure_supported()
            vms = hyperv.inventory(names)
    except ConfigError as err:
        _fail(err, EXIT_USAGE)
    except HyperVBackupError as err:
        _fail(err)
    if as_json:
        # Plain print: JSON must reach pipes and files untouched by rich's wrapping.
        print(inventory_json(info, vms))
        return
    _out().print(host_summary(info), markup=False, highlight=False)
    _out().print(inventory_table(vms))


@app.command()
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Try hyperv-backup without a Windows host: start the simulator, list its VMs.

    The simulator is a real WinRM/PowerShell Remoting endpoint on 127.0.0.1 emulating a
    Windows Server 2022 Hyper-V host (the default scenario); hyperv-backup connects to it over
    HTTPS exactly as it would to a real host.
    """
    started = time.monotonic()
    try:
        with Simulator() as sim:
            if not as_json:
                _err().print(
                    f"Simulator: {sim.url} (scenario {default_scenario_path()})",
                    markup=False,
                    highlight=False,
                )
            _print_inventory(sim.connection_settings(), [], as_json=as_json)
    except HyperVBackupError as err:
        _fail(err)
    if not as_json:
        _err().print(f"Demo finished in {time.monotonic() - started:.1f} s.", highlight=False)


def _require_loopback(address: str) -> None:
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = address == "localhost"
    if not loopback:
        _fail(
            ConfigError(
                f"--listen {address!r} is not a loopback address. The simulator accepts a "
                "well-known password and must not be reachable from the network; use "
                "127.0.0.1 or ::1."
            ),
            EXIT_USAGE,
        )


@simulator_app.command("serve")
def simulator_serve(
    scenario: Annotated[
        Path | None,
        typer.Option(help="Scenario YAML/JSON file (default: the shipped scenario).", exists=True),
    ] = None,
    listen: Annotated[str, typer.Option(help="Loopback address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (0 = any free port).")] = 0,
    no_tls: Annotated[bool, typer.Option("--no-tls", help="Serve plain HTTP.")] = False,
    host_root: Annotated[
        Path | None,
        typer.Option(
            help="Folder to hold the host's drives (empty or new; default: a temporary "
            "folder). Everything in it is deleted when the simulator stops."
        ),
    ] = None,
) -> None:
    """Serve an emulated Hyper-V host until interrupted (Ctrl-C), and say how to connect."""
    _require_loopback(listen)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        sim = Simulator(scenario, host=listen, port=port, tls=not no_tls, host_root=host_root)
        sim.start()
    except (ConfigError, ValueError) as err:
        _fail(err, EXIT_USAGE)
    try:
        creds = sim.scenario.credentials
        # Over plain HTTP, NTLM encrypts the messages; Basic would send the password readable.
        how = "--no-tls --auth ntlm" if no_tls else f"--auth basic --ca-bundle {sim.ca_pem}"
        lines = [
            f"Emulated Hyper-V host {sim.scenario.host.computer_name} listening on {sim.url}",
            f"  user: {creds.username}   password: {creds.password}   (a test double)",
        ]
        if not no_tls:
            lines.append(f"  CA certificate: {sim.ca_pem}")
        # The host's drives are local folders: what a backup reads and writes can be seen
        # there (and is deleted when the simulator stops).
        lines.append(f"  host files: {sim.host_root}")
        lines += [f"    {drive:<4} = {folder}" for drive, folder in sim.path_map().items()]
        lines += [
            "Try:",
            f"  HYPERV_BACKUP_PASSWORD='{creds.password}' hyperv-backup inventory "
            f"--host {listen} --port {sim.port} -u {creds.username} {how}",
            "Press Ctrl-C to stop.",
        ]
        print("\n".join(lines), flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        sim.stop()


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    app()
