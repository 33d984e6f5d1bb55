"""What a finished backup job tells monitoring: a JSON report, Prometheus metrics, a webhook.

- :func:`write_job_report` writes a :class:`JobReport` (a small envelope around the
  :class:`~hyperv_backup.results.JobResult`) as JSON, atomically.
- :func:`write_metrics` updates a file for node_exporter's textfile collector, atomically,
  keeping the last success times of earlier runs while jobs fail.
- :func:`send_webhook` POSTs the report to a URL when the job did not fully succeed (or
  always), retrying connection errors and 5xx answers; it never raises for the network.
- :class:`Monitoring` does all three as configured, after a job, and never lets a monitoring
  problem turn a backup into a failure: problems come back as warnings.
- :func:`failed_job_result` stands in for the result of a job that raised before any VM, so
  that monitoring records the failure too.

``docs/monitoring.md`` describes the report's shape, every metric, alert rules and the
webhook payload.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from hyperv_backup.job_report import (
    REPORT_SCHEMA_VERSION,
    JobReport,
    MonitoringError,
    VMSummary,
    failed_job_result,
    write_job_report,
)
from hyperv_backup.metrics import METRIC_FAMILIES, render_metrics, write_metrics
from hyperv_backup.results import JobResult
from hyperv_backup.webhook import Webhook, WebhookDelivery, WebhookOn, send_webhook

__all__ = [
    "METRIC_FAMILIES",
    "REPORT_SCHEMA_VERSION",
    "JobReport",
    "Monitoring",
    "MonitoringError",
    "MonitoringOutcome",
    "VMSummary",
    "Webhook",
    "WebhookDelivery",
    "WebhookOn",
    "failed_job_result",
    "render_metrics",
    "send_webhook",
    "write_job_report",
    "write_metrics",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitoringOutcome:
    """What :meth:`Monitoring.publish` did: warnings for a person, the webhook's fate."""

    warnings: list[str] = field(default_factory=list)
    webhook: WebhookDelivery | None = None

    @property
    def ok(self) -> bool:
        """Every configured output was written or delivered."""
        return not self.warnings


class Monitoring(BaseModel):
    """The monitoring outputs of a job: any of a report file, a metrics file and a webhook.

    ``job_name`` tells jobs apart in the metrics (label ``backup_job``) when several back up
    the same host, or share one metrics file.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    report_file: Path | None = None
    metrics_file: Path | None = None
    job_name: str = Field(default="default", min_length=1)
    webhook: Webhook | None = None

    @property
    def enabled(self) -> bool:
        """Any output configured."""
        return bool(self.report_file or self.metrics_file or self.webhook)

    def publish(self, result: JobResult) -> MonitoringOutcome:
        """Write the files and call the webhook, as configured. Never raises for a file or
        the network: the backup stays what it was, and the outcome lists what went wrong."""
        report = JobReport.of(result)
        warnings: list[str] = []
        if self.report_file is not None:
            try:
                write_job_report(result, self.report_file, report=report)
            except MonitoringError as err:
                logger.warning("job report: %s", err)
                warnings.append(f"job report not written: {err}")
        if self.metrics_file is not None:
            try:
                write_metrics(result, self.metrics_file, job_name=self.job_name)
            except MonitoringError as err:
                logger.warning("metrics: %s", err)
                warnings.append(f"metrics not written: {err}")
        delivery = None
        if self.webhook is not None:
            delivery = send_webhook(result, self.webhook, report=report)
            if delivery.sent and not delivery.delivered and delivery.error:
                warnings.append(delivery.error)
        return MonitoringOutcome(warnings=warnings, webhook=delivery)
