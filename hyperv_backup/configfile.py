"""The configuration file: where it is, what it may hold, and how it is checked.

A TOML file with six shared sections — ``[connection]``, ``[reader]``, ``[repository]``,
``[backup]``, ``[retention]`` and ``[monitoring]`` — and optional per-host tables
``[hosts.NAME]`` that hold the same sections and override the shared keys one by one.
Every key is optional: a key left out means "the command's built-in default". Unknown keys
are errors that name the key, the table and the file, with the closest known key as a hint.

Passwords are never stored in the file. A section names where its password is:
``password_env = "VAR"``, ``password_file = "/path"`` or ``password_command = [...]``; an
inline ``password = "..."`` is refused. :meth:`SecretReference.reveal` reads it when, and
only when, it is needed.

Usage::

    from hyperv_backup.configfile import load_config, locate_config

    path = locate_config()                 # --config/HYPERV_BACKUP_CONFIG, ./, ~/.config
    if path is not None:
        host = load_config(path).for_host("hv01")
        print(host.connection.host, host.backup.parallel)

The command line applies the file below flags and environment variables; see
``docs/configuration.md``.
"""

from __future__ import annotations

import difflib
import logging
import os
import shlex
import stat
import subprocess
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from hyperv_backup.config import AuthMethod
from hyperv_backup.errors import ConfigError
from hyperv_backup.policy import CaptureMode, ConsistencyPolicy, PassthroughPolicy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "CONFIG_ENV",
    "LOCAL_CONFIG_NAME",
    "SECTIONS",
    "BackupSection",
    "ConfigFile",
    "ConnectionSection",
    "HooksSection",
    "HostConfig",
    "HostProfile",
    "MonitoringSection",
    "ReaderSection",
    "RepositorySection",
    "RetentionSection",
    "SecretReference",
    "example_config",
    "load_config",
    "locate_config",
    "user_config_path",
]

logger = logging.getLogger(__name__)

CONFIG_ENV = "HYPERV_BACKUP_CONFIG"
"""The environment variable that names the configuration file."""
LOCAL_CONFIG_NAME = "hyperv-backup.toml"
"""The file looked for in the current directory."""
SECTIONS = ("connection", "reader", "repository", "backup", "retention", "monitoring")
"""The sections of the file, shared at the top level and per host."""

_PASSWORD_COMMAND_TIMEOUT = 60.0


@dataclass(frozen=True)
class SecretReference:
    """Where a password is: an environment variable, a file, or a command's output.

    ``origin`` says where the reference was declared (file and table), for messages.
    """

    kind: Literal["env", "file", "command"]
    target: str
    """The variable's name or the file's path (for ``command``: the command line)."""
    argv: tuple[str, ...] = ()
    origin: str = ""

    def describe(self) -> str:
        """The reference for a person, without the secret: ``env VAR``, ``file /p``."""
        return f"{self.kind} {self.target}"

    def problem(self) -> str | None:
        """Why :meth:`reveal` would fail, found without reading any secret; None if unknown."""
        if self.kind == "env" and not os.environ.get(self.target):
            return f"environment variable {self.target} is not set"
        if self.kind == "file" and not Path(self.target).is_file():
            return f"file {self.target} does not exist"
        return None

    def reveal(self) -> str:
        """Read the password now; :class:`ConfigError` says which reference failed and why.

        A file is read whole (without its final line break); a command's first output line
        is the password. A file any user may read is used, with a warning.
        """
        where = f" ({self.origin})" if self.origin else ""
        if self.kind == "env":
            value = os.environ.get(self.target)
            if not value:
                raise ConfigError(
                    f"The password is to come from the environment variable {self.target}"
                    f"{where}, but it is not set. Set it, or point password_env elsewhere."
                )
            return value
        if self.kind == "file":
            return self._read_file(where)
        return self._run_command(where)

    def _read_file(self, where: str) -> str:
        path = Path(self.target)
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"Cannot read the password file {path}{where}: {error.strerror or error}."
            ) from None
        if mode & stat.S_IROTH:
            logger.warning(
                "Password file %s is readable by every user of this machine (mode %o); "
                "restrict it: chmod 600 %s",
                path,
                stat.S_IMODE(mode),
                shlex.quote(str(path)),
            )
        value = text.rstrip("\r\n")
        if not value:
            raise ConfigError(f"The password file {path}{where} is empty.")
        return value

    def _run_command(self, where: str) -> str:
        try:
            done = subprocess.run(  # noqa: S603  # the admin's own command, no shell
                list(self.argv),
                capture_output=True,
                text=True,
                timeout=_PASSWORD_COMMAND_TIMEOUT,
                check=False,
            )
        except FileNotFoundError:
            raise ConfigError(
                f"password_command{where}: program {self.argv[0]!r} not found."
            ) from None
        except subprocess.TimeoutExpired:
            raise ConfigError(
                f"password_command{where} did not finish within "
                f"{_PASSWORD_COMMAND_TIMEOUT:.0f} s: {self.target}"
            ) from None
        if done.returncode != 0:
            detail = done.stderr.strip().splitlines()[-1:] or ["no message"]
            raise ConfigError(
                f"password_command{where} failed with exit code {done.returncode}: "
                f"{self.target}: {detail[0][:200]}"
            )
        lines = done.stdout.splitlines()
        if not lines or not lines[0]:
            raise ConfigError(f"password_command{where} printed no password: {self.target}")
        return lines[0]


