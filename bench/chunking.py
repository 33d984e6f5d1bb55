"""Chunker choice for the repository: throughput and dedup on VM-like disk images.

Not a test: prints figures. Run with ``.venv/bin/python bench/chunking.py [MiB]``.

1. Throughput of the two FastCDC packages (``pyfastcdc``, ``fastcdc``) on zeros, text-like and
   random data, plus keyed BLAKE3 and zstd on the same data (the rest of the write path).
2. A VM-like image (extents of zeros, text-like and random data) and its "next day": 2 % of
   its 64 KiB blocks rewritten and 4 MiB inserted at an unaligned offset. For several average
   chunk sizes: how many bytes the next day adds (chunks not already stored), the chunk count
   (index size), and the speed of chunk + hash.
"""

from __future__ import annotations

import io
import random
import sys
import time
from collections.abc import Callable, Iterator

import blake3
import fastcdc
import pyfastcdc
import zstandard

KiB = 1024
MiB = 1024 * KiB
BLOCK = 64 * KiB
_TEXT = bytes((b"etaoinshrdlucmfwypvbgkqjxz      ETAOIN\n.,0123456789" * 6)[:256])


def text_like(rng: random.Random, size: int) -> bytes:
    """Bytes from a small alphabet: compresses like logs or documents (zstd ~0.68)."""
    return rng.randbytes(size).translate(_TEXT)


def vm_image(size: int, seed: int = 7) -> bytearray:
    """Extents of 64 KiB-8 MiB: 35 % zeros (free space), 35 % text-like, 30 % random."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, no secret
    image = bytearray()
    while len(image) < size:
        extent = min(rng.randint(1, 128) * BLOCK, size - len(image))
        kind = rng.random()
        if kind < 0.35:
            image += bytes(extent)
        elif kind < 0.70:
            image += text_like(rng, extent)
        else:
            image += rng.randbytes(extent)
    return image


def next_day(image: bytearray, seed: int = 8) -> tuple[bytearray, int]:
    """2 % of 64 KiB blocks rewritten, 4 MiB inserted unaligned; returns it and bytes changed."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, no secret
    day = bytearray(image)
    blocks = len(day) // BLOCK
    changed = rng.sample(range(blocks), max(1, blocks // 50))
    for block in changed:
        day[block * BLOCK : (block + 1) * BLOCK] = text_like(rng, BLOCK)
    at = len(day) // 3 + 12345
    day[at:at] = rng.randbytes(4 * MiB)
    return day, len(changed) * BLOCK + 4 * MiB


def rate(size: int, seconds: float) -> str:
    return f"{size / MiB / seconds:8.0f} MiB/s"


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def chunks_pyfastcdc(data: bytes | bytearray, avg: int) -> Iterator[memoryview]:
    chunker = pyfastcdc.FastCDC(avg, min_size=avg // 4, max_size=avg * 4)
    for chunk in chunker.cut_stream(io.BytesIO(data)):
        yield chunk.data


def chunks_fastcdc(data: bytes | bytearray, avg: int) -> Iterator[memoryview]:
    view = memoryview(data)
    for chunk in fastcdc.fastcdc(view, avg // 4, avg, avg * 4):
        yield view[chunk.offset : chunk.offset + chunk.length]


def throughput(size: int) -> None:
    rng = random.Random(1)  # noqa: S311 - reproducible data, no secret
    samples = {"zeros": bytes(size), "text": text_like(rng, size), "random": rng.randbytes(size)}
    key = bytes(32)
    print(f"\n== throughput, {size // MiB} MiB per kind, 512 KiB average (one core)")
    for kind, data in samples.items():
        cuts: list[str] = []
        for name, chunker in (("pyfastcdc", chunks_pyfastcdc), ("fastcdc", chunks_fastcdc)):
            seconds = timed(lambda c=chunker, d=data: sum(1 for _ in c(d, 512 * KiB)))
            cuts.append(f"{name} {rate(size, seconds)}")
        hashing = timed(lambda d=data: blake3.blake3(d, key=key).digest())
        compressor = zstandard.ZstdCompressor(level=3)
        compressed = 0

        def compress(d: bytes = data, c: zstandard.ZstdCompressor = compressor) -> None:
            nonlocal compressed
            for i in range(0, len(d), 512 * KiB):
                compressed += len(c.compress(d[i : i + 512 * KiB]))

        squeezing = timed(compress)
        print(
            f"{kind:<7} {' | '.join(cuts)} | blake3 {rate(size, hashing)} | "
            f"zstd-3 {rate(size, squeezing)} ratio {compressed / size:.2f}"
        )


def dedup(size: int) -> None:
    day1 = vm_image(size)
    day2, changed = next_day(day1)
    print(
        f"\n== dedup: {size // MiB} MiB image; next day changes {changed / MiB:.1f} MiB "
        f"(2 % of 64 KiB blocks + 4 MiB unaligned insert)"
    )
    print(
        f"{'chunker':<10} {'avg':>6} {'chunks':>7} {'mean KiB':>9} {'new MiB':>8} "
        f"{'new/changed':>11} {'chunk+hash':>14} {'chunks/TiB':>11}"
    )
    key = bytes(32)
    for name, chunker in (("pyfastcdc", chunks_pyfastcdc), ("fastcdc", chunks_fastcdc)):
        for avg in (128 * KiB, 256 * KiB, 384 * KiB, 512 * KiB, 1024 * KiB):
            started = time.perf_counter()
            seen = {blake3.blake3(c, key=key).digest() for c in chunker(day1, avg)}
            seconds = time.perf_counter() - started
            count = 0
            new = 0
            for chunk in chunker(day2, avg):
                count += 1
                if blake3.blake3(chunk, key=key).digest() not in seen:
                    new += len(chunk)
            print(
                f"{name:<10} {avg // KiB:>5}K {count:>7} {len(day2) / count / KiB:>9.0f} "
                f"{new / MiB:>8.1f} {new / changed:>11.2f} {rate(len(day1), seconds):>14} "
                f"{int(2**40 / (len(day2) / count)):>11,}"
            )


def main() -> None:
    size = int(sys.argv[1]) * MiB if len(sys.argv) > 1 else 256 * MiB
    throughput(min(size, 64 * MiB))
    dedup(size)


if __name__ == "__main__":
    main()
