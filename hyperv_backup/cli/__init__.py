"""The ``hyperv-backup`` command: a thin layer over the public API.

Exit codes (also in ``--help`` and the README):

- 0: success — every selected VM backed up, nothing needs attention.
- 1: failure — nothing was backed up, or the host/network failed.
- 2: usage or configuration error (bad option, invalid settings or scenario file).
- 3: partial success — some VMs backed up and others failed, or a cleanup step or an
  after-command failed.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.exceptions import TyperException

from hyperv_backup.cli.backup_commands import backup, cleanup, plan
from hyperv_backup.cli.config_commands import config_app
from hyperv_backup.cli.console import EXIT_CODES, error_document, fail, print_json
from hyperv_backup.cli.file_settings import ConfiguredGroup, apply_config_file
from hyperv_backup.cli.host_commands import inventory
from hyperv_backup.cli.options import with_connection, with_optional_connection
from hyperv_backup.cli.repository_commands import check, forget, init, prune, restore, snapshots
from hyperv_backup.cli.simulator_commands import demo, simulator_serve
from hyperv_backup.errors import ConfigError
from hyperv_backup.results import EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE

__all__ = ["EXIT_FAILURE", "EXIT_OK", "EXIT_PARTIAL", "EXIT_USAGE", "app", "main"]

app = typer.Typer(
    name="hyperv-backup",
    help="Agentless backups of Hyper-V virtual machines over PowerShell Remoting. "
    + EXIT_CODES
    + " 3 means some VMs failed, or a cleanup step or an after-command did.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=ConfiguredGroup,
)
simulator_app = typer.Typer(
    help="An emulated Hyper-V host on loopback, for tests and trying things out.",
    no_args_is_help=True,
)
app.add_typer(simulator_app, name="simulator")
app.add_typer(config_app, name="config")
app.command("inventory")(with_connection(inventory))
app.command("plan")(with_connection(plan))
app.command("backup")(with_connection(backup))
app.command("cleanup")(with_connection(cleanup))
for command in (init, snapshots, check):
    app.command()(command)
app.command("restore")(with_optional_connection(restore))
for maintenance in (forget, prune):
    app.command()(maintenance)
app.command()(demo)
simulator_app.command("serve")(simulator_serve)


@app.callback()
def _configure(
    ctx: typer.Context,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output on stderr (-vv).")
    ] = 0,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Configuration file (default: ./hyperv-backup.toml, else "
            "$XDG_CONFIG_HOME/hyperv-backup/config.toml, if they exist). Its values come "
            "after flags and HYPERV_BACKUP_* variables; see `config show`.",
            envvar="HYPERV_BACKUP_CONFIG",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        apply_config_file(ctx, config)
    except ConfigError as error:
        fail(error, EXIT_USAGE)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    if "--json" not in sys.argv[1:]:
        app()
        return
    # With --json even a usage error (unknown option, bad value, missing argument), which
    # click reports before any command runs, is one JSON document on stdout.
    try:
        code = app(standalone_mode=False)
    except TyperException as error:
        code = getattr(error, "exit_code", EXIT_USAGE)
        print_json(error_document(error, code))
        show = getattr(error, "show", None)
        if callable(show):
            show()  # the usual message (with the usage line) on stderr
    except KeyboardInterrupt:
        code = EXIT_FAILURE
        print_json(error_document(KeyboardInterrupt("interrupted"), code))
    sys.exit(code if isinstance(code, int) else EXIT_OK)
