"""The seam between the simulator's WinRM/PSRP endpoint and the emulated Hyper-V host.

The endpoint (``wsman.py``) speaks HTTP, SOAP and PSRP; for each pipeline a client starts it
builds a :class:`ScriptInvocation` and asks a :class:`ScriptHandler` what PowerShell would have
produced, as a :class:`ScriptOutcome`. The handler knows nothing about the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "DropConnection",
    "ErrorRecordSpec",
    "ScriptHandler",
    "ScriptInvocation",
    "ScriptOutcome",
]


@dataclass(frozen=True)
class ScriptInvocation:
    """One pipeline as the client sent it.

    ``script`` is the text of the first command when it is a script (``add_script``), or the
    command name (``add_cmdlet``) otherwise; ``parameters`` are that command's named
    parameters as Python values (strings, ints, bools, lists, dicts ...), exactly as they
    arrived; ``arguments`` its positional arguments; ``is_script`` tells the two apart.
    ``username`` is the authenticated user.
    """

    script: str
    parameters: dict[str, Any] = field(default_factory=dict)
    arguments: list[Any] = field(default_factory=list)
    is_script: bool = True
    username: str = ""


@dataclass(frozen=True)
class ErrorRecordSpec:
    """An ErrorRecord to write to the pipeline's error stream."""

    message: str
    fqid: str = "SimulatedError"
    category: int = 0
    target: str | None = None


@dataclass(frozen=True)
class ScriptOutcome:
    """What the pipeline produces.

    ``output`` objects go to the output stream in order (strings for our scripts);
    ``errors`` to the error stream. ``failed=True`` ends the pipeline in the Failed state
    (a terminating error: the last of ``errors`` is its reason); otherwise it Completes.
    """

    output: list[Any] = field(default_factory=list)
    errors: list[ErrorRecordSpec] = field(default_factory=list)
    failed: bool = False


class DropConnection(Exception):  # noqa: N818 - a signal, not an error condition
    """Raised by a handler to make the endpoint behave like a host whose WinRM died.

    The endpoint closes the client's TCP connection without answering and forgets every shell
    (runspace pool) it holds, so the client's pool is broken and must be recreated.
    """


class ScriptHandler(Protocol):
    """Answers pipelines. Called on a worker thread; may block (slow operations)."""

    def __call__(self, invocation: ScriptInvocation) -> ScriptOutcome:
        """Run ``invocation`` and describe what it produced."""
        ...
