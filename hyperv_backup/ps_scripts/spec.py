"""What every host script shares: its parameter base model, its spec, its marker line."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

__all__ = ["MARKER_PREFIX", "ScriptParams", "ScriptSpec", "marker_of"]

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
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**31:
                # pypsrp serialises every Python int as a 32-bit integer.
                raise ValueError(f"{name}={value} does not fit a 32-bit integer; use a float")
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
    return (
        resources.files("hyperv_backup.ps_scripts").joinpath(filename).read_text(encoding="utf-8")
    )


def marker_of(script_text: str) -> str | None:
    """The script name from a ``# hyperv-backup-script: <name>`` marker line, if any."""
    match = _MARKER_RE.search(script_text)
    return match.group(1) if match else None
