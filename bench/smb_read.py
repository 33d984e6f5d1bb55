"""SMB read throughput on loopback: SMBReader against a private Samba, and the PSRP fallback.

Not a test: prints figures. Run as root with ``.venv/bin/python bench/smb_read.py [MiB]``
(default 256 MiB; needs the ``samba`` package).

For one file of random data: plain ``smbclient`` (one 4 MiB read at a time, for comparison),
then SMBReader with SMB 3 encryption off and on and 1, 2 and 4 reads in flight per file; each
read hashed with SHA-256 on the way, as a backup does. Then PSRPReader through the simulator
on a smaller file, for the ratio.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import smbclient
from pydantic import SecretStr

from hyperv_backup import HyperVHost, PSRPReader, SMBReader
from hyperv_backup.simulator import SambaServer, Simulator

MiB = 2**20
PASSWORD = secrets.token_urlsafe(12)  # a throwaway login for the private server


def consume(read: Callable[[int], bytes], size: int) -> float:
    """MB/s of reading everything in 4 MiB pieces, each hashed."""
    digest = hashlib.sha256()
    started = time.perf_counter()
    while chunk := read(4 * MiB):
        digest.update(chunk)
    return size / (time.perf_counter() - started) / 1e6


def main() -> None:
    size = int(sys.argv[1]) * MiB if len(sys.argv) > 1 else 256 * MiB
    with tempfile.TemporaryDirectory() as work:
        drive = Path(work) / "D"
        drive.mkdir()
        (drive / "disk.bin").write_bytes(os.urandom(size))
        print(f"file: {size // MiB} MiB of random data, CPUs: {os.cpu_count()}")
        with SambaServer({"D$": drive}, password=PASSWORD) as samba:
            for encrypt in (False, True):
                cache: dict[str, object] = {}
                smbclient.register_session(
                    samba.host,
                    username=samba.username,
                    password=PASSWORD,
                    port=samba.port,
                    encrypt=encrypt,
                    connection_cache=cache,
                )
                unc = samba.unc("D$", "disk.bin")
                with smbclient.open_file(
                    unc, mode="rb", buffering=0, port=samba.port, connection_cache=cache
                ) as raw:
                    rate = consume(raw.read, size)
                smbclient.reset_connection_cache(connection_cache=cache)
                print(f"plain smbclient, encrypt={encrypt!s:5}: {rate:6.0f} MB/s")
                for depth in (1, 2, 4):
                    with (
                        SMBReader(
                            samba.host,
                            port=samba.port,
                            username=samba.username,
                            password=SecretStr(PASSWORD),
                            encrypt=encrypt,
                            read_ahead=depth,
                        ) as reader,
                        reader.open(r"D:\disk.bin") as stream,
                    ):
                        rate = consume(stream.read, size)
                    print(f"SMBReader, encrypt={encrypt!s:5} read_ahead={depth}: {rate:6.0f} MB/s")
    psrp_size = min(size, 32 * MiB)
    with Simulator() as sim, HyperVHost(sim.connection_settings()) as host:
        sim.local_path("D:\\").joinpath("disk.bin").write_bytes(os.urandom(psrp_size))
        with PSRPReader(host).open(r"D:\disk.bin") as stream:
            rate = consume(stream.read, psrp_size)
        print(f"PSRPReader (simulator, {psrp_size // MiB} MiB): {rate:6.0f} MB/s")


if __name__ == "__main__":
    main()
