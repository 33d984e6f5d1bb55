"""Options shared by the commands, and the settings and policy they build."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, get_args

import typer
from pydantic import SecretStr, ValidationError

from hyperv_backup.cli.console import fail
from hyperv_backup.cli.file_settings import active_config, source_rank
from hyperv_backup.config import AuthMethod, ConnectionSettings, Timeouts
from hyperv_backup.errors import ConfigError
from hyperv_backup.policy import (
    BackupPolicy,
    CaptureMode,
    ConsistencyPolicy,
    Hooks,
    PassthroughPolicy,
    PowerShellHook,
    RetryPolicy,
    Selection,
)
from hyperv_backup.results import EXIT_USAGE
from hyperv_backup.transfer import FileReader, LocalPathReader, SMBReader, SMBWriter

__all__ = [
    "build_policy",
    "build_reader",
    "build_selection",
    "build_settings",
    "build_writer",
    "with_connection",
    "with_optional_connection",
]

HostOpt = Annotated[
    str, typer.Option("--host", "-H", help="Hyper-V host name or IP.", envvar="HYPERV_BACKUP_HOST")
]
OptionalHostOpt = Annotated[
    str | None,
    typer.Option(
        "--host", "-H", help="Hyper-V host name or IP (for --to-host).", envvar="HYPERV_BACKUP_HOST"
    ),
]
PortOpt = Annotated[
    int | None,
    typer.Option(
        help="WinRM port (default 5986 with TLS, 5985 without).", envvar="HYPERV_BACKUP_PORT"
    ),
]
AuthOpt = Annotated[
    str,
    typer.Option(
        help="negotiate, ntlm, kerberos, basic, credssp or certificate.",
        envvar="HYPERV_BACKUP_AUTH",
    ),
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
        help="Password; better set HYPERV_BACKUP_PASSWORD, or name it in the configuration "
        "file, or type it when asked.",
        envvar="HYPERV_BACKUP_PASSWORD",
        show_envvar=True,
    ),
]
NoTlsOpt = Annotated[bool, typer.Option("--no-tls", help="Plain HTTP (port 5985).")]
CaOpt = Annotated[
    Path | None,
    typer.Option(
        help="PEM file of the CA that signed the host's certificate.",
        exists=True,
        envvar="HYPERV_BACKUP_CA_BUNDLE",
    ),
]
InsecureOpt = Annotated[
    bool,
    typer.Option("--insecure", help="Do not verify the host's TLS certificate (not recommended)."),
]
TimeoutOpt = Annotated[
    float,
    typer.Option(
        help="Default deadline of a host script, seconds.", envvar="HYPERV_BACKUP_SCRIPT_TIMEOUT"
    ),
]
ConnectTimeoutOpt = Annotated[
    float,
    typer.Option(
        help="Seconds to establish the connection.",
        min=0.1,
        envvar="HYPERV_BACKUP_CONNECT_TIMEOUT",
    ),
]
OperationTimeoutOpt = Annotated[
    int,
    typer.Option(
        help="WS-Management operation timeout (the longest silent poll), seconds.",
        min=1,
        max=3600,
        envvar="HYPERV_BACKUP_OPERATION_TIMEOUT",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

NamesArg = Annotated[list[str] | None, typer.Argument(help="VM names or wildcards.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every VM on the host.")]
ExcludeOpt = Annotated[
    list[str] | None, typer.Option("--exclude", help="Leave out VMs matching this (repeatable).")
]
ConsistencyOpt = Annotated[
    ConsistencyPolicy,
    typer.Option(
        help="app_required fails a VM that cannot be application-consistent.",
        envvar="HYPERV_BACKUP_CONSISTENCY",
    ),
]
CaptureOpt = Annotated[
    CaptureMode,
    typer.Option(
        help="in_place reads frozen disks where they lie; export copies.",
        envvar="HYPERV_BACKUP_CAPTURE",
    ),
]
PassthroughOpt = Annotated[
    PassthroughPolicy, typer.Option(help="What to do with pass-through disks.")
]
SuspendOpt = Annotated[
    bool,
    typer.Option(
        "--suspend-replication",
        help="Suspend Hyper-V Replica per VM during its backup; always resumed.",
    ),
]
ParallelOpt = Annotated[
    int, typer.Option(help="VMs backed up at once.", min=1, max=16, envvar="HYPERV_BACKUP_PARALLEL")
]
StagingOpt = Annotated[
    str | None,
    typer.Option(
        help="Folder on the host for exports (default under ProgramData).",
        envvar="HYPERV_BACKUP_STAGING_ROOT",
    ),
]
MergeOpt = Annotated[int, typer.Option(help="Seconds to wait for a checkpoint merge.")]
AttemptsOpt = Annotated[int, typer.Option(help="Tries for 'conflicting operation' errors.")]
HookOpt = Annotated[
    list[str] | None,
    typer.Option(help="PowerShell run on the host; sees $VMName, $VMId, $JobId (repeatable)."),
]
PathMapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--path-map",
        help="HOSTPREFIX=LOCALDIR: read host files through a local mount "
        "(e.g. 'D:\\=/mnt/hv01-d'). Repeatable.",
    ),
]
StateOpt = Annotated[
    Path | None,
    typer.Option(
        help="Where the journal and locks live (default $XDG_STATE_HOME/hyperv-backup).",
        envvar="HYPERV_BACKUP_STATE_DIR",
    ),
]


def build_settings(
    *,
    host: str,
    port: int | None,
    auth: str,
    username: str | None,
    password: str | None,
    no_tls: bool,
    ca_bundle: Path | None,
    insecure: bool,
    script_timeout: float,
    connect_timeout: float = 30.0,
    operation_timeout: int = 20,
) -> ConnectionSettings:
    """Validated connection settings, or exit 2 with what is wrong.

    With a configuration file in effect, ``host`` may name one of its ``[hosts.NAME]``
    tables (the connection goes to that table's address), and a password neither given nor
    in the environment comes from the file's reference, before asking on a terminal.
    """
    active = active_config()
    if active is not None:
        host = active.address_for(host)
        reference = active.password_reference("connection")
        if password is None and reference is not None and auth != "certificate":
            try:
                password = reference.reveal()
            except ConfigError as error:
                fail(error, EXIT_USAGE)
    if auth not in get_args(AuthMethod):
        fail(
            ConfigError(f"Unknown --auth {auth!r}; use one of {', '.join(get_args(AuthMethod))}."),
            EXIT_USAGE,
        )
    if password is None and auth not in ("kerberos", "certificate") and sys.stdin.isatty():
        password = typer.prompt(f"Password for {username or 'the host'}", hide_input=True, err=True)
    try:
        return ConnectionSettings(
            host=host,
            port=port,
            auth=auth,  # type: ignore[arg-type]  # checked against AuthMethod above
            username=username,
            password=SecretStr(password) if password is not None else None,
            use_tls=not no_tls,
            ca_bundle=ca_bundle,
            cert_validation=not insecure,
            timeouts=Timeouts(
                script=script_timeout, connect=connect_timeout, operation=operation_timeout
            ),
        )
    except ValidationError as error:
        fail(ConfigError(f"Invalid connection settings: {_problems(error)}"), EXIT_USAGE)


def _problems(error: ValidationError) -> str:
    return "; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())


def build_selection(names: list[str] | None, all_vms: bool, exclude: list[str] | None) -> Selection:
    """The VM selection, or exit 2."""
    try:
        return Selection(names=names or [], all=all_vms, exclude=exclude or [])
    except ValidationError as error:
        fail(ConfigError(f"Invalid selection: {_problems(error)}"), EXIT_USAGE)


def build_policy(
    *,
    consistency: ConsistencyPolicy,
    capture: CaptureMode,
    passthrough: PassthroughPolicy,
    suspend_replication: bool,
    parallel: int,
    staging_root: str | None,
    merge_timeout: int,
    retry_attempts: int,
    before_job: list[str] | None = None,
    after_job: list[str] | None = None,
    before_vm: list[str] | None = None,
    after_vm: list[str] | None = None,
) -> BackupPolicy:
    """The backup policy, or exit 2."""
    extra: dict[str, Any] = {}
    if staging_root:
        extra["staging_root"] = staging_root
    try:
        return BackupPolicy(
            consistency=consistency,
            capture=capture,
            passthrough=passthrough,
            suspend_replication=suspend_replication,
            parallel_vms=parallel,
            merge_timeout=merge_timeout,
            retry=RetryPolicy(attempts=retry_attempts),
            hooks=Hooks(
                before_job=[PowerShellHook(command=c) for c in before_job or []],
                after_job=[PowerShellHook(command=c) for c in after_job or []],
                before_vm=[PowerShellHook(command=c) for c in before_vm or []],
                after_vm=[PowerShellHook(command=c) for c in after_vm or []],
            ),
            **extra,
        )
    except ValidationError as error:
        fail(ConfigError(f"Invalid policy: {_problems(error)}"), EXIT_USAGE)


SmbPortOpt = Annotated[
    int,
    typer.Option(
        help="SMB port of the host (disk data is read over SMB).", envvar="HYPERV_BACKUP_SMB_PORT"
    ),
]
SmbShareOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--smb-share",
        help="HOSTPREFIX=SHARE: read files under a host folder through this share instead of "
        "the administrative shares (e.g. 'D:\\Hyper-V=HyperV'). Repeatable.",
    ),
]
SmbPlainOpt = Annotated[
    bool, typer.Option("--smb-no-encryption", help="Do not encrypt SMB traffic (SMB 3 encrypts).")
]


def build_reader(
    settings: ConnectionSettings,
    *,
    path_map: list[str] | None,
    smb_port: int = 445,
    smb_shares: list[str] | None = None,
    smb_encrypt: bool = True,
) -> FileReader:
    """How host files are read: local mounts (``--path-map``) or SMB (the default)."""
    if path_map:
        pairs = _pairs(path_map, "--path-map", "HOSTPREFIX=LOCALDIR")
        return LocalPathReader({prefix: Path(local) for prefix, local in pairs.items()})
    if not settings.username or settings.password is None:
        fail(
            ConfigError(
                "Disk data is read over SMB with the connection's user and password; give "
                "--username and a password, or --path-map for local mounts."
            ),
            EXIT_USAGE,
        )
    shares = _pairs(smb_shares, "--smb-share", "HOSTPREFIX=SHARE") if smb_shares else None
    return SMBReader(
        settings.host,
        port=smb_port,
        username=settings.username,
        password=settings.password,
        shares=shares,
        encrypt=smb_encrypt,
    )


def build_writer(
    settings: ConnectionSettings,
    *,
    smb_port: int = 445,
    smb_shares: list[str] | None = None,
    smb_encrypt: bool = True,
) -> SMBWriter:
    """How files are written onto the host: SMB, with the connection's account."""
    if not settings.username or settings.password is None:
        fail(
            ConfigError(
                "Files are written onto the host over SMB with the connection's user and "
                "password; give --username and a password."
            ),
            EXIT_USAGE,
        )
    shares = _pairs(smb_shares, "--smb-share", "HOSTPREFIX=SHARE") if smb_shares else None
    return SMBWriter(
        settings.host,
        port=smb_port,
        username=settings.username,
        password=settings.password,
        shares=shares,
        encrypt=smb_encrypt,
    )


def _pairs(values: list[str], option: str, shape: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in values:
        prefix, sep, target = pair.partition("=")
        if not sep or not prefix or not target:
            fail(ConfigError(f"{option} {pair!r}: expected {shape}"), EXIT_USAGE)
        mapping[prefix] = target
    return mapping


_CONNECTION_OPTIONS: dict[str, tuple[Any, Any]] = {
    "host": (HostOpt, inspect.Parameter.empty),
    "port": (PortOpt, None),
    "auth": (AuthOpt, "negotiate"),
    "username": (UserOpt, None),
    "password": (PasswordOpt, None),
    "no_tls": (NoTlsOpt, False),
    "ca_bundle": (CaOpt, None),
    "insecure": (InsecureOpt, False),
    "script_timeout": (TimeoutOpt, 300.0),
    "connect_timeout": (ConnectTimeoutOpt, 30.0),
    "operation_timeout": (OperationTimeoutOpt, 20),
}

# Options that exclude each other. When both have a value from different levels (a flag and
# the configuration file, say), the higher level wins: `--to` on the command line beats the
# file's repository; VM names on the command line beat the file's `all = true`.
_EXCLUSIVE = {
    "backup": (("to", "repo"), ("names", "all_vms")),
    "plan": (("names", "all_vms"),),
}


def with_connection(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command`` the connection options; it receives ``settings`` built from them.

    typer reads a command's options from its signature, so the wrapper presents the
    command's own parameters (minus ``settings``) followed by the shared connection ones.
    """
    return _with_connection(command, optional=False)


def with_optional_connection(command: Callable[..., None]) -> Callable[..., None]:
    """Like :func:`with_connection` for a command that needs a host only sometimes.

    ``--host`` is optional; the command receives ``connect``: None without ``--host``, else
    a function that builds the settings — called only when the host is needed, so that a
    command that does not need it never prompts for its password.
    """
    return _with_connection(command, optional=True)


def _with_connection(command: Callable[..., None], *, optional: bool) -> Callable[..., None]:
    injected = "connect" if optional else "settings"
    options = dict(_CONNECTION_OPTIONS)
    if optional:
        options["host"] = (OptionalHostOpt, None)
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != injected]
    shared = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=default)
        for name, (kind, default) in options.items()
    ]
    context = inspect.Parameter(_CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)

    @functools.wraps(command)
    def wrapper(**values: Any) -> None:
        _settle_exclusive(values.pop(_CONTEXT), _EXCLUSIVE.get(command.__name__, ()), values)
        connection = {name: values.pop(name) for name in options}
        if not optional:
            command(settings=build_settings(**connection), **values)
            return
        connect = (
            None if connection["host"] is None else functools.partial(build_settings, **connection)
        )
        command(connect=connect, **values)

    keyword_only = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
    parameters = [*keyword_only, *shared, context]
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    return wrapper


_CONTEXT = "_hyperv_backup_context"


def _settle_exclusive(
    ctx: typer.Context, pairs: tuple[tuple[str, str], ...], values: dict[str, Any]
) -> None:
    """Of two exclusive options set at different levels, drop the lower one's value."""
    for first, second in pairs:
        if not (values.get(first) and values.get(second)):
            continue
        ranks = {name: source_rank(ctx, name) for name in (first, second)}
        if ranks[first] != ranks[second]:
            loser = min(ranks, key=ranks.__getitem__)
            values[loser] = False if isinstance(values[loser], bool) else None
