"""Content-defined chunking of VM files (FastCDC 2020, ``pyfastcdc``), streamed.

Cut points depend on content, not offsets, so an insert shifts only the chunks around it
and the rest of a disk deduplicates against yesterday's backup.

Choice and figures (``bench/chunking.py 512``; 2 cores, one used; Python 3.11)
---------------------------------------------------------------------------------
Throughput of the cut-point search alone, 64 MiB of each kind, 512 KiB average:

========  ==================  =================  =============  ==================
data      pyfastcdc 0.3.1     fastcdc 1.7.0      keyed BLAKE3   zstd-3 (ratio)
========  ==================  =================  =============  ==================
zeros     1,660 MiB/s         1,850 MiB/s        5,800 MiB/s    5,650 MiB/s (0.00)
text      2,840 MiB/s         2,230 MiB/s        4,470 MiB/s    900 MiB/s (0.68)
random    2,960 MiB/s         2,300 MiB/s        4,410 MiB/s    4,560 MiB/s (1.00)
========  ==================  =================  =============  ==================

Both are far faster than anything downstream (zstd on compressible data, the network).
``pyfastcdc`` is picked: it chunks a stream (``cut_stream`` with ``readinto``, a buffer of
twice the maximum chunk), so a disk is never read whole into memory — ``fastcdc`` wants one
buffer or a file path (mmap) — and it ships type stubs.

Dedup on a 512 MiB VM-like image (extents of 64 KiB-8 MiB: 35 % zeros, 35 % text-like, 30 %
random) and its "next day" (2 % of its 64 KiB blocks rewritten at random + 4 MiB inserted at an
unaligned offset; 14.2 MiB changed). "new" is what the next day stores:

=========  ======  ===========  ========  ===========  ===========
average    chunks  mean (KiB)   new MiB   new/changed  chunks/TiB
=========  ======  ===========  ========  ===========  ===========
128 KiB    2,557   207          76.7      5.4          5.2 M
256 KiB    1,266   417          121.5     8.6          2.6 M
384 KiB    816     643          162.2     11.4         1.7 M
512 KiB    624     847          193.1     13.6         1.3 M
1 MiB      305     1,732        280.0     19.7         0.6 M
=========  ======  ===========  ========  ===========  ===========

Chunk + hash speed does not depend on the average between 256 KiB and 1 MiB (the cut-point
search skips the minimum size; run-to-run noise is larger than the differences), so the
choice is dedup against memory and per-chunk cost. Scattered 64 KiB writes are the worst
case, each dirtying a whole chunk; real guest writes cluster more. FastCDC's normalization
level does not help here (level 2 stores 4 % more than level 1, level 3 15 % more: the
mean is dominated by zero runs, which become maximum-size chunks).

The default is **384 KiB average (min 96 KiB, max 1.5 MiB)**: the next day stores 16 % less
than at 512 KiB and about 0.42x what restic (1 MiB average) stores (``bench/compare.py``),
for a third more index entries. The dedup index is held in memory: 1.7 M entries per TiB of
unique data (~85-120 MiB in :class:`~hyperv_backup.repository.chunk_table.ChunkTable`),
against 2.6 M at 256 KiB, which would break the 256 MiB memory budget for a repository of a
single 1 TiB VM. A repository whose VMs churn in small scattered writes can be made with
``chunk_size=256 * 1024``, one that holds many TiB with ``chunk_size=512 * 1024`` or more;
the size is fixed for the repository's life (it decides dedup).

End to end (``bench/repository.py 1024``: 1 GiB image on a local target, default sizes, two
runs): backup 370-455 MiB/s unencrypted, 300-400 MiB/s encrypted; the next day's backup
530-670 MiB/s (unchanged chunks are only hashed); restore 300-700 MiB/s; the image stores in
535 MiB and its next day adds 145 MiB.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO, Protocol

import blake3
from pyfastcdc import FastCDC

from hyperv_backup.errors import RepositoryError
from hyperv_backup.repository.config import ChunkerParams
from hyperv_backup.repository.guide import ChunkGuide

__all__ = ["Chunker", "DigestingReader"]


class DigestingReader:
    """Wraps a stream: BLAKE3, size and progress of everything read through it.

    The whole-file hash runs on a thread of its own (blake3 releases the GIL), beside the
    chunking and chunk hashing. It is BLAKE3, not SHA-256: on a next-day backup, where most
    chunks are already stored, a whole-file SHA-256 was the largest single cost (1.2 of
    ~4.5 CPU-s for 2 GiB, at SHA-NI's 1.8 GB/s); BLAKE3 takes a third of that.
    :meth:`read_shared` hands that thread a view of the caller's own buffer, without a copy;
    the caller calls :meth:`settle` before it overwrites what it read (:class:`Chunker` does).
    """

    def __init__(self, stream: BinaryIO, progress: Callable[[int], None] | None = None) -> None:
        self._stream = stream
        self._readinto = getattr(stream, "readinto", None)
        self._progress = progress
        self._hash = blake3.blake3(max_threads=1)
        self._blocks: queue.SimpleQueue[memoryview | None] = queue.SimpleQueue()
        self.queued = 0  # blocks handed to the hashing thread
        self._hashed_blocks = 0  # ... of which it has hashed
        self._error: BaseException | None = None
        self._hashed = threading.Condition()
        self._hasher = threading.Thread(target=self._run, name="file-hash", daemon=True)
        self._hasher.start()
        self._finished = False
        self.size = 0

    def _run(self) -> None:
        try:
            while (block := self._blocks.get()) is not None:
                self._hash.update(block)
                del block
                with self._hashed:
                    self._hashed_blocks += 1
                    self._hashed.notify_all()
        except BaseException as error:  # reported by settle() and hexdigest(), never a hang
            with self._hashed:
                self._error = error
                self._hashed.notify_all()

    def read_shared(self, buffer: memoryview) -> int:
        """Fill ``buffer`` from the stream (0 at its end); it is hashed from ``buffer``
        itself, so call :meth:`settle` (with :attr:`queued` as it was after this read)
        before changing those bytes."""
        if self._readinto is not None:
            count = int(self._readinto(buffer) or 0)
        else:
            data = self._stream.read(len(buffer))
            count = len(data)
            buffer[:count] = data
        if count:
            self.queued += 1
            self._blocks.put(buffer[:count])
            self.size += count
            if self._progress is not None:
                self._progress(count)
        return count

    def settle(self, blocks: int | None = None) -> None:
        """Wait until the first ``blocks`` blocks read (default: all) have been hashed, so
        the buffers they were read into may be reused."""
        goal = self.queued if blocks is None else blocks
        with self._hashed:
            self._hashed.wait_for(lambda: self._hashed_blocks >= goal or self._error is not None)
        self._raise_if_failed()

    def close(self) -> None:
        """Let the hashing thread finish (also when the file's backup failed midway)."""
        if not self._finished:
            self._finished = True
            self._blocks.put(None)
            self._hasher.join()

    def hexdigest(self) -> str:
        """BLAKE3 of everything read (ends the reading)."""
        self.close()
        self._raise_if_failed()
        return self._hash.hexdigest()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RepositoryError(f"hashing the file failed: {self._error}") from self._error


class _ReadsInto(Protocol):
    def readinto(self, buffer: memoryview, /) -> int: ...


class Chunker:
    """Cuts streams into content-defined chunks with the repository's parameters.

    The cut points are FastCDC's (``pyfastcdc``), found in a buffer of twice the maximum
    chunk that is refilled as chunks are taken, as ``pyfastcdc``'s own stream chunker does.
    One shortcut: a chunk whose first ``max_size`` bytes are all zeros (free disk space) is
    cut at ``max_size`` without running FastCDC over it — FastCDC looks at no byte beyond
    ``max_size`` and, on zeros, cuts exactly there (checked once per chunker, else the
    shortcut is off), so the chunks are the same, found by a memcmp instead of a gear-hash
    scan that is slower on zeros than on any other data.
    """

    def __init__(self, params: ChunkerParams) -> None:
        self.params = params
        self._zeros = bytes(params.max_size)
        probe = next(iter(self._cdc().cut_buf(memoryview(bytes(params.max_size + 1)))))
        self._zero_shortcut = probe.length == params.max_size

    def _cdc(self) -> FastCDC:
        # A FastCDC object is not safe to share between threads: one per stream.
        return FastCDC(
            self.params.avg_size,
            min_size=self.params.min_size,
            max_size=self.params.max_size,
            normalized_chunking=self.params.normalization,  # type: ignore[arg-type]
        )

    def chunks(self, stream: DigestingReader | _ReadsInto) -> Iterator[memoryview]:
        """The chunks of ``stream``; each view is valid only until the next one is produced."""
        return (view for view, _zero, _id in self.cut(stream))

    def cut(
        self, stream: DigestingReader | _ReadsInto, guide: ChunkGuide | None = None
    ) -> Iterator[tuple[memoryview, bool, bytes | None]]:
        """:meth:`chunks`, each with whether it is a maximum-size run of zeros (found by
        the shortcut; its id is the codec's cached zero id, so it need not be hashed) and,
        with a ``guide`` (the file's previous backup), its id: a guided chunk's id is
        computed here, with the guide's id function, to check the guess. The cut points are
        the same with or without a guide (see :mod:`~hyperv_backup.repository.guide`)."""
        cdc = self._cdc()
        max_size = self.params.max_size
        # Two buffers in turn. A DigestingReader hashes straight from them, so a buffer is
        # refilled only once what was read into it the time before has been hashed: the
        # file hash may lag a whole buffer behind the chunking. Only the unchunked tail
        # (less than one maximum chunk) is copied from one buffer to the other.
        buffers = [memoryview(bytearray(_BUFFER_CHUNKS * max_size)) for _ in range(2)]
        read_into: Callable[[memoryview], int]
        settle: Callable[[int], None]
        if isinstance(stream, DigestingReader):
            read_into, settle = stream.read_shared, stream.settle
        else:  # any other stream is read the same way; nothing to settle
            read_into, settle = stream.readinto, _ignore
        read_before = [0, 0]  # per buffer: blocks read into it, the last time it was filled
        current = 0
        buffer = buffers[current]
        start = end = 0  # the unchunked bytes are buffer[start:end]
        offset = 0  # where buffer[start] is in the file
        eof = False
        while True:
            if not eof and end - start < max_size:
                current = 1 - current
                settle(read_before[current])
                tail, buffer = buffer[start:end], buffers[current]
                buffer[: len(tail)] = tail
                start, end = 0, len(tail)
                while end < len(buffer):
                    count = read_into(buffer[end:])
                    if count <= 0:
                        eof = True
                        break
                    end += count
                read_before[current] = getattr(stream, "queued", 0)
            left = end - start
            if left == 0:
                return
            zero = (
                left >= max_size
                and self._zero_shortcut
                and self._zeros.startswith(buffer[start : start + max_size])
            )
            if guide is None:
                length = max_size if zero else next(iter(cdc.cut_buf(buffer[start:end]))).length
                yield buffer[start : start + length], zero, None
            else:
                length, chunk_id = self._guided_cut(cdc, guide, buffer[start:end], offset, zero)
                yield buffer[start : start + length], zero, chunk_id
            start += length
            offset += length

    def _guided_cut(
        self, cdc: FastCDC, guide: ChunkGuide, data: memoryview, offset: int, zero: bool
    ) -> tuple[int, bytes | None]:
        """The next cut in ``data`` (at ``offset`` of the file): the guessed one if its id
        matches, else FastCDC's; with the chunk's id (None for a zero run)."""
        if zero:
            return self.params.max_size, None
        guess = guide.guess(offset)
        tried: tuple[int, bytes] | None = None
        if guess is not None and guess[1] <= len(data):
            key, length = guess
            chunk_id = guide.blob_id(data[:length])
            if chunk_id.startswith(key):
                guide.confirm()  # still in step: the shift stays
                return length, chunk_id
            tried = length, chunk_id
        cut = next(iter(cdc.cut_buf(data))).length
        # A wrong guess of the right length (bytes changed inside the chunk) was hashed already.
        chunk_id = tried[1] if tried is not None and tried[0] == cut else guide.blob_id(data[:cut])
        guide.follow(offset, chunk_id)
        return cut, chunk_id


_BUFFER_CHUNKS = 4
"""Each of the chunker's two buffers holds this many maximum-size chunks."""


def _ignore(_blocks: int) -> None:
    pass
