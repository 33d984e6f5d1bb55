"""Monitoring after a backup: the JSON report file, the Prometheus textfile, the webhook.

The results are real: jobs run against the simulator (pypsrp → emulated host → files). The
metrics are read back with prometheus_client's own parser, as Prometheus would read them;
the webhook goes to a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

import hyperv_backup
from hyperv_backup import (
    BackupJob,
    BackupPolicy,
    ConnectionSettings,
    DirectorySink,
    JobReport,
    JobResult,
    JobStatus,
    LocalPathReader,
    Monitoring,
    RetryPolicy,
    Selection,
    Webhook,
    WebhookOn,
    failed_job_result,
    render_metrics,
    send_webhook,
    write_job_report,
    write_metrics,
)
from hyperv_backup.cli import app
from hyperv_backup.exposition import Sample, format_families, parse_samples
from hyperv_backup.metrics import METRIC_FAMILIES
from hyperv_backup.repository import Repository
from hyperv_backup.repository.lock import acquire_exclusive
from hyperv_backup.simulator import FaultSpec, Simulator
from hyperv_backup.targets import LocalTarget

MiB = 2**20
ODD_NAME = 'O\'Brien; $(Remove-Item C:\\) "ü"'
FAST_RETRY = RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, deadline=30, jitter=False)


def vm(name: str) -> dict[str, object]:
    """A small running VM with one 1 MiB disk."""
    disk = {"file": {"path": rf"D:\VMs\{name}\{name}.vhdx", "size": "60 GiB", "file_size": MiB}}
    return {"name": name, "disks": [disk]}


@dataclass
class Runs:
    """Three nights of one host, in order: all good, web failed, host unreachable."""

    sim: Simulator
    ok: JobResult
    partial: JobResult
    unreachable: JobResult
    backups: Path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    folder = tmp_path_factory.mktemp("monitoring")
    with Simulator({"vms": [vm("web"), vm(ODD_NAME)]}) as sim:

        def run(settings: ConnectionSettings | None = None) -> JobResult:
            job = BackupJob(
                settings or sim.connection_settings(),
                BackupPolicy(retry=FAST_RETRY),
                sink=DirectorySink(folder / "backups"),
                reader=LocalPathReader(sim.path_map()),
                state_dir=folder / "state",
            )
            return job.run(Selection(all=True))

        # Night 1: web meets Hyper-V Replica once and is retried; everything succeeds.
        sim.add_fault(
            FaultSpec(script="new-backup-checkpoint", action="conflicting_operation", vm="web")
        )
        ok = run()
        # Night 2: web's checkpoint fails; the other VM is backed up.
        sim.add_fault(
            FaultSpec(script="new-backup-checkpoint", action="fail", message="boom", vm="web")
        )
        partial = run()
        # Night 3: the host refuses the credentials: the job fails before any VM.
        wrong = sim.connection_settings().model_copy(update={"password": SecretStr("nope")})
        unreachable = run(wrong)
        yield Runs(sim, ok, partial, unreachable, folder / "backups")


def test_the_three_nights_are_what_the_monitoring_tests_assume(runs: Runs) -> None:
    assert runs.ok.status == JobStatus.SUCCESS, [(v.vm_name, v.error) for v in runs.ok.vms]
    assert runs.partial.status == JobStatus.PARTIAL
    assert runs.unreachable.status == JobStatus.FAILED
    assert runs.unreachable.vms == []
    assert "refused the credentials" in (runs.unreachable.error or "")


# --- the JSON report ---------------------------------------------------------------------------


def test_report_file_is_the_full_result_in_an_envelope(runs: Runs, tmp_path: Path) -> None:
    path = write_job_report(runs.ok, tmp_path / "reports" / "last.json")
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["schema_version"] == 1
    assert document["tool"] == "hyperv-backup"
    assert document["tool_version"] == hyperv_backup.__version__
    assert document["reported_by"] == socket.gethostname()
    assert document["host"] == runs.ok.host
    assert document["job_id"] == runs.ok.job_id
    assert (document["status"], document["exit_code"]) == ("success", 0)
    assert document["finished_at"].startswith(str(runs.ok.finished_at.date()))  # type: ignore[union-attr]
    assert JobResult.model_validate(document["result"]) == runs.ok
    summaries = {v["name"]: v for v in document["vms"]}
    assert set(summaries) == {"web", ODD_NAME}  # the odd name verbatim, not mangled
    assert summaries["web"]["retries"] == 1
    for summary in summaries.values():
        # Where the backup lies: its folder, with the VM's own report written last.
        assert (Path(summary["location"]) / "backup.json").is_file()
    assert JobReport.model_validate_json(path.read_text(encoding="utf-8")).vms[0].status


def test_report_of_a_failed_vm_has_its_error_and_no_location(runs: Runs, tmp_path: Path) -> None:
    document = json.loads(write_job_report(runs.partial, tmp_path / "r.json").read_text())
    assert (document["status"], document["exit_code"]) == ("partial", 3)
    web = next(v for v in document["vms"] if v["name"] == "web")
    assert web["status"] == "failed"
    assert web["location"] is None
    assert "boom" in web["error"]


def test_report_of_a_repository_backup_names_the_snapshot(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("db")]})
    repository = Repository.init(LocalTarget(tmp_path / "repo"), chunk_size=64 * 1024)
    with repository:
        result = BackupJob(
            sim.connection_settings(),
            BackupPolicy(retry=FAST_RETRY),
            sink=repository,
            reader=LocalPathReader(sim.path_map()),
            state_dir=tmp_path / "state",
        ).run(Selection(all=True))
        snapshot = repository.snapshots(vm="db")[0]
    document = json.loads(write_job_report(result, tmp_path / "r.json").read_text())
    assert document["vms"][0]["location"] == f"{repository.id}:{snapshot.id}"


def test_report_is_replaced_atomically_keeping_its_mode(runs: Runs, tmp_path: Path) -> None:
    path = tmp_path / "last.json"
    write_job_report(runs.ok, path)
    path.chmod(0o640)
    with path.open(encoding="utf-8") as reader_of_the_old_file:
        write_job_report(runs.partial, path)
        # A reader that opened the old report still reads all of it: the new one was renamed
        # over it, not written into it.
        assert json.load(reader_of_the_old_file)["job_id"] == runs.ok.job_id
    assert json.loads(path.read_text())["job_id"] == runs.partial.job_id
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.json"]  # no temporary left


def test_new_files_are_readable_by_node_exporter(runs: Runs, tmp_path: Path) -> None:
    assert write_job_report(runs.ok, tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
    assert write_metrics(runs.ok, tmp_path / "m.prom").stat().st_mode & 0o777 == 0o644


# --- the Prometheus textfile -------------------------------------------------------------------


def samples_of(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample by metric name, as Prometheus' own parser reads the file."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge", family.name
        assert family.documentation, family.name
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(text: str, name: str, **labels: str) -> float:
    matches = [v for got, v in samples_of(text).get(name, []) if labels.items() <= got.items()]
    assert len(matches) == 1, (name, labels, matches)
    return matches[0]


def test_metrics_of_a_good_night_parse_and_say_what_happened(runs: Runs, tmp_path: Path) -> None:
    text = write_metrics(runs.ok, tmp_path / "hyperv.prom").read_text(encoding="utf-8")
    found = samples_of(text)
    assert set(found) == {f.name for f in METRIC_FAMILIES}
    for family in METRIC_FAMILIES:
        assert f"# HELP {family.name} " in text
        assert f"# TYPE {family.name} gauge" in text
    job = {"host": runs.ok.host, "backup_job": "default"}
    finished = runs.ok.finished_at.timestamp()  # type: ignore[union-attr]
    assert value(text, "hyperv_backup_last_run_timestamp_seconds", **job) == finished
    assert value(text, "hyperv_backup_last_success_timestamp_seconds", **job) == finished
    assert value(text, "hyperv_backup_job_status", **job) == 0
    assert value(text, "hyperv_backup_job_bytes", **job) == sum(v.bytes for v in runs.ok.vms) > 0
    assert value(text, "hyperv_backup_job_vms", status="success") == 2
    assert value(text, "hyperv_backup_job_vms", status="failed") == 0
    web = next(v for v in runs.ok.vms if v.vm_name == "web")
    assert value(text, "hyperv_backup_vm_status", vm="web", vm_id=web.vm_id) == 0
    assert value(text, "hyperv_backup_vm_retries", vm="web") == 1
    assert value(text, "hyperv_backup_vm_bytes", vm="web") == web.bytes
    assert value(text, "hyperv_backup_vm_duration_seconds", vm="web") == pytest.approx(
        web.duration_seconds
    )


def test_an_odd_vm_name_survives_the_exposition_format_exactly(runs: Runs, tmp_path: Path) -> None:
    text = write_metrics(runs.ok, tmp_path / "hyperv.prom").read_text(encoding="utf-8")
    # Backslash and quote escaped; the name reads back byte for byte.
    assert 'vm="O\'Brien; $(Remove-Item C:\\\\) \\"ü\\""' in text
    assert value(text, "hyperv_backup_vm_status", vm=ODD_NAME) == 0
    strange = 'line one\nline "two" \\ } ,x="y"'
    rendered = format_families(
        METRIC_FAMILIES[:1], [Sample.of(METRIC_FAMILIES[0].name, {"host": strange}, 1.5)]
    )
    assert value(rendered, METRIC_FAMILIES[0].name, host=strange) == 1.5
    assert [s.label("host") for s in parse_samples(rendered)] == [strange]


def test_failed_nights_keep_the_last_success_times(runs: Runs, tmp_path: Path) -> None:
    path = tmp_path / "hyperv.prom"
    job = {"host": runs.ok.host, "backup_job": "default"}
    night1 = runs.ok.finished_at.timestamp()  # type: ignore[union-attr]
    write_metrics(runs.ok, path)
    web_night1 = value(
        path.read_text(), "hyperv_backup_vm_last_success_timestamp_seconds", vm="web"
    )

    text = write_metrics(runs.partial, path).read_text()
    assert value(text, "hyperv_backup_job_status", **job) == 3
    assert value(text, "hyperv_backup_last_run_timestamp_seconds", **job) > night1
    assert value(text, "hyperv_backup_last_success_timestamp_seconds", **job) == night1
    assert value(text, "hyperv_backup_vm_status", vm="web") == 1
    assert value(text, "hyperv_backup_vm_last_success_timestamp_seconds", vm="web") == web_night1
    odd_night2 = value(text, "hyperv_backup_vm_last_success_timestamp_seconds", vm=ODD_NAME)
    assert odd_night2 > web_night1

    text = write_metrics(runs.unreachable, path).read_text()
    assert value(text, "hyperv_backup_job_status", **job) == 1
    assert value(text, "hyperv_backup_job_vms", status="success") == 0
    assert value(text, "hyperv_backup_last_success_timestamp_seconds", **job) == night1
    # No VM was reached: their last success times stay for the "no backup in 26 h" alerts.
    assert value(text, "hyperv_backup_vm_last_success_timestamp_seconds", vm="web") == web_night1
    assert value(text, "hyperv_backup_vm_last_success_timestamp_seconds", vm=ODD_NAME) == (
        odd_night2
    )
    assert "hyperv_backup_vm_status" not in samples_of(text)


def test_a_job_that_never_succeeded_reports_its_last_success_as_zero(runs: Runs) -> None:
    text = render_metrics(runs.partial)
    assert value(text, "hyperv_backup_last_success_timestamp_seconds") == 0
    assert value(text, "hyperv_backup_vm_last_success_timestamp_seconds", vm="web") == 0


def test_jobs_of_other_names_and_hosts_share_the_file(runs: Runs, tmp_path: Path) -> None:
    path = tmp_path / "hyperv.prom"
    path.write_text(
        "# a line someone added\n"
        'hyperv_backup_job_status{host="hv02",backup_job="default"} 1\n'
        "some_other_metric 5\n"
        "hyperv_backup_job_status{broken\n"
    )
    write_metrics(runs.ok, path, job_name="nightly")
    text = write_metrics(runs.partial, path, job_name="weekly").read_text()
    host = runs.ok.host
    assert value(text, "hyperv_backup_job_status", host=host, backup_job="nightly") == 0
    assert value(text, "hyperv_backup_job_status", host=host, backup_job="weekly") == 3
    assert value(text, "hyperv_backup_job_status", host="hv02") == 1
    assert "some_other_metric" not in text  # the file belongs to hyperv-backup


# --- the webhook -------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: Message
    body: bytes


@dataclass
class HookServer:
    url: str
    statuses: list[int]
    received: list[Received] = field(default_factory=list)


@contextmanager
def hook_server(*statuses: int) -> Iterator[HookServer]:
    """An HTTP server on 127.0.0.1 answering POSTs with ``statuses`` in turn, then 200."""
    server_state = HookServer(url="", statuses=list(statuses))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            server_state.received.append(Received(self.path, self.headers, body))
            status = server_state.statuses.pop(0) if server_state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server_state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/T0KEN-in-path"
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_webhook_retries_a_500_and_delivers_the_report(runs: Runs) -> None:
    with hook_server(500) as server:
        hook = Webhook(
            url=server.url, retry=FAST_RETRY, headers={"Authorization": SecretStr("Bearer s3cret")}
        )
        delivery = send_webhook(runs.partial, hook)
    assert (delivery.sent, delivery.delivered, delivery.attempts) == (True, True, 2)
    assert delivery.status_code == 200
    assert len(server.received) == 2
    request = server.received[-1]
    assert request.path == "/hooks/T0KEN-in-path"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Authorization"] == "Bearer s3cret"
    payload = json.loads(request.body)
    assert (payload["job_id"], payload["status"], payload["exit_code"]) == (
        runs.partial.job_id,
        "partial",
        3,
    )
    assert JobResult.model_validate(payload["result"]) == runs.partial


def test_webhook_on_failure_stays_quiet_after_a_good_night(runs: Runs) -> None:
    with hook_server() as server:
        quiet = send_webhook(runs.ok, Webhook(url=server.url, retry=FAST_RETRY))
        told = send_webhook(runs.unreachable, Webhook(url=server.url, retry=FAST_RETRY))
        always = send_webhook(
            runs.ok, Webhook(url=server.url, on=WebhookOn.ALWAYS, retry=FAST_RETRY)
        )
    assert (quiet.sent, told.delivered, always.delivered) == (False, True, True)
    assert [json.loads(r.body)["status"] for r in server.received] == ["failed", "success"]


def test_webhook_refusal_is_not_retried(runs: Runs) -> None:
    with hook_server(404) as server:
        delivery = send_webhook(runs.partial, Webhook(url=server.url, retry=FAST_RETRY))
    assert (delivery.delivered, delivery.attempts, delivery.status_code) == (False, 1, 404)
    assert len(server.received) == 1
    assert "HTTP 404" in (delivery.error or "")
    assert "T0KEN" not in (delivery.error or "")  # the URL's path may hold a token


def test_unreachable_webhook_does_not_fail_the_backup(runs: Runs, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/hooks/T0KEN"
    monitoring = Monitoring(
        report_file=tmp_path / "last.json",
        metrics_file=tmp_path / "hyperv.prom",
        webhook=Webhook(url=url, on=WebhookOn.ALWAYS, retry=FAST_RETRY, timeout=2),
    )
    outcome = monitoring.publish(runs.ok)
    assert outcome.webhook is not None
    assert (outcome.webhook.sent, outcome.webhook.delivered) == (True, False)
    assert outcome.webhook.attempts == FAST_RETRY.attempts
    assert len(outcome.warnings) == 1
    assert "not delivered after 3 attempts" in outcome.warnings[0]
    assert "T0KEN" not in outcome.warnings[0]
    # The backup is what it was, and the files were written all the same.
    assert runs.ok.exit_code == 0
    assert json.loads((tmp_path / "last.json").read_text())["status"] == "success"
    assert value((tmp_path / "hyperv.prom").read_text(), "hyperv_backup_job_status") == 0


def test_a_file_that_cannot_be_written_is_a_warning(runs: Runs, tmp_path: Path) -> None:
    (tmp_path / "not-a-folder").write_text("")
    outcome = Monitoring(
        report_file=tmp_path / "not-a-folder" / "last.json",
        metrics_file=tmp_path / "not-a-folder" / "hyperv.prom",
    ).publish(runs.ok)
    assert len(outcome.warnings) == 2
    assert all("not-a-folder" in w for w in outcome.warnings)


def test_webhook_settings_are_checked_and_never_shown() -> None:
    with pytest.raises(ValidationError, match="http:// or https://"):
        Webhook(url="file:///etc/passwd")
    with pytest.raises(ValidationError, match="line break"):
        Webhook(url="https://h.example/", headers={"X-A": SecretStr("a\r\nInjected: 1")})
    hook = Webhook(url="https://user:pw@h.example:8443/T0KEN", headers={"A": SecretStr("s3")})
    for secret in ("T0KEN", "s3", "pw"):
        assert secret not in repr(hook)
    assert hook.redacted_url == "https://h.example:8443/…"


def test_a_job_that_raised_is_recorded_as_failed(tmp_path: Path) -> None:
    result = failed_job_result("hv01", RuntimeError("the repository is locked by prune"))
    assert result.exit_code == 1
    text = write_metrics(result, tmp_path / "hyperv.prom").read_text()
    assert value(text, "hyperv_backup_job_status", host="hv01") == 1
    report = json.loads(write_job_report(result, tmp_path / "r.json").read_text())
    assert report["error"] == "the repository is locked by prune"


# --- the command -------------------------------------------------------------------------------


def backup_args(sim: Simulator, tmp_path: Path) -> list[str]:
    """``backup --all`` of the simulator's host, reading its files through local folders."""
    maps = [a for d, f in sim.path_map().items() for a in ("--path-map", f"{d}={f}")]
    return [
        "backup",
        "--all",
        "--host",
        "127.0.0.1",
        "--port",
        str(sim.port),
        "--auth",
        "basic",
        "-u",
        sim.scenario.credentials.username,
        "--ca-bundle",
        str(sim.ca_pem),
        "--state-dir",
        str(tmp_path / "state"),
        *maps,
    ]


