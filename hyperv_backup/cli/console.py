"""How the command talks to a person and to a program.

stdout carries results only: tables and sentences for a person, or, with ``--json``, exactly
one JSON document — the command's report, or, when a command fails before it has one, an
error document::

    {"error": {"type": "ConfigError", "message": "..."}, "exit_code": 2}

(the same words also go to stderr, for the person watching). stderr carries the rest:
errors, warnings, progress bars and log lines.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar, cast

import typer
from rich.console import Console
from rich.markup import escape

from hyperv_backup.results import EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE

__all__ = [
    "EXIT_CODES",
    "err",
    "error_document",
    "exit_codes",
    "fail",
    "json_requested",
    "out",
    "print_json",
]

EXIT_CODES = (
    f"Exit codes: {EXIT_OK} success; {EXIT_FAILURE} failure; {EXIT_USAGE} usage or "
    f"configuration error; {EXIT_PARTIAL} partial success."
)
"""The exit codes every command shares, as its ``--help`` ends with them."""

_Command = TypeVar("_Command", bound=Callable[..., Any])


def out() -> Console:
    """stdout. Built per use, not at import: rich reads COLUMNS and the TTY state then."""
    return Console()


def err() -> Console:
    """stderr."""
    return Console(stderr=True)


def exit_codes(detail: str = "") -> Callable[[_Command], _Command]:
    """Decorate a command so that its ``--help`` ends with the exit codes (and ``detail``).

    typer takes a command's help from its docstring, read when the command line is parsed,
    so the paragraph is appended to ``__doc__`` (wrappers that copy it come later).
    """

    def decorate(command: _Command) -> _Command:
        paragraph = EXIT_CODES + (f" {detail}" if detail else "")
        command.__doc__ = inspect.cleandoc(command.__doc__ or "") + "\n\n" + paragraph
        return command

    return decorate


def json_requested() -> bool:
    """True while running a command given ``--json`` (its ``as_json`` parameter).

    Read from the running command's parameters, so that an error raised before the
    command's own code runs (building the connection settings) is a JSON document too.
    """
    return bool(_command_parameters().get("as_json"))


def _command_parameters() -> Mapping[str, object]:
    # Recent typer runs commands with a copy of click of its own, older typer with click.
    for module in ("typer._click.globals", "click.globals"):
        try:
            current = importlib.import_module(module).get_current_context
        except (ImportError, AttributeError):
            continue
        context = current(silent=True)
        if context is not None:
            return cast("Mapping[str, object]", context.params)
    return {}


def print_json(document: object) -> None:
    """The one JSON document of a ``--json`` run, on stdout, untouched by rich's wrapping."""
    print(json.dumps(document, indent=2, default=str), flush=True)


def error_document(error: BaseException, code: int) -> dict[str, object]:
    """What ``--json`` prints on stdout when a command fails without a report."""
    return {"error": {"type": type(error).__name__, "message": str(error)}, "exit_code": code}


def fail(error: BaseException, code: int = EXIT_FAILURE) -> NoReturn:
    """Print ``error`` on stderr (and, under ``--json``, its document on stdout); exit."""
    if json_requested():
        print_json(error_document(error, code))
    message = f"[bold red]error:[/] {escape(str(error))}"
    err().print(message, markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)
