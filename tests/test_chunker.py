"""The chunker cuts exactly where pyfastcdc's own stream chunker does (dedup with earlier
backups depends on it), also across zero runs, which it takes a shortcut over."""

from __future__ import annotations

import hashlib
import io
import random

import blake3
import pyfastcdc
import pytest

from hyperv_backup.errors import RepositoryError
from hyperv_backup.repository.chunker import Chunker, DigestingReader
from hyperv_backup.repository.config import ChunkerParams


def _disk_like(seed: int) -> bytes:
    rng = random.Random(seed)
    parts = []
    for i in range(40):
        kind, size = rng.choice("zrt"), rng.randint(1, 4_000_000)
        if kind == "z":
            parts.append(bytes(size))  # free space: often longer than a maximum chunk
        elif kind == "r":
            parts.append(rng.randbytes(size))
        else:
            parts.append((b"lorem ipsum %d " % i) * (size // 16))
    return b"".join(parts)


class _ShortReads(io.RawIOBase):
    """A stream that returns fewer bytes than asked, as a network reader may."""

    def __init__(self, data: bytes, seed: int) -> None:
        self._data = io.BytesIO(data)
        self._rng = random.Random(seed)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._data.read(min(len(buffer), self._rng.randint(1, 3_000_000)))
        buffer[: len(data)] = data
        return len(data)


@pytest.mark.parametrize("average", [64 * 1024, 384 * 1024])
def test_cut_points_are_fastcdcs_and_the_file_hash_is_whole(average: int) -> None:
    data = _disk_like(seed=average)
    params = ChunkerParams.for_average(average)
    reference = pyfastcdc.FastCDC(
        params.avg_size,
        min_size=params.min_size,
        max_size=params.max_size,
        normalized_chunking=params.normalization,  # type: ignore[arg-type]
    )
    expected = [hashlib.sha256(c.data).digest() for c in reference.cut_stream(io.BytesIO(data))]
    reader = DigestingReader(_ShortReads(data, seed=1))  # type: ignore[arg-type]
    got = [hashlib.sha256(view).digest() for view in Chunker(params).chunks(reader)]
    assert got == expected
    assert reader.size == len(data)
    assert reader.hexdigest() == blake3.blake3(data).hexdigest()
    zero_chunk = hashlib.sha256(bytes(params.max_size)).digest()
    assert zero_chunk in got  # the zero shortcut was taken, and agreed
    flagged = [
        (hashlib.sha256(view).digest(), zero)
        for view, zero, _id in Chunker(params).cut(DigestingReader(io.BytesIO(data)))
    ]
    assert [digest for digest, _zero in flagged] == expected
    assert {digest for digest, zero in flagged if zero} == {zero_chunk}


def test_an_empty_stream_has_no_chunks() -> None:
    reader = DigestingReader(io.BytesIO(b""))
    assert list(Chunker(ChunkerParams.for_average(64 * 1024)).chunks(reader)) == []
    assert reader.hexdigest() == blake3.blake3(b"").hexdigest()


class _Unhashable(io.RawIOBase):
    """Gives the hashing thread something it cannot hash: a view of a released buffer."""

    def __init__(self) -> None:
        self.sent = False

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.sent:
            return 0
        self.sent = True
        buffer[:4] = b"data"
        return 4


def test_a_failing_file_hash_is_an_error_not_a_hang() -> None:
    reader = DigestingReader(_Unhashable())  # type: ignore[arg-type]
    view = memoryview(bytearray(16))
    reader.read_shared(view)
    reader._hash = None  # type: ignore[assignment]  # the next update raises in the thread
    reader.read_shared(memoryview(bytearray(16)))
    with pytest.raises(RepositoryError, match="hashing the file failed"):
        reader.settle()
    with pytest.raises(RepositoryError):
        reader.hexdigest()
