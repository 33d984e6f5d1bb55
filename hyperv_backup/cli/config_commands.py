"""``config show`` and ``config init``: the settings in effect, where each came from."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperCommand, TyperGroup

from hyperv_backup.cli.console import fail, out
from hyperv_backup.cli.file_settings import (
    CONNECTED_COMMANDS,
    REPOSITORY_COMMANDS,
    SETTINGS,
    ActiveConfig,
    Setting,
    default_map_for,
    file_value,
    load_active,
    plain_value,
)
from hyperv_backup.cli.options import JsonOpt
from hyperv_backup.cli.repository_options import REPO_PASSWORD_ENV
from hyperv_backup.configfile import CONFIG_ENV, SECTIONS, SecretReference, example_config
from hyperv_backup.errors import ConfigError
from hyperv_backup.results import EXIT_USAGE

__all__ = ["config_app"]

config_app = typer.Typer(
    help="The configuration file: the settings in effect and where each came from, or an "
    "example file.",
    no_args_is_help=True,
)

_COMMANDS = tuple(dict.fromkeys(name for s in SETTINGS for name in s.commands))
_MASK = "****"


@dataclass
class _Row:
    """One setting as ``config show`` reports it."""

    value: Any
    source: str  # flag, env, file, default
    origin: str  # "flag --port", "env HYPERV_BACKUP_PORT", "file /x.toml [connection]"
    used: bool  # by the command shown
    reference: str | None = None
    problem: str | None = None


@config_app.command(
    "show", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def show(
    ctx: typer.Context,
    command_line: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[COMMAND [ARGS]...]",
            help="The command line to explain, e.g. 'backup --host hv01 --parallel 4' "
            "(default: backup). Its flags count as flags.",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Read this file (default: the root --config, HYPERV_BACKUP_CONFIG, "
            "./hyperv-backup.toml, ~/.config/hyperv-backup/config.toml).",
            dir_okay=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show every setting's effective value and where it came from: flag, env, file, default.

    Secrets are masked; for them the reference is shown (e.g. env HYPERV_BACKUP_PASSWORD).
    Settings the command does not use are shown too, marked as such.
    """
    tokens = [*(command_line or []), *ctx.args]
    command, args = _split_command(tokens)
    explicit, named_by = _explicit_config(ctx, config)
    try:
        active = load_active(explicit, args=args, named_by=named_by)
    except ConfigError as error:
        fail(error, EXIT_USAGE)
    rows = _Explainer(ctx, active, command, args).rows()
    if as_json:
        document = {
            "config_file": str(active.path) if active.path else None,
            "command": command,
            "profile": active.host.profile,
            "settings": {
                section: {key: _json_row(row) for key, row in keys.items()}
                for section, keys in rows.items()
            },
        }
        print(json.dumps(document, indent=2))
        return
    _print_table(active, command, rows)


@config_app.command("init")
def init() -> None:
    """Print a complete, commented example configuration file.

    Save it as ./hyperv-backup.toml or ~/.config/hyperv-backup/config.toml and edit it.
    """
    print(example_config(), end="")


def _split_command(tokens: list[str]) -> tuple[str, list[str]]:
    if tokens and not tokens[0].startswith("-"):
        if tokens[0] not in _COMMANDS:
            fail(
                ConfigError(
                    f"config show: {tokens[0]!r} is not a command that takes settings; "
                    f"use one of {', '.join(_COMMANDS)}."
                ),
                EXIT_USAGE,
            )
        return tokens[0], tokens[1:]
    return "backup", tokens


def _explicit_config(ctx: typer.Context, config: Path | None) -> tuple[Path | None, str]:
    if config is not None:
        return config, "--config"
    root = ctx.find_root()
    source = root.get_parameter_source("config")
    named_by = CONFIG_ENV if source is not None and source.name == "ENVIRONMENT" else "--config"
    value = root.params.get("config")
    return (value if isinstance(value, Path) else None), named_by


