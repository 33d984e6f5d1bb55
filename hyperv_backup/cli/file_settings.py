"""The configuration file on the command line: defaults for each command's options.

For every option click takes the command line first, then the option's environment variable,
then the context's ``default_map``, then the option's own default — exactly the documented
precedence flag > ``HYPERV_BACKUP_*`` > file > built-in default. The root callback loads the
file and puts its values for the command about to run into ``default_map`` (the command's
context is created after the callback, and inherits it).

Passwords are the exception: they are not option defaults but references, read only when a
command needs them and nothing higher up gave one (see :func:`active_config`).

Which host's ``[hosts.NAME]`` table applies has to be known before the command's options are
parsed, so the root group keeps the command's arguments and ``--host``/``-H`` is looked up in
them (else ``HYPERV_BACKUP_HOST``, else ``default_host``).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import typer
from typer.core import TyperCommand, TyperGroup

from hyperv_backup.configfile import (
    CONFIG_ENV,
    ConfigFile,
    HostConfig,
    SecretReference,
    load_config,
    locate_config,
)

__all__ = [
    "CONNECTED_COMMANDS",
    "HOST_ENV",
    "REPOSITORY_COMMANDS",
    "SETTINGS",
    "ActiveConfig",
    "ConfiguredGroup",
    "Setting",
    "active_config",
    "apply_config_file",
    "default_map_for",
    "file_value",
    "load_active",
    "plain_value",
    "requested_host",
    "source_rank",
]

HOST_ENV = "HYPERV_BACKUP_HOST"
CONNECTED_COMMANDS = ("inventory", "plan", "backup", "cleanup", "restore")
"""Commands that take the connection options."""
REPOSITORY_COMMANDS = ("backup", "init", "snapshots", "check", "restore", "forget", "prune")
"""Commands that open a repository."""

_ARGS_KEY = "hyperv_backup.command_args"


def plain_value(value: Any) -> Any:
    """A file value as click takes it: enums by value, paths as text, lists as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [plain_value(v) for v in value]
    return value


def _negate(value: Any) -> Any:
    return None if value is None else not value


def _pairs_to_list(value: Any) -> Any:
    return [f"{prefix}={target}" for prefix, target in value.items()]


def _list_to_pairs(value: Any) -> Any:
    if not value:
        return None
    return dict(str(pair).partition("=")[::2] for pair in value)


@dataclass(frozen=True)
class Setting:
    """One key of the file and the command option it feeds.

    ``key`` may be dotted (``hooks.before_job``). ``to_option`` turns the file's value into
    the option's (``tls = false`` → ``--no-tls``); ``from_option`` the other way, for
    ``config show``.
    """

    section: Literal["connection", "reader", "repository", "backup", "retention", "monitoring"]
    key: str
    param: str
    commands: tuple[str, ...]
    to_option: Callable[[Any], Any] = plain_value
    from_option: Callable[[Any], Any] = plain_value


