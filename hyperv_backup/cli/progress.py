"""Progress bars on stderr while a command works — for a person at a terminal only.

Nothing is drawn when the console is not a terminal (a pipe, a file, cron) or the command
prints JSON: the bars are then disabled and their callbacks are ``None``, so the engine does
not even build the events. The callbacks are called from worker threads (a backup runs
several VMs at once); every update takes one lock.

>>> with BackupProgress(err(), enabled=not as_json) as progress:      # doctest: +SKIP
...     result = BackupJob(settings, policy, sink=sink, progress=progress.callback).run(sel)
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from hyperv_backup.backup import ProgressCallback, ProgressEvent
from hyperv_backup.render import format_bytes
from hyperv_backup.results import VMStatus

__all__ = ["BackupProgress", "ByteProgress"]


def _bars(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,  # the bars go; the lines printed above them and the report stay
        redirect_stdout=False,  # stdout is for results: never through the bars
        redirect_stderr=True,
    )


class _Bars:
    """A rich Progress that is started only for a terminal, and logs printed above it."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.enabled = enabled and console.is_terminal
        self.progress = _bars(console)
        self.lock = threading.Lock()
        self._logging = _LogsAboveBars()

    def __enter__(self) -> _Bars:
        if self.enabled:
            self.progress.start()
            self._logging.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.enabled:
            with self.lock:
                self._logging.stop()
                self.progress.stop()


class BackupProgress:
    """A backup's progress: a line per VM in flight and one per file being read.

    Each line shows the bytes done and their total, the rate and the time left. A VM's line
    gives way, once it is finished, to a line saying how it went (``web01: success (40.0
    GiB, 612.3 s)``), which stays.
    """

    def __init__(self, console: Console, *, enabled: bool = True) -> None:
        self._bars = _Bars(console, enabled)
        self._vms: dict[str, TaskID] = {}
        self._files: dict[str, TaskID] = {}

    def __enter__(self) -> BackupProgress:
        self._bars.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bars.__exit__(exc_type, exc, tb)

    @property
    def callback(self) -> ProgressCallback | None:
        """What to give :class:`~hyperv_backup.backup.BackupJob` (None when not drawn)."""
        return self.update if self._bars.enabled else None

    def update(self, event: ProgressEvent) -> None:
        """Take one event (from any thread)."""
        if not self._bars.enabled:
            return
        with self._bars.lock:
            self._update(event)

    def _update(self, event: ProgressEvent) -> None:
        bars, name = self._bars.progress, event.vm_name
        if event.kind == "vm_started":
            self._vms[name] = bars.add_task(f"{name}: preparing", total=None)
        elif event.kind == "file_started":
            vm_task = self._vms.get(name)
            if vm_task is None:  # an event stream that began without vm_started
                vm_task = self._vms[name] = bars.add_task(name, total=None)
            bars.update(vm_task, description=name, total=event.total or None)
            self._drop_file(name)
            self._files[name] = bars.add_task(
                f"  {name}: {event.file}", total=event.file_size or None
            )
            bars.refresh()  # every file is drawn at least once, however fast it goes
        elif event.kind == "bytes":
            for task in (self._vms.get(name), self._files.get(name)):
                if task is not None:
                    bars.advance(task, event.bytes)
        elif event.kind == "vm_finished":
            self._drop_file(name)
            vm_task = self._vms.pop(name, None)
            if vm_task is not None:
                bars.remove_task(vm_task)
            if event.result is not None:
                result = event.result
                line = (
                    f"{name}: {result.status.value} ({format_bytes(result.bytes)}, "
                    f"{result.duration_seconds:.1f} s)"
                )
                style = "red" if result.status == VMStatus.FAILED else None
                bars.console.print(line, markup=False, highlight=False, style=style)

    def _drop_file(self, vm_name: str) -> None:
        task = self._files.pop(vm_name, None)
        if task is not None:
            self._bars.progress.remove_task(task)


class ByteProgress:
    """One bar of bytes: a restore's writes, or the packs ``check --read-data`` re-reads."""

    def __init__(
        self, console: Console, description: str, total: int | None, *, enabled: bool = True
    ) -> None:
        self._bars = _Bars(console, enabled)
        self.description = description
        """What the bar says it does; may be changed until it is entered."""
        self.total = total
        """The bytes to do, if known; may be set until it is entered."""
        self._task: TaskID | None = None

    def __enter__(self) -> ByteProgress:
        self._bars.__enter__()
        if self._bars.enabled:
            self._task = self._bars.progress.add_task(self.description, total=self.total)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bars.__exit__(exc_type, exc, tb)

    @property
    def callback(self) -> Callable[[int], None] | None:
        """What to give the repository's ``progress`` parameter (None when not drawn)."""
        return self.advance if self._bars.enabled else None

    def advance(self, count: int) -> None:
        """``count`` more bytes done (from any thread)."""
        if self._task is None:
            return
        with self._bars.lock:
            self._bars.progress.advance(self._task, count)


class _LogsAboveBars:
    """Log lines printed above the bars rather than through them.

    While the bars are drawn, rich sends what is written to ``sys.stderr`` above them; a
    logging handler holds the stream it was given, so its stream is switched for that time.
    """

    def __init__(self) -> None:
        self._original = sys.stderr
        self._switched: list[logging.StreamHandler[TextIO]] = []

    def start(self) -> None:
        # Called right after the bars started: sys.stderr is now rich's proxy (or unchanged).
        if sys.stderr is self._original:
            return
        for handler in _stream_handlers():
            if handler.stream is self._original:
                handler.setStream(sys.stderr)
                self._switched.append(handler)

    def stop(self) -> None:
        for handler in self._switched:
            handler.setStream(self._original)
        self._switched.clear()


def _stream_handlers() -> Iterator[logging.StreamHandler[TextIO]]:
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:
            yield handler
