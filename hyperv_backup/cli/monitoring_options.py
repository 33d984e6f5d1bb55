"""``backup``'s monitoring options: a report file, a metrics file, a webhook.

A monitoring output that fails (a file that cannot be written, a webhook that cannot be
reached) never changes what the backup did nor the exit code: it is shown on stderr as a
``warning:`` line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr, ValidationError

from hyperv_backup.cli.console import err, fail
from hyperv_backup.errors import ConfigError
from hyperv_backup.monitoring import Monitoring, Webhook, WebhookOn
from hyperv_backup.results import EXIT_USAGE, JobResult

__all__ = ["build_monitoring", "publish_monitoring"]

ReportFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--report-file",
        help="After the job, write its report (JSON) to this file, atomically; also when the "
        "job fails.",
        envvar="HYPERV_BACKUP_REPORT_FILE",
        show_envvar=True,
        dir_okay=False,
    ),
]
MetricsFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--metrics-file",
        help="After the job, update this Prometheus file (name it *.prom, in node_exporter's "
        "textfile collector folder).",
        envvar="HYPERV_BACKUP_METRICS_FILE",
        show_envvar=True,
        dir_okay=False,
    ),
]
JobNameOpt = Annotated[
    str,
    typer.Option(
        "--job-name",
        help="Tells jobs apart in the metrics (label backup_job) when several back up one host.",
        envvar="HYPERV_BACKUP_JOB_NAME",
    ),
]
WebhookUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--webhook-url",
        help="POST the job report (JSON) to this URL; better set HYPERV_BACKUP_WEBHOOK_URL "
        "when the URL holds a token.",
        envvar="HYPERV_BACKUP_WEBHOOK_URL",
        show_envvar=True,
    ),
]
WebhookOnOpt = Annotated[
    WebhookOn,
    typer.Option(
        "--webhook-on",
        help="failure: only when the job failed or partly failed; always: after every job.",
        envvar="HYPERV_BACKUP_WEBHOOK_ON",
    ),
]
WebhookHeaderOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--webhook-header",
        help="NAME=ENV_VAR: send header NAME with the value of the environment variable ENV_VAR "
        "(e.g. Authorization=HOOK_AUTH), so that no secret is on the command line. Repeatable.",
    ),
]


def build_monitoring(
    report_file: Path | None,
    metrics_file: Path | None,
    job_name: str,
    webhook_url: str | None,
    webhook_on: WebhookOn,
    webhook_headers: list[str] | None,
) -> Monitoring | None:
    """The job's monitoring outputs, or None without any; bad options exit 2."""
    try:
        if webhook_headers and webhook_url is None:
            raise ConfigError("--webhook-header needs --webhook-url (or HYPERV_BACKUP_WEBHOOK_URL)")
        webhook = None
        if webhook_url is not None:
            headers = dict(_header_from_environment(spec) for spec in webhook_headers or [])
            webhook = Webhook(url=webhook_url, on=webhook_on, headers=headers)
        monitoring = Monitoring(
            report_file=report_file, metrics_file=metrics_file, job_name=job_name, webhook=webhook
        )
    except ValidationError as error:
        # Only the messages: the input may be a URL with a token in it.
        problems = "; ".join(str(e["msg"]) for e in error.errors())
        fail(ConfigError(f"invalid monitoring options: {problems}"), EXIT_USAGE)
    except ConfigError as error:
        fail(error, EXIT_USAGE)
    return monitoring if monitoring.enabled else None


def _header_from_environment(spec: str) -> tuple[str, SecretStr]:
    name, sep, variable = spec.partition("=")
    name, variable = name.strip(), variable.strip()
    if not sep or not name or not variable:
        raise ConfigError(
            f"--webhook-header {spec!r}: write NAME=ENV_VAR, e.g. Authorization=HOOK_AUTH, "
            "with the header's value in the environment variable HOOK_AUTH"
        )
    value = os.environ.get(variable)
    if value is None:
        raise ConfigError(
            f"--webhook-header {name}={variable}: the environment variable {variable} is not set"
        )
    return name, SecretStr(value)


def publish_monitoring(monitoring: Monitoring | None, result: JobResult) -> None:
    """Write the report and metrics and call the webhook; show what failed as warnings."""
    if monitoring is None:
        return
    for warning in monitoring.publish(result).warnings:
        err().print(
            f"warning: {warning} (the backup's outcome and exit code are unaffected)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
