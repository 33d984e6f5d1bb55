"""``simulator serve`` and ``demo``: an emulated Hyper-V host on loopback."""

from __future__ import annotations

import ipaddress
import json
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from hyperv_backup.backup import BackupJob
from hyperv_backup.cli.backup_commands import report_job
from hyperv_backup.cli.console import err, fail, out
from hyperv_backup.cli.host_commands import print_inventory
from hyperv_backup.cli.options import JsonOpt
from hyperv_backup.errors import ConfigError, HyperVBackupError
from hyperv_backup.policy import BackupPolicy, Selection
from hyperv_backup.render import format_bytes
from hyperv_backup.repository import Repository
from hyperv_backup.results import EXIT_USAGE
from hyperv_backup.simulator import Simulator, default_scenario_path
from hyperv_backup.targets import LocalTarget

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
    except (ConfigError, ValueError) as error:
        fail(error, EXIT_USAGE)
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
        path_maps = " ".join(f"--path-map '{d}={f}'" for d, f in sim.path_map().items())
        lines += [
            "Try:",
            f"  HYPERV_BACKUP_PASSWORD='{creds.password}' hyperv-backup inventory "
            f"--host {listen} --port {sim.port} -u {creds.username} {how}",
            "Back up all VMs (the host's drives are readable here through --path-map):",
            f"  HYPERV_BACKUP_PASSWORD='{creds.password}' hyperv-backup backup --all "
            f"--to ./backups --host {listen} --port {sim.port} -u {creds.username} {how} "
            f"{path_maps}",
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


DEMO_PASSWORD = "demo-password"  # noqa: S105 - the demo's repository is throw-away
"""The demo repository's password (it demonstrates encryption; it protects nothing)."""


def demo(
    output: Annotated[
        Path, typer.Option(help="Where the demo's repository and restore go.")
    ] = Path("demo-output"),
    as_json: JsonOpt = False,
) -> None:
    """Try hyperv-backup without a Windows host: back up, verify and restore an emulated host.

    Starts the simulator (a real WinRM/PowerShell Remoting endpoint on 127.0.0.1 emulating a
    Windows Server 2022 Hyper-V host with Samba serving its drives), lists its VMs, backs
    every one up over SMB into an encrypted, deduplicating repository in OUTPUT/repository
    (password: "demo-password"), re-reads and re-hashes everything stored, and restores one
    VM into OUTPUT/restore in the Export-VM layout. Run it twice to see deduplication.
    """
    started = time.monotonic()
    output.mkdir(parents=True, exist_ok=True)
    target = LocalTarget(output / "repository")
    try:
        repository = (
            Repository.open(target, DEMO_PASSWORD)
            if target.stat("config") is not None
            else Repository.init(target, DEMO_PASSWORD)
        )
        with Simulator(smb=True) as sim, repository:
            settings = sim.connection_settings()
            if not as_json:
                err().print(
                    f"Simulator: {sim.url}, SMB on port {sim.smb_port} "
                    f"(scenario {default_scenario_path()})",
                    markup=False,
                    highlight=False,
                )
                print_inventory(settings, [], as_json=False)
            job = BackupJob(
                settings,
                BackupPolicy(tags=["demo"]),
                sink=repository,
                reader=sim.smb_reader(),
                state_dir=output / ".state",
            )
            with repository.shared_lock("demo backup"):
                result = job.run(Selection(all=True))
            check = repository.check(read_data=True)
            web01 = next(v for v in result.vms if v.vm_name == "web01")
            restored = None
            if web01.location is not None:
                restored = repository.restore(
                    web01.location, output / "restore" / result.job_id, overwrite=True
                )
    except HyperVBackupError as error:
        fail(error)
    if as_json:
        print(
            json.dumps(
                {
                    "job": result.model_dump(mode="json"),
                    "check": {
                        "ok": check.ok,
                        "errors": [str(e) for e in check.errors],
                        "bytes_read": check.bytes_read,
                    },
                    "restored": str(restored.folder) if restored else None,
                },
                indent=2,
            )
        )
    else:
        report_job(result)
        stored = sum(1 for _ in target.list("data/"))
        out().print(
            f"Repository {output / 'repository'}: {check.snapshots} backups in {stored} packs; "
            f"check --read-data re-read {format_bytes(check.bytes_read)}: "
            f"{'no errors' if check.ok else f'{len(check.errors)} error(s)'}.",
            markup=False,
            highlight=False,
        )
        if restored is not None:
            out().print(
                f"Restored web01 ({len(restored.files)} files, "
                f"{format_bytes(restored.bytes)}, every file's SHA-256 verified) into "
                f"{restored.folder}",
                markup=False,
                highlight=False,
            )
        err().print(f"Demo finished in {time.monotonic() - started:.1f} s.", highlight=False)
    code = result.exit_code if check.ok else 1
    raise typer.Exit(code)
