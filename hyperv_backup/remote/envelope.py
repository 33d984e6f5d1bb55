"""The JSON result protocol between our PowerShell scripts and Python.

A script writes exactly one JSON document to its output stream::

    {"ok": true,  "result": {...}}
    {"ok": false, "error": {"kind": "...", "message": "...", "fqid": "...", "target": "..."}}

:func:`parse_envelope` accepts exactly that and raises :class:`ProtocolError` (quoting what
came back) for anything else: no output, two documents, non-JSON text, or error records with
no envelope (a script that crashed before its ``try`` or was not ours at all).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from hyperv_backup.errors import ProtocolError
from hyperv_backup.remote.session import Invocation

__all__ = ["Envelope", "Failure", "parse_envelope"]

logger = logging.getLogger(__name__)


class Failure(BaseModel):
    """The ``error`` object of a failed envelope."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    kind: str = "unexpected"
    message: str
    fqid: str | None = None
    target: str | None = None


class Envelope(BaseModel):
    """One parsed envelope: ``result`` when ``ok``, else ``error``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    result: Any = None
    error: Failure | None = None

    def model_post_init(self, __context: Any) -> None:
        if not self.ok and self.error is None:
            raise ValueError("an envelope with ok=false must carry an 'error' object")


def _describe(invocation: Invocation) -> str:
    """Everything that came back, as text, for a ProtocolError."""
    parts = [str(item) for item in invocation.output]
    parts += [f"[error record] {e.message} ({e.fqid})" for e in invocation.errors]
    return "\n".join(parts)


def parse_envelope(script: str, invocation: Invocation) -> Envelope:
    """The single envelope in ``invocation``'s output, or :class:`ProtocolError`."""
    documents = [
        item for item in invocation.output if not (isinstance(item, str) and not item.strip())
    ]
    seen = _describe(invocation)
    if not documents:
        if invocation.errors or invocation.failed:
            reason = "failed with error records but wrote no result envelope"
        else:
            reason = "wrote no output at all"
        raise ProtocolError(
            f"The host script {script!r} {reason}; it may not be a hyperv-backup script, or it "
            "crashed before it could report. See the output below.",
            script=script,
            output=seen,
        )
    if len(documents) > 1:
        raise ProtocolError(
            f"The host script {script!r} wrote {len(documents)} output objects; exactly one "
            "JSON envelope was expected (something in it writes to the output stream).",
            script=script,
            output=seen,
        )
    document = documents[0]
    if not isinstance(document, str):
        raise ProtocolError(
            f"The host script {script!r} wrote a {type(document).__name__} object instead of "
            "a JSON envelope string.",
            script=script,
            output=seen,
        )
    try:
        raw: Any = json.loads(document)
        envelope = Envelope.model_validate(raw)
    except (json.JSONDecodeError, ValidationError, ValueError) as err:
        raise ProtocolError(
            f"The host script {script!r} wrote something that is not a result envelope "
            f"({type(err).__name__}: {str(err).splitlines()[0]}).",
            script=script,
            output=seen,
        ) from None
    for record in invocation.errors:
        logger.warning(
            "%s reported a non-fatal error: %s (%s)", script, record.message, record.fqid
        )
    return envelope
