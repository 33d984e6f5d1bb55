"""``simulator serve`` and ``demo``: an emulated Hyper-V host on loopback."""

from __future__ import annotations

import hashlib
import ipaddress
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
from hyperv_backup.errors import ConfigError, HyperVBackupError, IntegrityError
from hyperv_backup.policy import BackupPolicy, Selection
from hyperv_backup.results import EXIT_USAGE, JobResult, VMStatus
from hyperv_backup.simulator import Simulator, default_scenario_path
from hyperv_backup.sink import DirectorySink
from hyperv_backup.transfer import LocalPathReader

__all__ = ["demo", "simulator_serve", "verify_directory_backup"]


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


def verify_directory_backup(result: JobResult) -> int:
    """Re-read every stored file and compare with the hash recorded while backing up.

    Returns the number of files verified; raises :class:`IntegrityError` on a mismatch.
    """
    checked = 0
    for vm in result.vms:
        if vm.status != VMStatus.SUCCESS or vm.location is None:
            continue
        for stored in vm.files:
            path = Path(vm.location, *stored.relative_path.split("/"))
            digest = hashlib.sha256()
            with path.open("rb") as stream:
                while chunk := stream.read(4 * 1024 * 1024):
                    digest.update(chunk)
            if digest.hexdigest() != stored.sha256:
                raise IntegrityError(f"{path} does not match its recorded SHA-256")
            checked += 1
    return checked


def demo(
    output: Annotated[Path, typer.Option(help="Where the demo's backups go.")] = Path(
        "demo-output"
    ),
    as_json: JsonOpt = False,
) -> None:
    """Try hyperv-backup without a Windows host: back up every VM of an emulated host.

    Starts the simulator (a real WinRM/PowerShell Remoting endpoint on 127.0.0.1 emulating a
    Windows Server 2022 Hyper-V host, the shipped scenario), lists its VMs, backs them all up
    into OUTPUT through the same code path a real host uses, and verifies every stored file.
    """
    started = time.monotonic()
    try:
        with Simulator() as sim:
            settings = sim.connection_settings()
            if not as_json:
                err().print(
                    f"Simulator: {sim.url} (scenario {default_scenario_path()})",
                    markup=False,
                    highlight=False,
                )
                print_inventory(settings, [], as_json=False)
            job = BackupJob(
                settings,
                BackupPolicy(),
                sink=DirectorySink(output),
                reader=LocalPathReader(sim.path_map()),
                state_dir=output / ".state",
            )
            result = job.run(Selection(all=True))
            verified = verify_directory_backup(result)
    except HyperVBackupError as error:
        fail(error)
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        report_job(result)
        out().print(
            f"Verified {verified} stored files against their SHA-256. Backups are in "
            f"{output.resolve() / result.job_id}",
            markup=False,
            highlight=False,
        )
        err().print(f"Demo finished in {time.monotonic() - started:.1f} s.", highlight=False)
    raise typer.Exit(result.exit_code)