class _Explainer:
    """Parses the command line as each command would (without running it) and reports."""

    def __init__(self, ctx: typer.Context, active: ActiveConfig, command: str, args: list[str]):
        self._ctx = ctx
        self._active = active
        self._command = command
        self._args = args
        # Values are typer's internal click Contexts (not typer.Context): untyped here.
        self._contexts: dict[str, Any] = {}

    def rows(self) -> dict[str, dict[str, _Row]]:
        rows: dict[str, dict[str, _Row]] = {section: {} for section in SECTIONS}
        for setting in SETTINGS:
            rows[setting.section][setting.key] = self._setting(setting)
        rows["connection"]["password"] = self._host_password()
        rows["repository"]["password"] = self._repository_password()
        return rows

    def _parsed(self, name: str) -> Any:
        """The command's context, parsed as click would, but not run (nothing is asked)."""
        if name not in self._contexts:
            root = self._ctx.find_root()
            group = root.command
            command = group.get_command(root, name) if isinstance(group, TyperGroup) else None
            assert isinstance(command, TyperCommand), name
            self._contexts[name] = command.make_context(
                name,
                list(self._args) if name == self._command else [],
                parent=self._ctx,
                resilient_parsing=True,
                default_map=default_map_for(self._active, name, command),
            )
        return self._contexts[name]

    def _setting(self, setting: Setting) -> _Row:
        used = self._command in setting.commands
        name = self._command if used else setting.commands[0]
        parsed = self._parsed(name)
        raw = parsed.params.get(setting.param)
        source, origin = self._source(parsed, setting.param, setting)
        value = setting.from_option(raw) if raw is not None else None
        if setting.param == "host" and isinstance(raw, str):
            value = self._active.address_for(raw)
        problem = None
        if raw is None and source == "file":
            # The command refused the file's value (a path that does not exist, say).
            value = plain_value(file_value(self._active.host, setting))
            problem = _refusal(parsed, setting.param, setting.to_option(value))
        return _Row(value=value, source=source, origin=origin, used=used, problem=problem)

    def _source(self, parsed: Any, param: str, setting: Setting | None = None) -> tuple[str, str]:
        found = parsed.get_parameter_source(param)
        kind = found.name if found is not None else "DEFAULT"
        option = next(p for p in parsed.command.params if p.name == param)
        if kind == "COMMANDLINE":
            flags = [o for o in option.opts if o.startswith("--")] or option.opts
            return "flag", f"flag {flags[0]}"
        if kind == "ENVIRONMENT":
            names = [option.envvar] if isinstance(option.envvar, str) else option.envvar or []
            return "env", f"env {next((n for n in names if os.environ.get(n)), names[0])}"
        if kind == "DEFAULT_MAP" and setting is not None:
            return "file", f"file {self._active.origin(setting.section, setting.key)}"
        return "default", "default"

    def _host_password(self) -> _Row:
        used = self._command in CONNECTED_COMMANDS
        parsed = self._parsed(self._command if used else CONNECTED_COMMANDS[0])
        source, origin = self._source(parsed, "password")
        if source != "default":
            return _Row(_MASK, source, origin, used, reference=origin)
        return self._from_reference(self._active.password_reference("connection"), used)

    def _repository_password(self) -> _Row:
        used = self._command in REPOSITORY_COMMANDS
        parsed = self._parsed(self._command if used else "check")
        password_file = parsed.params.get("password_file")
        if password_file is not None:
            source, origin = self._source(parsed, "password_file")
            return _Row(_MASK, source, origin, used, reference=f"file {password_file}")
        if os.environ.get(REPO_PASSWORD_ENV):
            origin = f"env {REPO_PASSWORD_ENV}"
            return _Row(_MASK, "env", origin, used, reference=origin)
        return self._from_reference(self._active.password_reference("repository"), used)

    def _from_reference(self, reference: SecretReference | None, used: bool) -> _Row:
        if reference is None:
            return _Row(None, "default", "default (asked on a terminal)", used)
        return _Row(
            _MASK,
            "file",
            f"file {reference.origin}",
            used,
            reference=reference.describe(),
            problem=reference.problem(),
        )


def _refusal(parsed: Any, param: str, value: Any) -> str | None:
    """Why the command refuses ``value`` for ``param`` (None if it does not)."""
    option = next(p for p in parsed.command.params if p.name == param)
    try:
        option.process_value(parsed, value)
    except Exception as error:  # any refusal is reported, not raised
        return str(getattr(error, "message", error))
    return None


def _json_row(row: _Row) -> dict[str, Any]:
    document = asdict(row)
    document["from"] = document.pop("origin")
    return {k: v for k, v in document.items() if v is not None or k == "value"}


def _print_table(active: ActiveConfig, command: str, rows: dict[str, dict[str, _Row]]) -> None:
    where = f"file {active.path}" if active.path else "no configuration file"
    profile = f", host table [hosts.{active.host.profile}]" if active.host.profile else ""
    table = Table(title=f"Settings for `{command}` ({escape(where)}{escape(profile)})")
    for column in ("Setting", "Value", "From"):
        table.add_column(column, overflow="fold")
    for section, keys in rows.items():
        for key, row in keys.items():
            value = "-" if row.value is None else json.dumps(row.value, ensure_ascii=False)
            origin = row.origin
            if row.reference and row.reference != row.origin:
                origin += f" → {row.reference}"
            if row.problem:
                origin += f" (problem: {row.problem})"
            if not row.used:
                origin += f" (not used by {command})"
            style = None if row.used else "dim"
            table.add_row(f"{section}.{key}", escape(value), escape(origin), style=style)
    out().print(table)
