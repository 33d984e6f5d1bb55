"""Command-line settings the examples share: the host, how its disks are read, the repository.

Every example is a standalone script on the public API; this module only turns flags and
environment variables into the library's settings objects. Copy it along with the example you
adapt. Secrets come from the environment, never from flags (flags show in ``ps`` and in the
shell history):

- ``HYPERV_BACKUP_PASSWORD``: the host account's password (WinRM, and SMB for disk data);
- ``HYPERV_BACKUP_REPO_PASSWORD``: the repository's password;
- ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or ``--s3-profile``, or an instance role):
  S3 credentials, found by boto3's usual chain.

The names are the ``hyperv-backup`` command's, so a scheduler's environment serves both.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import SecretStr, ValidationError

from hyperv_backup import (
    ConfigError,
    ConnectionSettings,
    FileReader,
    HyperVBackupError,
    LocalPathReader,
    SMBReader,
    SMBWriter,
)
from hyperv_backup.repository import Repository

# The CLI's exit codes: hyperv_backup does not re-export them (yet).
from hyperv_backup.results import EXIT_FAILURE, EXIT_PARTIAL, EXIT_USAGE
from hyperv_backup.targets import LocalTarget, S3Settings, S3Target, Target

__all__ = [
    "EXIT_FAILURE",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "add_host_arguments",
    "add_reader_arguments",
    "add_repository_arguments",
    "connection_settings",
    "file_reader",
    "file_writer",
    "open_repository",
    "repository_password",
    "run",
]

logger = logging.getLogger("examples")


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


# --- the host -----------------------------------------------------------------------------------


def add_host_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """``--host``, ``--port``, ``--auth``, ``--username``, TLS and ``--state-dir``."""
    group = parser.add_argument_group("Hyper-V host (password: $HYPERV_BACKUP_PASSWORD)")
    group.add_argument(
        "--host",
        default=_env("HYPERV_BACKUP_HOST"),
        required=required and not _env("HYPERV_BACKUP_HOST"),
        help="host name or address (env HYPERV_BACKUP_HOST)",
    )
    group.add_argument("--port", type=int, help="WinRM port (default 5986, 5985 with --no-tls)")
    group.add_argument(
        "--auth",
        default="negotiate",
        choices=["negotiate", "ntlm", "kerberos", "basic", "credssp"],
        help="WinRM authentication (default negotiate: Kerberos, else NTLM)",
    )
    group.add_argument(
        "-u",
        "--username",
        default=_env("HYPERV_BACKUP_USERNAME"),
        help="DOMAIN\\user or user@domain (env HYPERV_BACKUP_USERNAME)",
    )
    group.add_argument("--no-tls", action="store_true", help="plain HTTP (port 5985)")
    group.add_argument("--ca-bundle", type=Path, help="PEM file of the CA of the host's cert")
    group.add_argument(
        "--state-dir",
        type=Path,
        default=_env("HYPERV_BACKUP_STATE_DIR"),
        help="journal of what a run holds on the host (default $XDG_STATE_HOME/hyperv-backup)",
    )


def connection_settings(args: argparse.Namespace) -> ConnectionSettings:
    """Validated settings for the host, or :class:`ConfigError` saying what is wrong."""
    if not args.host:
        raise ConfigError("Give the Hyper-V host: --host NAME (or set HYPERV_BACKUP_HOST).")
    password = _env("HYPERV_BACKUP_PASSWORD")
    try:
        return ConnectionSettings(
            host=args.host,
            port=args.port,
            auth=args.auth,
            username=args.username,
            password=SecretStr(password) if password is not None else None,
            use_tls=not args.no_tls,
            ca_bundle=args.ca_bundle,
        )
    except ValidationError as error:
        problems = "; ".join(e["msg"].removeprefix("Value error, ") for e in error.errors())
        raise ConfigError(
            f"Invalid host settings: {problems.rstrip('.')}. "
            "(The password is read from HYPERV_BACKUP_PASSWORD.)"
        ) from None


# --- reading the host's disks, writing onto it --------------------------------------------------


def add_reader_arguments(parser: argparse.ArgumentParser, *, path_map: bool = True) -> None:
    """``--smb-port``, ``--smb-no-encryption`` and (unless told not to) ``--path-map``."""
    group = parser.add_argument_group("disk data (SMB with the host account by default)")
    group.add_argument("--smb-port", type=int, default=445, help="SMB port (default 445)")
    group.add_argument(
        "--smb-no-encryption", action="store_true", help="do not encrypt SMB (SMB 3 encrypts)"
    )
    if not path_map:
        return
    group.add_argument(
        "--path-map",
        action="append",
        default=[],
        metavar="HOSTPREFIX=LOCALDIR",
        help="read host files through a local mount instead of SMB, e.g. 'D:\\=/mnt/hv01-d' "
        "(repeatable)",
    )


def _smb_login(settings: ConnectionSettings) -> tuple[str, SecretStr]:
    if not settings.username or settings.password is None:
        raise ConfigError(
            "SMB logs in with the host account: give --username and HYPERV_BACKUP_PASSWORD "
            "(or --path-map to read local mounts of the host's volumes)."
        )
    return settings.username, settings.password


@contextmanager
def file_reader(args: argparse.Namespace, settings: ConnectionSettings) -> Iterator[FileReader]:
    """How the backup reads the host's files: local mounts (``--path-map``), else SMB."""
    if args.path_map:
        mapping = {}
        for pair in args.path_map:
            prefix, sep, folder = pair.partition("=")
            if not (sep and prefix and folder):
                raise ConfigError(f"--path-map {pair!r}: expected HOSTPREFIX=LOCALDIR")
            mapping[prefix] = Path(folder)
        yield LocalPathReader(mapping)
        return
    username, password = _smb_login(settings)
    with SMBReader(
        settings.host,
        port=args.smb_port,
        username=username,
        password=password,
        encrypt=not args.smb_no_encryption,
    ) as reader:
        yield reader


