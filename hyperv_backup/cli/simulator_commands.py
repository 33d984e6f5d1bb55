"""``simulator serve`` and ``demo``: an emulated Hyper-V host on loopback."""

from __future__ import annotations

import enum
import ipaddress
import json
import os
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hyperv_backup.cli.console import exit_codes, fail, out
from hyperv_backup.cli.demo_output import print_report, print_step
from hyperv_backup.cli.options import JsonOpt
from hyperv_backup.errors import ConfigError, HyperVBackupError
from hyperv_backup.results import EXIT_USAGE
from hyperv_backup.simulator import Simulator
from hyperv_backup.simulator.demo import DEMO_PASSWORD, S3Choice, run_demo

__all__ = ["DEMO_PASSWORD", "demo", "simulator_serve"]


def _require_loopback(address: str) -> None:
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = address == "localhost"
    if not loopback:
        fail(
            ConfigError(
                f"--listen {address!r} is not a loopback address. The simulator accepts a "
                "well-known password and must not be reachable from the network; use "
                "127.0.0.1 or ::1."
            ),
            EXIT_USAGE,
        )


@exit_codes("2 here: a bad scenario file, or a --listen address that is not loopback.")
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
    smb: Annotated[
        bool,
        typer.Option(
            "--smb",
            help="Also serve the host's drives over SMB (a private Samba on a loopback port, "
            "as a Windows host's administrative shares; needs the samba package and root), so "
            "backups read and restores write them as on a real host.",
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Once ready, print one JSON line with everything needed to connect (for "
            "scripts), instead of the text.",
        ),
    ] = False,
) -> None:
    """Serve an emulated Hyper-V host until interrupted (Ctrl-C or SIGTERM), and say how to
    connect."""
    _require_loopback(listen)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        sim = Simulator(
            scenario, host=listen, port=port, tls=not no_tls, host_root=host_root, smb=smb
        )
        sim.start()
    except (ConfigError, ValueError) as error:
        fail(error, EXIT_USAGE)
    except (HyperVBackupError, OSError, RuntimeError) as error:
        fail(error)
    try:
        if as_json:
            print(json.dumps(_endpoint(sim, listen, tls=not no_tls, smb=smb)), flush=True)
        else:
            print("\n".join(_how_to_connect(sim, listen, tls=not no_tls, smb=smb)), flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    finally:
        sim.stop()


def _endpoint(sim: Simulator, listen: str, *, tls: bool, smb: bool) -> dict[str, object]:
    creds = sim.scenario.credentials
    return {
        "url": sim.url,
        "host": listen,
        "port": sim.port,
        "tls": tls,
        "auth": "basic" if tls else "ntlm",
        "username": creds.username,
        "password": creds.password,
        "ca_pem": str(sim.ca_pem) if tls else None,
        "computer_name": sim.scenario.host.computer_name,
        "host_root": str(sim.host_root),
        "path_map": {drive: str(folder) for drive, folder in sim.path_map().items()},
        "smb_port": sim.smb_port if smb else None,
    }


def _how_to_connect(sim: Simulator, listen: str, *, tls: bool, smb: bool) -> list[str]:
    creds = sim.scenario.credentials
    # Over plain HTTP, NTLM encrypts the messages; Basic would send the password readable.
    how = f"--auth basic --ca-bundle {sim.ca_pem}" if tls else "--no-tls --auth ntlm"
    lines = [
        f"Emulated Hyper-V host {sim.scenario.host.computer_name} listening on {sim.url}",
        f"  user: {creds.username}   password: {creds.password}   (a test double)",
    ]
    if tls:
        lines.append(f"  CA certificate: {sim.ca_pem}")
    # The host's drives are local folders: what a backup reads and writes can be seen
    # there (and is deleted when the simulator stops).
    lines.append(f"  host files: {sim.host_root}")
    lines += [f"    {drive:<4} = {folder}" for drive, folder in sim.path_map().items()]
    if smb:
        lines.append(
            f"  SMB: the drives' administrative shares (D$, ...) on {listen} port "
            f"{sim.smb_port}, same account"
        )
        reading = f"--smb-port {sim.smb_port}"
        where = "over SMB, as from a real host"
    else:
        reading = " ".join(f"--path-map '{d}={f}'" for d, f in sim.path_map().items())
        where = "the host's drives are readable here through --path-map"
    lines += [
        "Try:",
        f"  HYPERV_BACKUP_PASSWORD='{creds.password}' hyperv-backup inventory "
        f"--host {listen} --port {sim.port} -u {creds.username} {how}",
        f"Back up all VMs ({where}):",
        f"  HYPERV_BACKUP_PASSWORD='{creds.password}' hyperv-backup backup --all "
        f"--to ./backups --host {listen} --port {sim.port} -u {creds.username} {how} "
        f"{reading}",
        "Press Ctrl-C to stop.",
    ]
    return lines


class S3Server(str, enum.Enum):
    """Which embedded S3 server the demo uses for its second repository."""

    AUTO = "auto"
    RCLONE = "rclone"
    MOTO = "moto"
    NONE = "none"


S3ServerOpt = Annotated[
    S3Server,
    typer.Option(
        "--s3-server",
        help="Embedded S3 server for the second repository: auto (rclone, else moto, else "
        "none), rclone, moto or none.",
    ),
]


def _demo_console() -> Console:
    """stdout; when it is not a terminal (and COLUMNS is unset), 120 columns wide."""
    console = out()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=120)
    return console


@exit_codes("1 here: a backup failed or a check found damage; 3: a backup was partial.")
def demo(
    output: Annotated[
        Path, typer.Option(help="Where the demo's repositories, restore and journal go.")
    ] = Path("demo-output"),
    s3_server: S3ServerOpt = S3Server.AUTO,
    as_json: JsonOpt = False,
) -> None:
    """Try hyperv-backup without a Windows host: back up, verify and restore an emulated host.

    Starts the simulator (a real WinRM/PowerShell Remoting endpoint on 127.0.0.1 emulating a
    Windows Server 2022 Hyper-V host with 9 VMs, Samba serving its drives) and, when rclone
    or moto is installed, an S3 server on 127.0.0.1. Backs every VM up into an encrypted,
    deduplicating repository in OUTPUT/repository (password: "demo-password") and into a
    second one at s3://demo/repository on that server; re-reads and re-hashes everything
    stored in both; restores web01 into OUTPUT/restore in the Export-VM layout. Shows each
    VM's consistency and why, the excluded pass-through disk, the retried checkpoint of the
    replicated sql01, and the dedup figures. Run it twice to see deduplication.
    """
    console = _demo_console()
    on_step = None if as_json else (lambda step: print_step(console, step))
    choice: S3Choice = s3_server.value
    try:
        report = run_demo(output, s3=choice, on_step=on_step)
    except HyperVBackupError as error:
        fail(error)
    if as_json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print_report(console, report)
    raise typer.Exit(report.exit_code)
