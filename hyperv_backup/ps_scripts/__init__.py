"""The PowerShell scripts hyperv-backup runs on the host, and their typed contracts.

Each ``<name>.ps1`` in this package starts with ``# hyperv-backup-script: <name>`` and a
``param()`` block, targets Windows PowerShell 5.1, and writes exactly one JSON envelope::

    {"ok": true,  "result": {...}}
    {"ok": false, "error": {"kind": "...", "message": "...", "fqid": "...", "target": "..."}}

The registry below pairs every script with a pydantic *param model* (validated before the
script is sent; each field's alias is the PowerShell parameter name) and a *result model*
(validated after it answers). Values travel as PSRP parameters, never inside the script text.

PowerShell parameter types follow the Python field types: ``str`` → ``[string]``,
``list[str]`` → ``[string[]]``, ``int`` → ``[int]``, ``float`` → ``[double]``,
``bool`` → ``[switch]``, ``UUID`` → ``[guid]``. The tests check each ``param()`` block
against its model with exactly this table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from hyperv_backup.models import HostInfo, VMInfo

__all__ = [
    "SCRIPTS",
    "GetHostInfoParams",
    "GetInventoryParams",
    "InventoryResult",
    "ScriptParams",
    "ScriptSpec",
    "marker_of",
    "script_spec",
]

MARKER_PREFIX = "# hyperv-backup-script:"
_MARKER_RE = re.compile(r"^\s*#\s*hyperv-backup-script:\s*([a-z0-9-]+)\s*$", re.MULTILINE)


class ScriptParams(BaseModel):
    """Base of all param models: frozen, strict about unknown fields, aliases = PS names."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def to_powershell(self) -> dict[str, Any]:
        """The PSRP parameters to send: PowerShell names → JSON-compatible values.

        ``None`` values and ``False`` switches are left out, as PowerShell would not see them.
        """
        out: dict[str, Any] = {}
        for name, value in self.model_dump(mode="json", by_alias=True).items():
            if value is None or value is False:
                continue
            out[name] = value
        return out


P = TypeVar("P", bound=ScriptParams)
R = TypeVar("R", bound=BaseModel)


@dataclass(frozen=True)
class ScriptSpec(Generic[P, R]):
    """One script: its name, contracts and default deadline."""

    name: str
    params: type[P]
    result: type[R]
    deadline: float | None = None
    """Seconds; a longer default than ``Timeouts.script`` for scripts that run for hours."""

    @property
    def filename(self) -> str:
        """The file inside this package."""
        return f"{self.name}.ps1"

    @property
    def text(self) -> str:
        """The script source, as shipped in the package."""
        return _script_text(self.filename)


@cache
def _script_text(filename: str) -> str:
    return resources.files(__name__).joinpath(filename).read_text(encoding="utf-8")


def marker_of(script_text: str) -> str | None:
    """The script name from a ``# hyperv-backup-script: <name>`` marker line, if any."""
    match = _MARKER_RE.search(script_text)
    return match.group(1) if match else None


# --- get-host-info -------------------------------------------------------------------------


class GetHostInfoParams(ScriptParams):
    """``get-host-info`` takes no parameters."""


# --- get-inventory -------------------------------------------------------------------------


class GetInventoryParams(ScriptParams):
    """Which VMs to describe: exact names or wildcards (``*``, ``?``, ``[a-c]``); empty = all.

    An exact name that matches no VM is an error (``vm_not_found``); a wildcard that matches
    nothing is not.
    """

    names: list[str] = Field(default_factory=list, alias="Name")


class InventoryResult(BaseModel):
    """The VMs that matched, in host order, each once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vms: list[VMInfo]


SCRIPTS: dict[str, ScriptSpec[Any, Any]] = {
    spec.name: spec
    for spec in (
        ScriptSpec("get-host-info", GetHostInfoParams, HostInfo),
        ScriptSpec("get-inventory", GetInventoryParams, InventoryResult),
    )
}
"""Every script hyperv-backup can run, by name."""


def script_spec(name: str) -> ScriptSpec[Any, Any]:
    """The registered script called ``name``; ``KeyError`` names the known ones."""
    try:
        return SCRIPTS[name]
    except KeyError:
        raise KeyError(f"unknown script {name!r}; known: {', '.join(sorted(SCRIPTS))}") from None
