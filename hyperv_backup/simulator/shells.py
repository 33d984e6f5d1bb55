"""Runspace pools (WinRM shells) and their pipelines, on psrpcore's server-side state machines.

The HTTP layer hands this module the PSRP bytes of each WS-Management action; this module feeds
them to a :class:`psrpcore.ServerRunspacePool`, runs each pipeline's handler on a worker thread,
and keeps what psrpcore wants to send in one outbox per target (the pool, or a pipeline) until
a Receive for that target collects it. Every psrpcore object belongs to one shell and is only
touched under that shell's lock: psrpcore is not thread-safe.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from psrpcore import (
    CreatePipelineEvent,
    GetAvailableRunspacesEvent,
    GetCommandMetadataEvent,
    PowerShell,
    PSRPCoreError,
    PSRPPayload,
    ResetRunspaceStateEvent,
    ServerPipeline,
    ServerRunspacePool,
    SetMaxRunspacesEvent,
    SetMinRunspacesEvent,
    StreamType,
)
from psrpcore.types import PSInvocationState, RunspacePoolState

from hyperv_backup.simulator.invocation import error_record, invocation_from_pipeline, to_wire
from hyperv_backup.simulator.protocol import (
    DropConnection,
    ErrorRecordSpec,
    ScriptHandler,
    ScriptInvocation,
    ScriptOutcome,
)
from hyperv_backup.simulator.soap import WSManFault

__all__ = ["ConnectionDropped", "ReceiveResult", "Shell", "ShellInfo", "ShellRegistry"]

log = logging.getLogger(__name__)

# Size of the PSRP fragments psrpcore cuts outgoing messages into; Windows uses similar sizes.
_FRAGMENT_SIZE = 32 * 1024


class ConnectionDropped(Exception):  # noqa: N818 - an instruction to the HTTP layer
    """The Receive must not be answered: its TCP connection is to be cut (a dying WinRM)."""


@dataclass
class ReceiveResult:
    """What one Receive answers: PSRP fragment bytes, and whether the pipeline is done."""

    chunks: list[bytes]
    done: bool


@dataclass
class _Pipeline:
    server: ServerPipeline
    finished: bool = False


@dataclass(frozen=True)
class ShellInfo:
    """What WinRM reports about a shell: its id, owner, resource URI, client and streams."""

    shell_id: str
    username: str
    resource_uri: str
    client_ip: str
    streams: tuple[str, str]


class Shell:
    """One runspace pool: its psrpcore state, pipelines, outboxes and waiting Receives."""

    def __init__(
        self,
        info: ShellInfo,
        handler: ScriptHandler,
        on_drop: Callable[[str, uuid.UUID], None],
        start_worker: Callable[[threading.Thread], None],
    ) -> None:
        self.info = info
        self._handler = handler
        self._on_drop = on_drop
        self._start_worker = start_worker
        self._cond = threading.Condition()
        self._pool = ServerRunspacePool()
        self._pipelines: dict[uuid.UUID, _Pipeline] = {}
        self._outbox: dict[uuid.UUID | None, list[bytes]] = {}
        self._closed = False
        self._dropped = False

    # -- actions -------------------------------------------------------------------------------

    def open(self, creation: bytes) -> None:
        """Feed the Create's ``creationXml`` (SessionCapability + InitRunspacePool)."""
        with self._cond:
            self._feed(creation)
            if self._pool.state != RunspacePoolState.Opened:
                raise WSManFault.invalid("The creationXml did not open a runspace pool.")

    def command(self, command_id: uuid.UUID, data: bytes) -> None:
        """Start a pipeline: register it, then feed the (first part of the) CreatePipeline."""
        with self._cond:
            self._check_open()
            if command_id in self._pipelines:
                raise WSManFault.invalid(f"A command with CommandId {command_id} already exists.")
            # psrpcore looks the pipeline up when the CreatePipeline message arrives.
            pipeline = _Pipeline(ServerPipeline(self._pool, command_id))
            self._pipelines[command_id] = pipeline
            try:
                self._feed(data)
            except WSManFault:
                if pipeline.server.state == PSInvocationState.NotStarted:
                    pipeline.server.close()
                    del self._pipelines[command_id]
                raise

    def send(self, command_id: uuid.UUID | None, data: bytes) -> None:
        """Feed more PSRP data: the rest of a large CreatePipeline, or pool messages."""
        with self._cond:
            self._check_open()
            if command_id is not None and command_id not in self._pipelines:
                raise self._command_not_found(command_id)
            self._feed(data)

    def receive(self, command_id: uuid.UUID | None, timeout: float, budget: int) -> ReceiveResult:
        """Long-poll for the target's outgoing data, up to ``budget`` bytes.

        Answers as soon as there is data or the pipeline is done; raises the TimedOut fault when
        ``timeout`` passes first, and :class:`ConnectionDropped` if the shell is dropped meanwhile.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._dropped:
                    raise ConnectionDropped
                self._check_open()
                pipeline = None
                if command_id is not None:
                    pipeline = self._pipelines.get(command_id)
                    if pipeline is None:
                        raise self._command_not_found(command_id)
                box = self._outbox.get(command_id)
                if box or (pipeline is not None and pipeline.finished):
                    chunks = _take(box or [], budget)
                    done = pipeline is not None and pipeline.finished and not box
                    return ReceiveResult(chunks, done)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WSManFault.timed_out()
                self._cond.wait(remaining)

    def signal(self, command_id: uuid.UUID, code: str) -> None:
        """ctrl_c stops a running pipeline; terminate releases it (stopping it first if needed)."""
        with self._cond:
            self._check_open()
            pipeline = self._pipelines.get(command_id)
            if pipeline is None:
                raise self._command_not_found(command_id)
            if pipeline.server.state == PSInvocationState.Running:
                log.info("Stopping pipeline %s of shell %s", command_id, self.info.shell_id)
                pipeline.server.stop()
                pipeline.finished = True
                self._drain()
            if code.lower().endswith("terminate"):
                pipeline.server.close()
                del self._pipelines[command_id]
                self._outbox.pop(command_id, None)
            self._cond.notify_all()

    def close(self, *, dropped: bool = False) -> None:
        """Forget the pool (Delete, or a dropped service); wake every waiting Receive."""
        with self._cond:
            self._closed = True
            self._dropped = dropped
            self._outbox.clear()
            self._cond.notify_all()

    # -- internals (caller holds self._cond) ---------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise WSManFault.shell_not_found(self.info.shell_id)

    def _command_not_found(self, command_id: uuid.UUID) -> WSManFault:
        return WSManFault.invalid(
            f"The shell {self.info.shell_id} has no command with CommandId "
            f"{str(command_id).upper()}."
        )

    def _feed(self, data: bytes) -> None:
        try:
            self._pool.receive_data(PSRPPayload(data, StreamType.default, None))
            while (event := self._pool.next_event()) is not None:
                self._dispatch(event)
        except (PSRPCoreError, ValueError, TypeError, KeyError) as exc:
            # Data psrpcore cannot parse or deserialize (say, an Int32 out of range) is the
            # client's error, answered with a fault rather than a broken endpoint.
            log.info("Shell %s: invalid PSRP data: %s", self.info.shell_id, exc)
            raise WSManFault.invalid(f"Invalid PSRP data: {exc}") from exc
        finally:
            self._drain()
            self._cond.notify_all()

    def _dispatch(self, event: object) -> None:
        if isinstance(event, CreatePipelineEvent):
            self._start(event.pipeline_id)
        elif isinstance(
            event, SetMaxRunspacesEvent | SetMinRunspacesEvent | ResetRunspaceStateEvent
        ):
            self._pool.runspace_availability_response(event.ci, True)
        elif isinstance(event, GetAvailableRunspacesEvent):
            self._pool.runspace_availability_response(event.ci, max(self._pool.max_runspaces, 1))
        elif isinstance(event, GetCommandMetadataEvent):
            pipeline = self._pipelines[event.pipeline_id]
            pipeline.server.start()
            self._finish(
                pipeline,
                failure=ErrorRecordSpec(
                    "The simulator does not answer GetCommandMetadata.", fqid="NotSupported"
                ),
            )
        else:
            log.debug("Shell %s: no action for %s", self.info.shell_id, type(event).__name__)

    def _start(self, pipeline_id: uuid.UUID) -> None:
        pipeline = self._pipelines[pipeline_id]
        metadata = pipeline.server.metadata
        pipeline.server.start()
        if not isinstance(metadata, PowerShell) or not metadata.commands:
            self._finish(pipeline, failure=ErrorRecordSpec("The pipeline has no commands."))
            return
        invocation = invocation_from_pipeline(metadata, self.info.username)
        log.info(
            "Shell %s pipeline %s: %s (%d parameters)",
            self.info.shell_id,
            pipeline_id,
            invocation.script.splitlines()[0][:80] if invocation.script else "",
            len(invocation.parameters),
        )
        worker = threading.Thread(
            target=self._run,
            args=(pipeline, invocation),
            name=f"wsman-pipeline-{str(pipeline_id)[:8]}",
            daemon=True,
        )
        self._start_worker(worker)

    def _run(self, pipeline: _Pipeline, invocation: ScriptInvocation) -> None:
        """Worker thread: ask the handler, then publish its outcome unless stopped meanwhile."""
        pipeline_id = pipeline.server.pipeline_id
        outcome: ScriptOutcome | None = None
        failure: ErrorRecordSpec | None = None
        try:
            outcome = self._handler(invocation)
        except DropConnection:
            log.info("Handler of pipeline %s asked to drop the connection", pipeline_id)
            self._on_drop(self.info.shell_id, pipeline_id)
            return
        except Exception as exc:
            log.exception("Handler of pipeline %s raised", pipeline_id)
            failure = ErrorRecordSpec(str(exc) or type(exc).__name__, fqid="SimulatorHandlerError")
        with self._cond:
            if self._closed or pipeline.server.state != PSInvocationState.Running:
                log.debug("Pipeline %s ended before its handler; result discarded", pipeline_id)
                return
            try:
                self._finish(pipeline, outcome=outcome, failure=failure)
            except Exception as exc:  # e.g. an output object psrpcore cannot serialize
                log.exception("Could not write the outcome of pipeline %s", pipeline_id)
                if pipeline.server.state == PSInvocationState.Running:
                    self._finish(pipeline, failure=ErrorRecordSpec(f"Bad handler outcome: {exc}"))
            self._drain()
            self._cond.notify_all()

    def _finish(
        self,
        pipeline: _Pipeline,
        *,
        outcome: ScriptOutcome | None = None,
        failure: ErrorRecordSpec | None = None,
    ) -> None:
        server = pipeline.server
        errors: list[ErrorRecordSpec] = []
        failed = failure is not None
        if outcome is not None:
            for value in outcome.output:
                server.write_output(to_wire(value))
            errors = list(outcome.errors)
            failed = failed or outcome.failed
        if failure is not None:
            errors.append(failure)
        # A terminating error travels in the Failed state message, not the error stream, as
        # PowerShell sends it; pypsrp adds it to streams.error and sets had_errors.
        terminating = errors.pop() if failed and errors else None
        for spec in errors:
            record = error_record(spec)
            server.write_error(
                record.Exception,
                record.CategoryInfo,
                record.TargetObject,
                record.FullyQualifiedErrorId,
            )
        if failed:
            reason = terminating or ErrorRecordSpec("The pipeline failed.", fqid="PipelineFailed")
            # psrpcore has no public "fail"; its state change method queues the PipelineState.
            server._change_state(PSInvocationState.Failed, error_record(reason))
        else:
            server.complete()
        pipeline.finished = True

    def _drain(self) -> None:
        while (payload := self._pool.data_to_send(_FRAGMENT_SIZE)) is not None:
            self._outbox.setdefault(payload.pipeline_id, []).append(payload.data)


def _take(box: list[bytes], budget: int) -> list[bytes]:
    """Pop whole payloads off ``box`` while they fit in ``budget`` (always at least one)."""
    taken: list[bytes] = []
    size = 0
    while box and (not taken or size + len(box[0]) <= budget):
        size += len(box[0])
        taken.append(box.pop(0))
    return taken


class ShellRegistry:
    """Every shell the endpoint holds, by ShellId; what a WinRM service restart would forget."""

    def __init__(self, handler: ScriptHandler) -> None:
        self._handler = handler
        self._lock = threading.Lock()
        self._shells: dict[str, Shell] = {}
        # Pipelines whose handler raised DropConnection before their Receive arrived: that
        # Receive must still lose its connection, so the client sees the drop every time.
        self._doomed: set[tuple[str, uuid.UUID]] = set()
        self._workers: list[threading.Thread] = []

    def create(
        self,
        shell_id: str,
        *,
        username: str,
        resource_uri: str,
        client_ip: str,
        streams: tuple[str, str],
        creation: bytes,
    ) -> Shell:
        """Open a new pool from the Create's creationXml and remember it."""
        key = shell_id.upper()
        info = ShellInfo(key, username, resource_uri, client_ip, streams)
        shell = Shell(info, self._handler, self._drop_for, self._start_worker)
        shell.open(creation)
        with self._lock:
            if key in self._shells:
                raise WSManFault.invalid(f"A shell with ShellId {key} already exists.")
            self._shells[key] = shell
        log.info("Opened shell %s for %s", key, username)
        return shell

    def get(self, shell_id: str) -> Shell:
        """The shell with this id, or the shell-not-found fault Windows sends."""
        with self._lock:
            shell = self._shells.get(shell_id.upper())
        if shell is None:
            raise WSManFault.shell_not_found(shell_id.upper())
        return shell

    def delete(self, shell_id: str) -> None:
        """Close a pool at the client's request."""
        with self._lock:
            shell = self._shells.pop(shell_id.upper(), None)
        if shell is None:
            raise WSManFault.shell_not_found(shell_id.upper())
        shell.close()
        log.info("Closed shell %s", shell_id.upper())

    def receive(
        self, shell_id: str, command_id: uuid.UUID | None, timeout: float, budget: int
    ) -> ReceiveResult:
        """Receive for a shell or pipeline, honouring a pending connection drop."""
        key = (shell_id.upper(), command_id) if command_id else None
        with self._lock:
            if key is not None and key in self._doomed:
                self._doomed.discard(key)
                raise ConnectionDropped
        try:
            return self.get(shell_id).receive(command_id, timeout, budget)
        except ConnectionDropped:
            with self._lock:
                if key is not None:
                    self._doomed.discard(key)
            raise

    def drop_all(self) -> None:
        """Forget every shell, cutting the connections of Receives waiting on them."""
        with self._lock:
            shells = list(self._shells.values())
            self._shells.clear()
        for shell in shells:
            shell.close(dropped=True)
        if shells:
            log.info("Dropped %d shell(s)", len(shells))

    def shutdown(self, timeout: float) -> None:
        """Drop everything and give handler threads up to ``timeout`` (in all) to end.

        Handlers run the caller's code, which cannot be interrupted; one still busy after that
        is left to finish on its daemon thread, its result discarded.
        """
        self.drop_all()
        with self._lock:
            workers = list(self._workers)
            self._workers.clear()
            self._doomed.clear()
        deadline = time.monotonic() + timeout
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.info("Handler thread %s still busy at shutdown; left behind", worker.name)

    def _drop_for(self, shell_id: str, pipeline_id: uuid.UUID) -> None:
        with self._lock:
            self._doomed.add((shell_id.upper(), pipeline_id))
        self.drop_all()

    def _start_worker(self, worker: threading.Thread) -> None:
        with self._lock:
            self._workers = [w for w in self._workers if w.is_alive()]
            self._workers.append(worker)
        worker.start()