def test_backup_command_writes_report_and_metrics_and_calls_the_webhook(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("web"), vm(ODD_NAME)]})
    env = {"HYPERV_BACKUP_PASSWORD": sim.scenario.credentials.password, "HOOK_AUTH": "Bearer t0k"}
    report, metrics = tmp_path / "out" / "last.json", tmp_path / "textfile" / "hyperv.prom"
    with hook_server() as server:
        done = CliRunner().invoke(
            app,
            [
                *backup_args(sim, tmp_path),
                "--to",
                str(tmp_path / "backups"),
                "--report-file",
                str(report),
                "--metrics-file",
                str(metrics),
                "--job-name",
                "nightly",
                "--webhook-url",
                server.url,
                "--webhook-on",
                "always",
                "--webhook-header",
                "Authorization=HOOK_AUTH",
            ],
            env=env,
        )
    assert done.exit_code == 0, done.output
    document = json.loads(report.read_text(encoding="utf-8"))
    assert (document["status"], document["exit_code"]) == ("success", 0)
    assert {v["name"] for v in document["vms"]} == {"web", ODD_NAME}
    assert all(Path(v["location"]).is_dir() for v in document["vms"])
    text = metrics.read_text(encoding="utf-8")
    assert value(text, "hyperv_backup_job_status", backup_job="nightly", host="127.0.0.1") == 0
    assert value(text, "hyperv_backup_vm_status", vm=ODD_NAME) == 0
    [request] = server.received
    assert request.headers["Authorization"] == "Bearer t0k"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body)["job_id"] == document["job_id"]
    assert "t0k" not in done.output + done.stderr

    # A webhook that cannot be reached: a warning on stderr, the backup still succeeds.
    unreachable = CliRunner().invoke(
        app,
        [
            *backup_args(sim, tmp_path),
            "--to",
            str(tmp_path / "backups"),
            "--webhook-url",
            f"http://127.0.0.1:{free_port()}/T0KEN",
            "--webhook-on",
            "always",
        ],
        env=env,
    )
    assert unreachable.exit_code == 0, unreachable.output
    assert "warning: webhook to http://127.0.0.1:" in unreachable.stderr
    assert "exit code are unaffected" in unreachable.stderr
    assert "T0KEN" not in unreachable.stderr


