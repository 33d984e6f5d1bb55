"""A previous backup guides the chunking of the next one: the same chunks, found with less
work. Every test compares against chunking without a guide, on edited VM-like data."""

from __future__ import annotations

import io
import logging
import random
import re
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

from hyperv_backup.errors import RepositoryError
from hyperv_backup.repository import Repository
from hyperv_backup.repository.chunker import Chunker, DigestingReader
from hyperv_backup.repository.config import ChunkerParams
from hyperv_backup.repository.guide import ChunkGuide
from hyperv_backup.targets import LocalTarget
from tests.repository_helpers import SMALL, KiB, MiB, back_up, next_day, vm_info, vm_like
from tests.test_chunker import _ShortReads

PARAMS = ChunkerParams.for_average(64 * KiB)
KEY = bytes(range(32))
Cuts = list[tuple[int, bytes]]


def blob_id(data: bytes | memoryview) -> bytes:
    return blake3.blake3(data, key=KEY).digest()


def cut(data: bytes, guide: ChunkGuide | None = None, *, short_reads: bool = False) -> Cuts:
    """(size, id) of each chunk; a guided chunker's own ids are checked on the way."""
    stream = _ShortReads(data, seed=7) if short_reads else io.BytesIO(data)
    out = []
    for view, zero, chunk_id in Chunker(PARAMS).cut(DigestingReader(stream), guide):  # type: ignore[arg-type]
        assert chunk_id is None or chunk_id == blob_id(view)
        assert not zero or bytes(view) == bytes(len(view))
        out.append((len(view), blob_id(view)))
    return out


def guide_for(data: bytes) -> ChunkGuide:
    return ChunkGuide([(chunk_id, size) for size, chunk_id in cut(data)], blob_id)


def _base() -> bytes:
    # VM-like extents, with zero runs longer than a maximum chunk (free space)
    rng = random.Random(3)
    parts = [vm_like(3 * MiB, seed=11)]
    for i in range(6):
        parts += [bytes(rng.randint(300, 900) * KiB), vm_like(MiB, seed=20 + i)]
    return b"".join(parts)