class _Table(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _anchored(value: Path | None, info: ValidationInfo) -> Path | None:
    """``~`` expanded; a relative path taken relative to the configuration file's folder."""
    if value is None:
        return None
    value = value.expanduser()
    base = (info.context or {}).get("base_dir")
    if not value.is_absolute() and isinstance(base, Path):
        return base / value
    return value


def _anchored_location(value: str | None, info: ValidationInfo) -> str | None:
    if value is None or value.startswith("s3://"):
        return value
    return str(_anchored(Path(value), info))


class _PasswordReference(_Table):
    password_env: str | None = Field(
        default=None, min_length=1, description="Environment variable holding the password."
    )
    password_file: Path | None = Field(
        default=None, description="File holding the password (keep it chmod 600)."
    )
    password_command: list[str] | None = Field(
        default=None, min_length=1, description="Command whose first output line is it."
    )

    @model_validator(mode="before")
    @classmethod
    def _no_inline_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise PydanticCustomError(
                "inline_password",
                "a password is never written into the configuration file; say where it is "
                'instead: password_env = "VARIABLE", password_file = "/path/to/file" '
                '(chmod 600) or password_command = ["pass", "show", "name"]',
            )
        return data

    @field_validator("password_file")
    @classmethod
    def _anchor_password_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _anchored(value, info)

    @model_validator(mode="after")
    def _one_reference(self) -> _PasswordReference:
        given = [
            k for k in ("password_env", "password_file", "password_command") if getattr(self, k)
        ]
        if len(given) > 1:
            raise ValueError(f"give one of {', '.join(given)}, not several")
        return self

    def password_reference(self, origin: str = "") -> SecretReference | None:
        """Where this section's password is, or None when it names none."""
        if self.password_env:
            return SecretReference("env", self.password_env, origin=origin)
        if self.password_file is not None:
            return SecretReference("file", str(self.password_file), origin=origin)
        if self.password_command:
            argv = tuple(self.password_command)
            return SecretReference("command", shlex.join(argv), argv=argv, origin=origin)
        return None


class ConnectionSection(_PasswordReference):
    """``[connection]``: how to reach the Hyper-V host over WinRM."""

    host: str | None = Field(default=None, min_length=1, description="Host name or IP.")
    port: int | None = Field(default=None, ge=1, le=65535, description="WinRM port.")
    auth: AuthMethod | None = None
    username: str | None = Field(default=None, min_length=1)
    tls: bool | None = Field(default=None, description="False: plain HTTP (port 5985).")
    ca_bundle: Path | None = Field(default=None, description="PEM of the host's CA.")
    insecure: bool | None = Field(default=None, description="Do not verify the certificate.")
    script_timeout: float | None = Field(default=None, gt=0)
    connect_timeout: float | None = Field(default=None, gt=0)
    operation_timeout: int | None = Field(default=None, ge=1, le=3600)

    @field_validator("ca_bundle")
    @classmethod
    def _anchor(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _anchored(value, info)


class ReaderSection(_Table):
    """``[reader]``: how disk data is read — over SMB, or through local mounts."""

    path_maps: dict[str, Path] | None = Field(
        default=None, description="Host prefix → local folder; replaces SMB reading."
    )
    smb_port: int | None = Field(default=None, ge=1, le=65535)
    smb_shares: dict[str, str] | None = Field(
        default=None, description="Host prefix → share name, instead of administrative shares."
    )
    smb_encryption: bool | None = None

    @field_validator("path_maps")
    @classmethod
    def _anchor(cls, value: dict[str, Path] | None, info: ValidationInfo) -> dict[str, Path] | None:
        if value is None:
            return None
        return {prefix: _anchored(local, info) or local for prefix, local in value.items()}


class RepositorySection(_PasswordReference):
    """``[repository]``: where the repository is and how to unlock it."""

    location: str | None = Field(
        default=None, min_length=1, description="A folder, or s3://BUCKET/PREFIX."
    )
    s3_endpoint: str | None = Field(default=None, min_length=1)
    s3_region: str | None = Field(default=None, min_length=1)
    s3_profile: str | None = Field(default=None, min_length=1)

    @field_validator("location")
    @classmethod
    def _anchor(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _anchored_location(value, info)


class HooksSection(_Table):
    """``[backup.hooks]``: PowerShell commands run on the host before/after a job or a VM."""

    before_job: list[str] | None = None
    after_job: list[str] | None = None
    before_vm: list[str] | None = None
    after_vm: list[str] | None = None


class BackupSection(_Table):
    """``[backup]``: the backup policy, the VM selection defaults and ``to``."""

    to: str | None = Field(
        default=None,
        min_length=1,
        description="Plain Export-VM folders here (folder or s3://) instead of the repository.",
    )
    all: bool | None = Field(default=None, description="Every VM when no names are given.")
    exclude: list[str] | None = None
    consistency: ConsistencyPolicy | None = None
    capture: CaptureMode | None = None
    passthrough: PassthroughPolicy | None = None
    suspend_replication: bool | None = None
    parallel: int | None = Field(default=None, ge=1, le=16)
    staging_root: str | None = Field(default=None, min_length=1)
    merge_timeout: int | None = Field(default=None, ge=1, le=86400)
    retry_attempts: int | None = Field(default=None, ge=1, le=100)
    state_dir: Path | None = None
    hooks: HooksSection | None = None

    @field_validator("to")
    @classmethod
    def _anchor_to(cls, value: str | None, info: ValidationInfo) -> str | None:
        return _anchored_location(value, info)

    @field_validator("state_dir")
    @classmethod
    def _anchor_state(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _anchored(value, info)


class RetentionSection(_Table):
    """``[retention]``: what ``forget`` keeps per VM; 0 disables a rule."""

    keep_last: int | None = Field(default=None, ge=0)
    keep_hourly: int | None = Field(default=None, ge=0)
    keep_daily: int | None = Field(default=None, ge=0)
    keep_weekly: int | None = Field(default=None, ge=0)
    keep_monthly: int | None = Field(default=None, ge=0)
    keep_yearly: int | None = Field(default=None, ge=0)
    prune: bool | None = Field(default=None, description="forget then deletes unused data.")


class MonitoringSection(_Table):
    """``[monitoring]``: what ``backup`` reports after each job (see docs/monitoring.md)."""

    report_file: Path | None = Field(default=None, description="The job's JSON report.")
    metrics_file: Path | None = Field(default=None, description="A Prometheus textfile.")
    job_name: str | None = Field(default=None, min_length=1, description="The metrics' label.")
    webhook_url: str | None = Field(default=None, min_length=1, description="POST the report.")
    webhook_on: Literal["failure", "always"] | None = None
    webhook_headers: dict[str, str] | None = Field(
        default=None,
        description="Header name → the environment variable holding its value (never the "
        "value itself: it may be a token).",
    )

    @field_validator("report_file", "metrics_file")
    @classmethod
    def _anchor(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return _anchored(value, info)


class HostProfile(_Table):
    """``[hosts.NAME]``: the sections again, overriding the shared ones for one host."""

    connection: ConnectionSection = Field(default_factory=ConnectionSection)
    reader: ReaderSection = Field(default_factory=ReaderSection)
    repository: RepositorySection = Field(default_factory=RepositorySection)
    backup: BackupSection = Field(default_factory=BackupSection)
    retention: RetentionSection = Field(default_factory=RetentionSection)
    monitoring: MonitoringSection = Field(default_factory=MonitoringSection)


class HostConfig(_Table):
    """The file's settings for one host: its ``[hosts.NAME]`` table over the shared ones.

    ``profile`` is the host table's name (None: shared settings only). ``origins`` maps
    ``"section.key"`` to the table the value came from (``"connection"``,
    ``"hosts.hv01.connection"``); keys the file does not set are absent.
    """

    profile: str | None = None
    connection: ConnectionSection = Field(default_factory=ConnectionSection)
    reader: ReaderSection = Field(default_factory=ReaderSection)
    repository: RepositorySection = Field(default_factory=RepositorySection)
    backup: BackupSection = Field(default_factory=BackupSection)
    retention: RetentionSection = Field(default_factory=RetentionSection)
    monitoring: MonitoringSection = Field(default_factory=MonitoringSection)
    origins: dict[str, str] = Field(default_factory=dict)

    def password_reference(
        self, section: Literal["connection", "repository"], path: Path | str = ""
    ) -> SecretReference | None:
        """The host's or the repository's password reference; ``path`` names the file."""
        table = self.origins.get(f"{section}.password")
        origin = f"{path} [{table}]" if path and table else str(path)
        return getattr(self, section).password_reference(origin)  # type: ignore[no-any-return]


class ConfigFile(HostProfile):
    """The whole file: shared sections, ``default_host`` and the ``[hosts.*]`` tables."""

    default_host: str | None = Field(
        default=None,
        min_length=1,
        description="The [hosts.NAME] table used when no --host / HYPERV_BACKUP_HOST is given.",
    )
    hosts: dict[str, HostProfile] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_host_exists(self) -> ConfigFile:
        if self.default_host is not None and self.default_host not in self.hosts:
            known = ", ".join(sorted(self.hosts)) or "none"
            raise PydanticCustomError(
                "unknown_default_host",
                "default_host = {name!r} names no [hosts.{name}] table (tables: {known})",
                {"name": self.default_host, "known": known},
            )
        return self

    def profile_for(self, host: str) -> str | None:
        """The ``[hosts.NAME]`` table for ``host``: by name, else by its connection.host."""
        if host in self.hosts:
            return host
        folded = host.casefold()
        for name, profile in self.hosts.items():
            address = profile.connection.host
            if name.casefold() == folded or (address and address.casefold() == folded):
                return name
        return None

    def for_host(self, host: str | None = None) -> HostConfig:
        """The settings for ``host`` (a table name or address; None: ``default_host``).

        A host without a table gets the shared sections only. Keys of the host's table
        override shared keys one by one; a table-valued key (``path_maps``, ``hooks``...)
        is replaced whole, and so is the password reference (``password_*``). A host
        table's ``connection.host`` defaults to its name and is never taken from the shared
        ``[connection]``.
        """
        name = self.profile_for(host) if host else self.default_host
        profile = self.hosts.get(name) if name else None
        merged: dict[str, Any] = {"profile": name if profile is not None else None}
        origins: dict[str, str] = {}
        for section in SECTIONS:
            layers = [(section, getattr(self, section))]
            if profile is not None:
                layers.append((f"hosts.{name}.{section}", getattr(profile, section)))
            values: dict[str, Any] = {}
            for table, layer in layers:
                own = _set_values(layer)
                if any(key.startswith("password_") for key in own):
                    values = {k: v for k, v in values.items() if not k.startswith("password_")}
                values.update(own)
                origins.update({f"{section}.{_setting_name(key)}": table for key in own})
            merged[section] = values
        if profile is not None:
            address = profile.connection.host
            merged["connection"]["host"] = address or name
            origins["connection.host"] = f"hosts.{name}.connection" if address else f"hosts.{name}"
        merged["origins"] = origins
        return HostConfig.model_validate(merged)


def _setting_name(key: str) -> str:
    """``password_env`` & co. are one setting, ``password``; other keys are themselves."""
    return "password" if key.startswith("password_") else key


def _set_values(section: BaseModel) -> dict[str, Any]:
    return {
        key: getattr(section, key)
        for key in type(section).model_fields
        if getattr(section, key) is not None
    }


def user_config_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/hyperv-backup/config.toml`` (``~/.config/...`` by default)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path("~/.config").expanduser())
    return Path(base) / "hyperv-backup" / "config.toml"


def locate_config(
    explicit: Path | None = None,
    *,
    named_by: str = "--config",
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Path | None:
    """The configuration file to read, or None when there is none.

    ``explicit`` (else ``HYPERV_BACKUP_CONFIG``) must exist — :class:`ConfigError`
    otherwise, naming ``named_by``. Else ``./hyperv-backup.toml``, else the user's
    :func:`user_config_path`, whichever exists first.
    """
    env = os.environ if environ is None else environ
    if explicit is None and env.get(CONFIG_ENV):
        explicit, named_by = Path(env[CONFIG_ENV]), CONFIG_ENV
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(
                f"Configuration file {explicit} (named by {named_by}) does not exist or is not "
                "a file. Create it (`hyperv-backup config init` prints an example) or fix "
                "the path."
            )
        return explicit
    for candidate in ((cwd or Path.cwd()) / LOCAL_CONFIG_NAME, user_config_path(env)):
        if candidate.is_file():
            return candidate
    return None


def load_config(path: Path) -> ConfigFile:
    """Read and validate the file; :class:`ConfigError` names the file and each bad key."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as error:
        raise ConfigError(
            f"Cannot read the configuration file {path}: {error.strerror or error}."
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"Configuration file {path} is not UTF-8 text.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"Configuration file {path} is not valid TOML: {error}.") from None
    try:
        return ConfigFile.model_validate(data, context={"base_dir": path.parent.absolute()})
    except ValidationError as error:
        problems = "\n".join(f"  - {_describe(e)}" for e in error.errors())
        raise ConfigError(f"Invalid configuration file {path}:\n{problems}") from None


def example_config() -> str:
    """A complete, commented example file (what ``hyperv-backup config init`` prints)."""
    return resources.files("hyperv_backup").joinpath("config_example.toml").read_text("utf-8")


def _describe(error: ErrorDetails) -> str:
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    if error["type"] == "extra_forbidden":
        table = ".".join(loc[:-1])
        where = f"in [{table}]" if table else "at the top level"
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
        return f"unknown key {loc[-1]!r} {where} ({hint})"
    if error["type"] == "inline_password":
        return f"{'.'.join([*loc, 'password'])}: {error['msg']}"
    return f"{key or '(top level)'}: {error['msg'].removeprefix('Value error, ')}"


def _known_keys(loc: list[str]) -> list[str]:
    """The keys allowed in the table at ``loc`` (for "did you mean")."""
    model: type[BaseModel] = ConfigFile
    expect_name = False
    for part in loc:
        if expect_name:  # the NAME of [hosts.NAME]
            model, expect_name = HostProfile, False
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        inner = _model_in(field.annotation)
        if inner is None:
            return []
        model, expect_name = inner
    return sorted(model.model_fields)


def _model_in(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """The model type inside an annotation, and whether it sits in a dict (keyed by name)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin = get_origin(annotation)
    if origin is dict:
        found = _model_in(get_args(annotation)[1])
        return (found[0], True) if found else None
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found:
                return found
    return None