_POLICY_COMMANDS = ("plan", "backup")
SETTINGS: tuple[Setting, ...] = (
    Setting("connection", "host", "host", CONNECTED_COMMANDS),
    Setting("connection", "port", "port", CONNECTED_COMMANDS),
    Setting("connection", "auth", "auth", CONNECTED_COMMANDS),
    Setting("connection", "username", "username", CONNECTED_COMMANDS),
    Setting("connection", "tls", "no_tls", CONNECTED_COMMANDS, _negate, _negate),
    Setting("connection", "ca_bundle", "ca_bundle", CONNECTED_COMMANDS),
    Setting("connection", "insecure", "insecure", CONNECTED_COMMANDS),
    Setting("connection", "script_timeout", "script_timeout", CONNECTED_COMMANDS),
    Setting("connection", "connect_timeout", "connect_timeout", CONNECTED_COMMANDS),
    Setting("connection", "operation_timeout", "operation_timeout", CONNECTED_COMMANDS),
    Setting("reader", "path_maps", "path_map", ("backup", "plan"), _pairs_to_list, _list_to_pairs),
    Setting("reader", "smb_port", "smb_port", ("backup", "restore")),
    Setting("reader", "smb_shares", "smb_share", ("backup",), _pairs_to_list, _list_to_pairs),
    Setting(
        "reader", "smb_encryption", "smb_no_encryption", ("backup", "restore"), _negate, _negate
    ),
    Setting("repository", "location", "repo", REPOSITORY_COMMANDS),
    Setting("repository", "s3_endpoint", "s3_endpoint", REPOSITORY_COMMANDS),
    Setting("repository", "s3_region", "s3_region", REPOSITORY_COMMANDS),
    Setting("repository", "s3_profile", "s3_profile", REPOSITORY_COMMANDS),
    Setting("backup", "to", "to", ("backup",)),
    Setting("backup", "all", "all_vms", _POLICY_COMMANDS),
    Setting("backup", "exclude", "exclude", _POLICY_COMMANDS),
    Setting("backup", "consistency", "consistency", _POLICY_COMMANDS),
    Setting("backup", "capture", "capture", _POLICY_COMMANDS),
    Setting("backup", "passthrough", "passthrough", _POLICY_COMMANDS),
    Setting("backup", "suspend_replication", "suspend_replication", _POLICY_COMMANDS),
    Setting("backup", "parallel", "parallel", ("backup",)),
    Setting("backup", "staging_root", "staging_root", ("backup", "cleanup")),
    Setting("backup", "merge_timeout", "merge_timeout", ("backup",)),
    Setting("backup", "retry_attempts", "retry_attempts", ("backup",)),
    Setting("backup", "state_dir", "state_dir", ("backup", "cleanup")),
    Setting("backup", "hooks.before_job", "before_job", ("backup",)),
    Setting("backup", "hooks.after_job", "after_job", ("backup",)),
    Setting("backup", "hooks.before_vm", "before_vm", ("backup",)),
    Setting("backup", "hooks.after_vm", "after_vm", ("backup",)),
    Setting("retention", "keep_last", "keep_last", ("forget",)),
    Setting("retention", "keep_hourly", "keep_hourly", ("forget",)),
    Setting("retention", "keep_daily", "keep_daily", ("forget",)),
    Setting("retention", "keep_weekly", "keep_weekly", ("forget",)),
    Setting("retention", "keep_monthly", "keep_monthly", ("forget",)),
    Setting("retention", "keep_yearly", "keep_yearly", ("forget",)),
    Setting("retention", "prune", "prune_after", ("forget",)),
    Setting("monitoring", "report_file", "report_file", ("backup",)),
    Setting("monitoring", "metrics_file", "metrics_file", ("backup",)),
    Setting("monitoring", "job_name", "job_name", ("backup",)),
    Setting("monitoring", "webhook_url", "webhook_url", ("backup",)),
    Setting("monitoring", "webhook_on", "webhook_on", ("backup",)),
    Setting(
        "monitoring",
        "webhook_headers",
        "webhook_header",
        ("backup",),
        _pairs_to_list,
        _list_to_pairs,
    ),
)
"""Every file key that feeds a command option, and the commands it feeds."""


def file_value(host: HostConfig, setting: Setting) -> Any:
    """The file's value for ``setting`` (None when the file does not set it)."""
    value: Any = getattr(host, setting.section)
    for part in setting.key.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


@dataclass(frozen=True)
class ActiveConfig:
    """The configuration file in effect for one command line (``path`` None: no file)."""

    path: Path | None
    file: ConfigFile | None
    host: HostConfig

    def origin(self, section: str, key: str) -> str | None:
        """``/path/to/file.toml [hosts.hv01.connection]`` for a key the file sets."""
        table = self.host.origins.get(f"{section}.{key.split('.', maxsplit=1)[0]}")
        return f"{self.path} [{table}]" if table and self.path else None

    def address_for(self, host: str) -> str:
        """``host`` itself, or the address of the ``[hosts.NAME]`` table it names."""
        if self.file is None or self.file.profile_for(host) is None:
            return host
        return self.file.for_host(host).connection.host or host

    def password_reference(
        self, section: Literal["connection", "repository"]
    ) -> SecretReference | None:
        """Where the file says the host's or the repository's password is."""
        return self.host.password_reference(section, self.path or "")