def test_backup_that_cannot_start_is_recorded_as_failed_and_alerted(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("web")]})
    repository = Repository.init(LocalTarget(tmp_path / "repo"), "pw", scrypt_n=2**12)
    report, metrics = tmp_path / "last.json", tmp_path / "hyperv.prom"
    with repository, hook_server() as server:
        env = {
            "HYPERV_BACKUP_PASSWORD": sim.scenario.credentials.password,
            "HYPERV_BACKUP_REPO_PASSWORD": "pw",
            # All from the environment, as a scheduled task would set them.
            "HYPERV_BACKUP_REPORT_FILE": str(report),
            "HYPERV_BACKUP_METRICS_FILE": str(metrics),
            "HYPERV_BACKUP_WEBHOOK_URL": server.url,
        }
        args = [*backup_args(sim, tmp_path), "--repo", str(tmp_path / "repo")]
        good = CliRunner().invoke(app, args, env=env)
        assert good.exit_code == 0, good.output
        first_success = value(metrics.read_text(), "hyperv_backup_last_success_timestamp_seconds")
        assert server.received == []  # on failure only, by default
        with acquire_exclusive(repository.target, repository._codec, "prune"):
            locked = CliRunner().invoke(app, args, env=env)
    assert locked.exit_code == 1
    assert "locked exclusively by prune" in locked.stderr
    document = json.loads(report.read_text())
    assert (document["status"], document["exit_code"], document["vms"]) == ("failed", 1, [])
    assert "locked exclusively by prune" in document["error"]
    text = metrics.read_text()
    assert value(text, "hyperv_backup_job_status") == 1
    assert value(text, "hyperv_backup_last_success_timestamp_seconds") == first_success
    assert value(text, "hyperv_backup_vm_last_success_timestamp_seconds", vm="web") > 0
    [request] = server.received
    assert json.loads(request.body)["job_id"] == document["job_id"]


def test_a_repository_that_cannot_be_opened_is_a_failed_night_for_monitoring(
    make_simulator: Callable[..., Simulator], tmp_path: Path
) -> None:
    sim = make_simulator({"vms": [vm("web")]})
    Repository.init(LocalTarget(tmp_path / "repo"), "right", scrypt_n=2**12).close()
    report = tmp_path / "last.json"
    with hook_server() as server:
        env = {
            "HYPERV_BACKUP_PASSWORD": sim.scenario.credentials.password,
            "HYPERV_BACKUP_REPO_PASSWORD": "not-the-Secret-42",
            "HYPERV_BACKUP_REPORT_FILE": str(report),
            "HYPERV_BACKUP_WEBHOOK_URL": server.url,
        }
        args = [*backup_args(sim, tmp_path), "--repo", str(tmp_path / "repo")]
        result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 1
    assert "not-the-Secret-42" not in report.read_text()
    document = json.loads(report.read_text())
    assert (document["status"], document["exit_code"]) == ("failed", 1)
    assert "password" in document["error"]
    [request] = server.received
    assert json.loads(request.body)["status"] == "failed"
