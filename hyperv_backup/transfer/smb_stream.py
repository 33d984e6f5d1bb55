"""A read-ahead stream over one open SMB file: the SMB reader's data path.

A background thread keeps up to ``depth`` SMB READ requests of ``read_size`` bytes in flight
and hands the answers, in file order, to a queue of at most ``depth`` blocks; the consumer
(hashing, compressing, uploading) takes blocks from the queue. So the network and the server
work while the consumer does, and one round trip per block is hidden behind the others.

Memory is bounded: at most ``depth`` blocks in flight, ``depth`` queued, one being handed
over and one being consumed — ``(2 * depth + 2) * read_size`` per open stream.

The reads go out through smbprotocol's documented out-of-band form
(``Open.read(send=False)`` + ``Connection.send``), the way ``smbclient``'s own file object
sends one; that is what lets several be in flight on one connection.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smbprotocol.exceptions import EndOfFile

__all__ = ["PrefetchingSMBStream"]

logger = logging.getLogger(__name__)

_CREDIT = 64 * 1024  # bytes one SMB credit covers
_RESERVED_CREDITS = 8  # left for opens and closes on the same connection
_WAIT = 0.2  # seconds between checks for close() while blocked


@dataclass
class _Pending:
    offset: int
    length: int
    request: Any
    receive: Callable[[Any], bytes]


class _End:
    """Queued after the last block."""


_END = _End()


class PrefetchingSMBStream(io.RawIOBase):
    """A raw, read-only, seekable stream over an ``smbclient`` raw file (``buffering=0``).

    ``credit_lock`` is shared by every stream on the same connection: checking the credit
    window and sending must not interleave between threads. ``translate`` turns an SMB error
    into the caller's exception type.
    """

    def __init__(
        self,
        raw_file: Any,
        *,
        name: str,
        read_size: int,
        depth: int,
        credit_lock: threading.Lock,
        translate: Callable[[BaseException], BaseException],
    ) -> None:
        super().__init__()
        self._file = raw_file
        self._open = raw_file.fd
        self._name = name
        self._read_size = max(_CREDIT, min(read_size, self._open.connection.max_read_size))
        self._depth = max(1, depth)
        self._credit_lock = credit_lock
        self._translate = translate
        self._position = 0
        self._block = memoryview(b"")
        self._block_pos = 0
        self._eof = False
        self._queue: queue.Queue[bytes | BaseException | _End] = queue.Queue(self._depth)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_prefetch(0)

    def __repr__(self) -> str:
        return f"PrefetchingSMBStream({self._name!r}, position={self._position})"

    @property
    def name(self) -> str:
        """The UNC path."""
        return self._name

    # --- io.RawIOBase ----------------------------------------------------------------------

    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Seeking restarts the read-ahead at the new position."""
        return True

    def tell(self) -> int:
        """The position of the next byte :meth:`readinto` returns."""
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset``; read-ahead restarts there (unless it is where we are)."""
        self._check_open()
        if whence == io.SEEK_CUR:
            offset += self._position
        elif whence == io.SEEK_END:
            offset += int(self._open.end_of_file)
        elif whence != io.SEEK_SET:
            raise ValueError(f"invalid whence {whence}")
        if offset < 0:
            raise ValueError(f"negative seek position {offset}")
        if offset != self._position:
            self._stop_prefetch()
            self._block, self._block_pos, self._eof = memoryview(b""), 0, False
            self._position = offset
            self._start_prefetch(offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        """Copy up to ``len(buffer)`` bytes of the current block; 0 at the end of the file."""
        self._check_open()
        target = memoryview(buffer).cast("B")
        if self._block_pos >= len(self._block) and not self._next_block():
            return 0
        count = min(len(target), len(self._block) - self._block_pos)
        target[:count] = self._block[self._block_pos : self._block_pos + count]
        self._block_pos += count
        self._position += count
        return count

    def readall(self) -> bytes:
        """The rest of the file, block by block (no small reads)."""
        parts = []
        if self._block_pos < len(self._block):
            parts.append(bytes(self._block[self._block_pos :]))
            self._position += len(self._block) - self._block_pos
            self._block_pos = len(self._block)
        while self._next_block():
            parts.append(bytes(self._block))
            self._position += len(self._block)
            self._block_pos = len(self._block)
        return b"".join(parts)

    def close(self) -> None:
        """Stop the read-ahead (waiting for reads in flight) and close the SMB file."""
        if self.closed:
            return
        try:
            self._stop_prefetch()
            try:
                self._file.close()
            except Exception as err:  # closing a file we only read must not mask the result
                logger.debug("closing %s failed: %s", self._name, err)
        finally:
            super().close()

    # --- consumer side -----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def _next_block(self) -> bool:
        """Take the next block from the queue; False at the end of the file."""
        if self._eof:
            return False
        item = self._queue.get()
        if isinstance(item, _End):
            self._eof = True
            self._block, self._block_pos = memoryview(b""), 0
            return False
        if isinstance(item, BaseException):
            self._eof = True  # the read-ahead has stopped; a retry must seek or reopen
            raise item
        self._block, self._block_pos = memoryview(item), 0
        return True

    # --- the read-ahead thread ---------------------------------------------------------------

    def _start_prefetch(self, offset: int) -> None:
        self._stop = threading.Event()
        self._queue = queue.Queue(self._depth)
        self._thread = threading.Thread(
            target=self._prefetch,
            args=(offset, self._stop, self._queue),
            name=f"smb-read-ahead {self._name}",
            daemon=True,
        )
        self._thread.start()

    def _stop_prefetch(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()

    def _prefetch(
        self,
        offset: int,
        stop: threading.Event,
        out: queue.Queue[bytes | BaseException | _End],
    ) -> None:
        pending: deque[_Pending] = deque()
        try:
            self._prefetch_loop(offset, stop, out, pending)
        except BaseException as err:
            self._put(out, stop, self._translate(err))
        finally:
            # Every request sent is answered before the file may close: an unanswered one
            # would stay in the connection's table, and its answer would arrive for a file
            # that is gone.
            for item in pending:
                try:
                    item.receive(item.request)
                except Exception as err:
                    logger.debug("discarded read-ahead of %s failed: %s", self._name, err)

    def _prefetch_loop(
        self,
        offset: int,
        stop: threading.Event,
        out: queue.Queue[bytes | BaseException | _End],
        pending: deque[_Pending],
    ) -> None:
        planned_end = int(self._open.end_of_file)  # the size when the file was opened
        next_offset = offset
        while not stop.is_set():
            while len(pending) < self._depth and next_offset < planned_end:
                length = min(self._read_size, planned_end - next_offset)
                sent = self._send(next_offset, length, reserve=_RESERVED_CREDITS if pending else 0)
                if sent is None:
                    break  # no credits now: they come back with the answers
                pending.append(sent)
                next_offset += sent.length
            if not pending and next_offset < planned_end:
                stop.wait(0.001)  # other streams hold every credit; theirs come back soon
                continue
            if not pending:
                # At the size seen at open: read on until the server says end of file, so a
                # file that grew meanwhile is read whole, as a local read would.
                data = self._read_sync(next_offset, stop)
                if not data:
                    self._put(out, stop, _END)
                    return
                next_offset += len(data)
                planned_end = max(planned_end, next_offset)
                self._put(out, stop, data)
                continue
            item = pending.popleft()
            data = self._receive(item)
            if len(data) < item.length:
                # Short read: the file shrank. Drop what was asked beyond and go on from
                # where the data ends, sequentially.
                for later in pending:
                    self._receive(later)
                pending.clear()
                next_offset = planned_end = item.offset + len(data)
            if data:
                self._put(out, stop, data)

    def _send(self, offset: int, length: int, *, reserve: int) -> _Pending | None:
        """Send one READ if the credit window allows (shortened to fit); None if it is empty."""
        connection = self._open.connection
        with self._credit_lock:
            window = connection.sequence_window
            available = window["high"] - window["low"] - reserve
            if connection.supports_multi_credit:
                length = min(length, available * _CREDIT)
            elif available < 1:
                length = 0
            if length <= 0:
                return None
            charge = (length - 1) // _CREDIT + 1
            message, receive = self._open.read(offset, length, send=False)
            request = connection.send(
                message,
                sid=self._open.tree_connect.session.session_id,
                tid=self._open.tree_connect.tree_connect_id,
                # Ask for more than this read costs, so the window grows until ``depth``
                # reads fit in it.
                credit_request=charge * (self._depth + 1),
            )
        return _Pending(offset, length, request, receive)

    def _receive(self, item: _Pending) -> bytes:
        try:
            return bytes(item.receive(item.request))
        except EndOfFile:
            return b""

    def _read_sync(self, offset: int, stop: threading.Event) -> bytes:
        while not stop.is_set():
            sent = self._send(offset, self._read_size, reserve=0)
            if sent is not None:
                return self._receive(sent)
            stop.wait(0.001)
        return b""

    def _put(
        self,
        out: queue.Queue[bytes | BaseException | _End],
        stop: threading.Event,
        item: bytes | BaseException | _End,
    ) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=_WAIT)
                return
            except queue.Full:
                continue