BASE = _base()
EDITS: dict[str, Callable[[bytes], bytes]] = {
    "unchanged": lambda d: d,
    "blocks rewritten in place": lambda d: _rewrite(d, share=0.03),
    "next day (rewrites and an insert)": lambda d: next_day(d, seed=5),
    "unaligned insert": lambda d: (
        d[:1_234_567] + random.Random(1).randbytes(300_001) + d[1_234_567:]
    ),
    "deletion": lambda d: d[:2_000_003] + d[2_500_000:],
    "truncated": lambda d: d[: len(d) * 2 // 3 + 777],
    "appended": lambda d: d + random.Random(2).randbytes(700_000),
    "halves swapped": lambda d: d[len(d) // 2 :] + d[: len(d) // 2],
    "another disk": lambda d: vm_like(len(d), seed=99),
    "empty": lambda d: b"",
}


def _rewrite(data: bytes, share: float) -> bytes:
    rng = random.Random(4)
    day = bytearray(data)
    for block in rng.sample(range(len(day) // (64 * KiB)), int(len(day) // (64 * KiB) * share)):
        day[block * 64 * KiB : (block + 1) * 64 * KiB] = rng.randbytes(64 * KiB)
    return bytes(day)


@pytest.mark.parametrize("edit", EDITS, ids=list(EDITS))
@pytest.mark.parametrize("short_reads", [False, True], ids=["whole reads", "short reads"])
def test_a_guided_chunker_cuts_exactly_where_an_unguided_one_does(
    edit: str, short_reads: bool
) -> None:
    today = EDITS[edit](BASE)
    guide = guide_for(BASE)

    assert cut(today, guide, short_reads=short_reads) == cut(today)


def _guessable(chunks: Cuts, yesterday: Cuts) -> int:
    """Chunks a guide could confirm: yesterday's (not its last), except zero runs (found
    without a guess)."""
    zero = blob_id(bytes(PARAMS.max_size))
    old = {chunk_id for _size, chunk_id in yesterday[:-1]} - {zero}
    return sum(1 for _size, chunk_id in chunks if chunk_id in old)


@pytest.mark.parametrize(
    ("edit", "share"),
    [
        ("unchanged", 1.0),
        ("blocks rewritten in place", 0.95),
        ("next day (rewrites and an insert)", 0.95),
        ("unaligned insert", 0.95),
        ("deletion", 0.95),
        ("truncated", 0.95),
        ("appended", 0.95),
        ("halves swapped", 0.95),
    ],
)
def test_the_guide_finds_most_chunks_again_also_after_a_shift(edit: str, share: float) -> None:
    today = EDITS[edit](BASE)
    guide = guide_for(BASE)

    chunks = cut(today, guide)

    assert guide.confirmed >= share * _guessable(chunks, cut(BASE))
    assert guide.confirmed <= guide.guesses


def test_a_guide_for_another_disk_finds_nothing_and_costs_few_guesses() -> None:
    today = EDITS["another disk"](BASE)
    guide = guide_for(BASE)

    chunks = cut(today, guide)

    assert guide.confirmed == 0
    assert guide.guesses <= len(chunks) // 4  # a guess only where a cut fell on an old one


def test_a_guide_refuses_chunks_without_a_size() -> None:
    with pytest.raises(ValueError, match="positive sizes"):
        ChunkGuide([(bytes(32), 0)], blob_id)
    guide = ChunkGuide([(b"a" * 32, 10), (b"b" * 32, 20), (b"c" * 32, 5)], blob_id)
    assert len(guide) == 3
    assert guide.guess(0) == (b"a" * 16, 10)
    assert guide.guess(10) == (b"b" * 16, 20)
    assert guide.guess(30) is None  # the last chunk: the end of the file cut it
    assert guide.guess(5) is None  # no chunk started there
    assert guide.memory_bytes == 3 * 16 + 4 * 8


# --- in a repository ---------------------------------------------------------------------

DISK = "Virtual Hard Disks/web01.vhdx"
DAY_1 = vm_like(6 * MiB, seed=31)
DAY_2 = next_day(DAY_1, seed=32)
_GUIDED = re.compile(r"(\d+) of (\d+) chunks cut where the previous backup's were guessed")


def guided_counts(caplog: pytest.LogCaptureFixture) -> list[tuple[int, int]]:
    found = [_GUIDED.search(r.getMessage()) for r in caplog.records]
    return [(int(m[1]), int(m[2])) for m in found if m is not None]


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository.init(LocalTarget(tmp_path / "repo"), "pw", **SMALL)


def test_the_next_backup_is_guided_by_the_last_and_stores_the_same_chunks(
    repo: Repository, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hyperv_backup.repository")
    back_up(repo, vm_info("web01"), {DISK: DAY_1})
    assert guided_counts(caplog) == []  # the first backup has no parent

    guided = back_up(repo, vm_info("web01"), {DISK: DAY_2})
    unguided = back_up(repo, vm_info("web01"), {DISK: DAY_2}, parent=None)

    [(confirmed, chunks)] = guided_counts(caplog)
    assert confirmed >= 0.7 * chunks
    a, b = repo.snapshot(guided), repo.snapshot(unguided)
    assert a.files[0].chunk_lists == b.files[0].chunk_lists  # the same chunks, in order
    assert a.files[0].sha256 == b.files[0].sha256
    assert b.stats.new_chunks == 0
    report = repo.restore(guided, tmp_path / "out")
    assert (report.folder / DISK).read_bytes() == DAY_2


def test_the_parent_is_the_newest_backup_of_the_same_vm_id_even_renamed(
    repo: Repository, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hyperv_backup.repository")
    web01 = vm_info("web01")
    back_up(repo, web01, {DISK: DAY_1})
    back_up(repo, vm_info("other"), {DISK: vm_like(6 * MiB, seed=77)})  # newer, same path
    renamed = web01.model_copy(update={"name": "web01-renamed"})

    back_up(repo, renamed, {DISK: DAY_2})

    [(confirmed, chunks)] = guided_counts(caplog)
    assert confirmed >= 0.7 * chunks


def test_an_explicit_parent_is_used_and_a_wrong_one_is_refused(
    repo: Repository, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="hyperv_backup.repository")
    first = back_up(repo, vm_info("web01"), {DISK: DAY_1})
    back_up(repo, vm_info("db01"), {DISK: DAY_2}, parent=first)  # another VM, told so
    [(confirmed, _chunks)] = guided_counts(caplog)
    assert confirmed > 0

    with pytest.raises(RepositoryError, match="no snapshot"):
        repo.open_vm("job", vm_info("web01"), host="hv01", parent="ffffffff")
    assert repo.locks() == []  # nothing held by the refused backup


def test_an_unreadable_parent_chunk_list_only_costs_the_guide(
    repo: Repository, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = back_up(repo, vm_info("web01"), {DISK: DAY_1})
    list_id = bytes.fromhex(repo.snapshot(first).files[0].chunk_lists[0])
    found = repo._store.locate(list_id)
    assert found is not None
    pack_id, location = found
    [pack] = (tmp_path / "repo" / "data").rglob(pack_id)
    with pack.open("r+b") as f:  # flip a byte inside the chunk list
        f.seek(location.offset + location.length // 2)
        byte = f.read(1)
        f.seek(-1, io.SEEK_CUR)
        f.write(bytes([byte[0] ^ 1]))

    with caplog.at_level(logging.WARNING):
        second = back_up(repo, vm_info("web01"), {DISK: DAY_2})

    assert "chunked without the previous backup's guide" in caplog.text
    report = repo.restore(second, tmp_path / "out")
    assert (report.folder / DISK).read_bytes() == DAY_2
