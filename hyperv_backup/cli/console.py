"""How the command talks to a person: stdout for results, stderr for errors and progress."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from hyperv_backup.results import EXIT_FAILURE

__all__ = ["err", "fail", "out"]


def out() -> Console:
    """stdout. Built per use, not at import: rich reads COLUMNS and the TTY state then."""
    return Console()


def err() -> Console:
    """stderr."""
    return Console(stderr=True)


def fail(error: BaseException, code: int = EXIT_FAILURE) -> NoReturn:
    """Print ``error`` on stderr and exit with ``code``."""
    message = f"[bold red]error:[/] {escape(str(error))}"
    err().print(message, markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)
