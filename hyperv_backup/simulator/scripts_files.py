"""``read-file-chunk``: the bytes of a host file, base64, as the PSRP fallback reader asks."""

from __future__ import annotations

import base64
import os

from hyperv_backup.ps_scripts import FileChunk, ReadFileChunkParams
from hyperv_backup.simulator.hoststate import Call, ScriptFailedError

__all__ = ["read_file_chunk"]


def read_file_chunk(call: Call, params: ReadFileChunkParams) -> FileChunk:
    """Up to ``Length`` bytes from ``Offset``; kind ``file_not_found`` for a missing file."""
    local = call.host.local(params.path)
    if not local.is_file():
        raise ScriptFailedError(
            "file_not_found",
            f"No file '{params.path}' on host {call.host.scenario.host.computer_name}.",
            params.path,
        )
    start = int(params.offset)
    with local.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(start)
        data = handle.read(params.length) if start < size else b""
    return FileChunk(
        data=base64.b64encode(data).decode("ascii"),
        eof=start + len(data) >= size,
        size=float(size),
    )