_ACTIVE: ContextVar[ActiveConfig | None] = ContextVar("hyperv_backup_config", default=None)


def active_config() -> ActiveConfig | None:
    """The configuration file of the command line being run (None outside one)."""
    return _ACTIVE.get()


@contextmanager
def _in_effect(active: ActiveConfig) -> Iterator[None]:
    token = _ACTIVE.set(active)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def requested_host(args: Sequence[str]) -> str | None:
    """The value of ``--host``/``-H`` in a command's arguments, if any."""
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if arg in ("--host", "-H") and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--host="):
            return arg.partition("=")[2]
        if arg.startswith("-H") and len(arg) > 2:
            return arg[2:]
    return None


def load_active(
    explicit: Path | None,
    *,
    args: Sequence[str] = (),
    named_by: str = "--config",
    environ: Mapping[str, str] | None = None,
) -> ActiveConfig:
    """Find and load the file; pick the host table that ``args`` or the environment name.

    Raises :class:`~hyperv_backup.errors.ConfigError` for a missing explicit file or an
    invalid one.
    """
    env = os.environ if environ is None else environ
    path = locate_config(explicit, named_by=named_by, environ=env)
    if path is None:
        return ActiveConfig(None, None, HostConfig())
    loaded = load_config(path)
    host = requested_host(args) or env.get(HOST_ENV) or None
    return ActiveConfig(path, loaded, loaded.for_host(host))


def default_map_for(active: ActiveConfig, name: str, command: TyperCommand) -> dict[str, Any]:
    """The ``default_map`` of command ``name``: the file's value of each option it has."""
    params = {p.name for p in command.params}
    defaults: dict[str, Any] = {}
    for setting in SETTINGS:
        if name not in setting.commands or setting.param not in params:
            continue
        value = file_value(active.host, setting)
        if value is not None:
            defaults[setting.param] = setting.to_option(value)
    if "to" in defaults:
        # [backup] to = ... says where backups go; [repository] stays for the repository
        # commands. (A --repo flag or HYPERV_BACKUP_REPO still beats the file's `to`.)
        defaults.pop("repo", None)
    return defaults


class ConfiguredGroup(TyperGroup):
    """The root group; keeps the command's arguments for choosing the host table."""

    # ``Any``: the base class takes typer's internal click Context, which is not public.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse as usual, and remember what follows the command's name."""
        rest = super().parse_args(ctx, args)
        ctx.meta[_ARGS_KEY] = list(rest)
        return rest


def apply_config_file(ctx: typer.Context, explicit: Path | None) -> None:
    """Load the file for the command about to run and make it its defaults.

    Commands that take no setting from the file (``config``, ``demo``, ``simulator``) are
    left alone. Raises :class:`~hyperv_backup.errors.ConfigError`.
    """
    name = ctx.invoked_subcommand
    if name is None or not any(name in s.commands for s in SETTINGS):
        return
    command = ctx.command.get_command(ctx, name) if isinstance(ctx.command, TyperGroup) else None
    if not isinstance(command, TyperCommand):
        return
    source = ctx.get_parameter_source("config")
    named_by = CONFIG_ENV if source is not None and source.name == "ENVIRONMENT" else "--config"
    active = load_active(explicit, args=ctx.meta.get(_ARGS_KEY, ()), named_by=named_by)
    ctx.default_map = {name: default_map_for(active, name, command)}
    ctx.with_resource(_in_effect(active))


_RANKS = {"COMMANDLINE": 3, "PROMPT": 3, "ENVIRONMENT": 2, "DEFAULT_MAP": 1}


def source_rank(ctx: typer.Context, param: str) -> int:
    """3 flag, 2 environment, 1 configuration file, 0 built-in default."""
    source = ctx.get_parameter_source(param)
    return _RANKS.get(source.name, 0) if source is not None else 0