def file_writer(args: argparse.Namespace, settings: ConnectionSettings) -> SMBWriter:
    """How a restore writes onto the host: SMB with the host account (a context manager)."""
    username, password = _smb_login(settings)
    return SMBWriter(
        settings.host,
        port=args.smb_port,
        username=username,
        password=password,
        encrypt=not args.smb_no_encryption,
    )


# --- the repository ----------------------------------------------------------------------------


def add_repository_arguments(parser: argparse.ArgumentParser) -> None:
    """``--repo`` (a folder or ``s3://BUCKET/PREFIX``) and the S3 options."""
    group = parser.add_argument_group("repository (password: $HYPERV_BACKUP_REPO_PASSWORD)")
    group.add_argument(
        "--repo",
        default=_env("HYPERV_BACKUP_REPO"),
        required=not _env("HYPERV_BACKUP_REPO"),
        help="a folder, or s3://BUCKET/PREFIX (env HYPERV_BACKUP_REPO)",
    )
    group.add_argument(
        "--s3-endpoint",
        default=_env("HYPERV_BACKUP_S3_ENDPOINT"),
        help="S3-compatible endpoint URL (default: AWS)",
    )
    group.add_argument("--s3-region", default=_env("HYPERV_BACKUP_S3_REGION"))
    group.add_argument("--s3-profile", help="AWS profile (default: boto3's credential chain)")


def _repository_target(args: argparse.Namespace) -> Target:
    if not args.repo.startswith("s3://"):
        return LocalTarget(Path(args.repo))
    bucket, _, prefix = args.repo.removeprefix("s3://").partition("/")
    try:
        settings = S3Settings(
            bucket=bucket,
            prefix=prefix,
            endpoint_url=args.s3_endpoint,
            region=args.s3_region,
            profile=args.s3_profile,
        )
    except ValidationError as error:
        raise ConfigError(f"--repo {args.repo!r}: {error.errors()[0]['msg']}") from None
    return S3Target(settings)


def repository_password() -> str:
    """``HYPERV_BACKUP_REPO_PASSWORD``; the examples only use encrypted repositories."""
    password = _env("HYPERV_BACKUP_REPO_PASSWORD")
    if password is None:
        raise ConfigError(
            "Set HYPERV_BACKUP_REPO_PASSWORD to the repository's password (keep it elsewhere "
            "too: without it the backups cannot be read)."
        )
    return password


@contextmanager
def open_repository(args: argparse.Namespace, *, create: bool = False) -> Iterator[Repository]:
    """The repository of ``--repo`` (with ``create``: made on first use); closed on exit."""
    target = _repository_target(args)
    try:
        if create and not Repository.exists(target):
            logger.info("no repository at %s yet: creating an encrypted one", args.repo)
            repository = Repository.init(target, repository_password())
        else:
            repository = Repository.open(target, repository_password())
        with repository:  # on exit: uploads finished, index written, locks released
            yield repository
    finally:
        target.close()


# --- running -----------------------------------------------------------------------------------


def run(main: Callable[[], int]) -> None:
    """Log to stderr, run ``main`` and exit with its code: 2 for bad settings, 1 for errors."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The transports log every connection and request at INFO: only their warnings matter.
    for chatty in ("botocore", "pypsrp", "smbprotocol", "spnego", "urllib3"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        code = main()
    except ConfigError as error:
        logger.error("%s", error)
        code = EXIT_USAGE
    except HyperVBackupError as error:
        logger.error("%s: %s", type(error).__name__, error)
        code = EXIT_FAILURE
    sys.exit(code)
