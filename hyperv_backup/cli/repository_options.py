"""Where the repository is and how to unlock it: shared by every repository command."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from hyperv_backup.cli.console import fail
from hyperv_backup.cli.file_settings import active_config
from hyperv_backup.errors import ConfigError, HyperVBackupError
from hyperv_backup.repository import Repository
from hyperv_backup.results import EXIT_USAGE
from hyperv_backup.targets import LocalTarget, S3Settings, S3Target, Target

__all__ = [
    "REPO_PASSWORD_ENV",
    "RepositoryOptions",
    "make_target",
    "open_repository",
    "read_password",
]

REPO_PASSWORD_ENV = "HYPERV_BACKUP_REPO_PASSWORD"  # noqa: S105  # a variable's name
"""The environment variable holding the repository password."""

RepoOpt = Annotated[
    str,
    typer.Option(
        "--repo",
        help="Repository: a folder, or s3://BUCKET/PREFIX.",
        envvar="HYPERV_BACKUP_REPO",
        show_envvar=True,
    ),
]
S3EndpointOpt = Annotated[
    str | None,
    typer.Option(
        help="S3-compatible endpoint URL (default: AWS).", envvar="HYPERV_BACKUP_S3_ENDPOINT"
    ),
]
S3RegionOpt = Annotated[
    str | None, typer.Option(help="S3 region.", envvar="HYPERV_BACKUP_S3_REGION")
]
S3ProfileOpt = Annotated[
    str | None,
    typer.Option(
        help="AWS profile for the S3 credentials (default: the chain).",
        envvar="HYPERV_BACKUP_S3_PROFILE",
    ),
]
PasswordFileOpt = Annotated[
    Path | None,
    typer.Option(
        help="File holding the repository password (else HYPERV_BACKUP_REPO_PASSWORD, else "
        "the configuration file's reference, else a prompt).",
        exists=True,
        dir_okay=False,
    ),
]


class RepositoryOptions:
    """The repository options of one command line."""

    def __init__(
        self,
        repo: str,
        s3_endpoint: str | None = None,
        s3_region: str | None = None,
        s3_profile: str | None = None,
        password_file: Path | None = None,
    ) -> None:
        self.repo = repo
        self.s3_endpoint = s3_endpoint
        self.s3_region = s3_region
        self.s3_profile = s3_profile
        self.password_file = password_file


def make_target(options: RepositoryOptions) -> Target:
    """A local or S3 target for ``--repo``."""
    if not options.repo.startswith("s3://"):
        return LocalTarget(Path(options.repo))
    bucket, _, prefix = options.repo.removeprefix("s3://").partition("/")
    try:
        settings = S3Settings(
            bucket=bucket,
            prefix=prefix.strip("/"),
            endpoint_url=options.s3_endpoint,
            region=options.s3_region,
            profile=options.s3_profile,
        )
    except ValidationError as error:
        problems = "; ".join(e["msg"] for e in error.errors())
        fail(ConfigError(f"--repo {options.repo!r}: {problems}"), EXIT_USAGE)
    return S3Target(settings)


def read_password(options: RepositoryOptions, *, confirm: bool = False) -> str | None:
    """The password from ``--password-file``, the environment, the configuration file's
    reference, or a prompt (on a terminal); a reference that fails exits 2."""
    if options.password_file is not None:
        return options.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    from_env = os.environ.get(REPO_PASSWORD_ENV)
    if from_env:
        return from_env
    active = active_config()
    reference = active.password_reference("repository") if active is not None else None
    if reference is not None:
        try:
            return reference.reveal()
        except ConfigError as error:
            fail(error, EXIT_USAGE)
    if sys.stdin.isatty():
        return str(
            typer.prompt(
                "Repository password", hide_input=True, confirmation_prompt=confirm, err=True
            )
        )
    return None


def open_repository(options: RepositoryOptions) -> Repository:
    """Open the repository or exit with a clear error (wrong password: exit 1)."""
    try:
        target = make_target(options)
        return Repository.open(target, read_password(options))
    except HyperVBackupError as error:
        fail(error)
