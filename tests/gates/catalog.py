"""The cmdlet catalog: which commands and parameters exist, and how names resolve.

The catalog is ``powershell-cmdlets.json`` beside this file, a copy of the shared reference,
so that the tests run from a bare clone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

CATALOG_PATH = Path(__file__).with_name("powershell-cmdlets.json")
"""The cmdlet catalog, a copy of ``shared/reference/powershell-cmdlets.json``."""


# Windows PowerShell 5.1's built-in aliases (Get-Alias on a fresh Windows Server), besides the
# ones the catalog lists per cmdlet. Targets that are not in the catalog (``help``, ``mkdir``,
# ``powershell_ise.exe``) are functions or programs; the catalog gate rejects them too.
_BUILTIN_ALIASES: Mapping[str, str] = {
    "%": "ForEach-Object", "?": "Where-Object", "ac": "Add-Content", "asnp": "Add-PSSnapin",
    "cat": "Get-Content", "cd": "Set-Location", "chdir": "Set-Location", "clc": "Clear-Content",
    "clear": "Clear-Host", "clhy": "Clear-History", "cli": "Clear-Item",
    "clp": "Clear-ItemProperty", "cls": "Clear-Host", "clv": "Clear-Variable",
    "cnsn": "Connect-PSSession", "compare": "Compare-Object", "copy": "Copy-Item",
    "cp": "Copy-Item", "cpi": "Copy-Item", "cpp": "Copy-ItemProperty",
    "curl": "Invoke-WebRequest", "cvpa": "Convert-Path", "dbp": "Disable-PSBreakpoint",
    "del": "Remove-Item", "diff": "Compare-Object", "dir": "Get-ChildItem",
    "dnsn": "Disconnect-PSSession", "ebp": "Enable-PSBreakpoint", "echo": "Write-Output",
    "epal": "Export-Alias", "epcsv": "Export-Csv", "epsn": "Export-PSSession",
    "erase": "Remove-Item", "etsn": "Enter-PSSession", "exsn": "Exit-PSSession",
    "fc": "Format-Custom", "fhx": "Format-Hex", "fl": "Format-List",
    "foreach": "ForEach-Object", "ft": "Format-Table", "fw": "Format-Wide",
    "gal": "Get-Alias", "gbp": "Get-PSBreakpoint", "gc": "Get-Content", "gcb": "Get-Clipboard",
    "gci": "Get-ChildItem", "gcm": "Get-Command", "gcs": "Get-PSCallStack",
    "gdr": "Get-PSDrive", "ghy": "Get-History", "gi": "Get-Item", "gin": "Get-ComputerInfo",
    "gjb": "Get-Job", "gl": "Get-Location", "gm": "Get-Member", "gmo": "Get-Module",
    "gp": "Get-ItemProperty", "gps": "Get-Process", "gpv": "Get-ItemPropertyValue",
    "group": "Group-Object", "gsn": "Get-PSSession", "gsnp": "Get-PSSnapin",
    "gsv": "Get-Service", "gtz": "Get-TimeZone", "gu": "Get-Unique", "gv": "Get-Variable",
    "gwmi": "Get-WmiObject", "h": "Get-History", "history": "Get-History",
    "icm": "Invoke-Command", "iex": "Invoke-Expression", "ihy": "Invoke-History",
    "ii": "Invoke-Item", "ipal": "Import-Alias", "ipcsv": "Import-Csv", "ipmo": "Import-Module",
    "ipsn": "Import-PSSession", "irm": "Invoke-RestMethod", "ise": "powershell_ise.exe",
    "iwmi": "Invoke-WmiMethod", "iwr": "Invoke-WebRequest", "kill": "Stop-Process",
    "lp": "Out-Printer", "ls": "Get-ChildItem", "man": "help", "md": "mkdir",
    "measure": "Measure-Object", "mi": "Move-Item", "mount": "New-PSDrive", "move": "Move-Item",
    "mp": "Move-ItemProperty", "mv": "Move-Item", "nal": "New-Alias", "ndr": "New-PSDrive",
    "ni": "New-Item", "nmo": "New-Module", "npssc": "New-PSSessionConfigurationFile",
    "nsn": "New-PSSession", "nv": "New-Variable", "ogv": "Out-GridView", "oh": "Out-Host",
    "popd": "Pop-Location", "ps": "Get-Process", "pushd": "Push-Location",
    "pwd": "Get-Location", "r": "Invoke-History", "rbp": "Remove-PSBreakpoint",
    "rcjb": "Receive-Job", "rcsn": "Receive-PSSession", "rd": "Remove-Item",
    "rdr": "Remove-PSDrive", "ren": "Rename-Item", "ri": "Remove-Item", "rjb": "Remove-Job",
    "rm": "Remove-Item", "rmdir": "Remove-Item", "rmo": "Remove-Module", "rni": "Rename-Item",
    "rnp": "Rename-ItemProperty", "rp": "Remove-ItemProperty", "rsn": "Remove-PSSession",
    "rsnp": "Remove-PSSnapin", "rujb": "Resume-Job", "rv": "Remove-Variable",
    "rvpa": "Resolve-Path", "rwmi": "Remove-WmiObject", "sajb": "Start-Job",
    "sal": "Set-Alias", "saps": "Start-Process", "sasv": "Start-Service",
    "sbp": "Set-PSBreakpoint", "sc": "Set-Content", "scb": "Set-Clipboard",
    "select": "Select-Object", "set": "Set-Variable", "shcm": "Show-Command",
    "si": "Set-Item", "sl": "Set-Location", "sleep": "Start-Sleep", "sls": "Select-String",
    "sort": "Sort-Object", "sp": "Set-ItemProperty", "spjb": "Stop-Job",
    "spps": "Stop-Process", "spsv": "Stop-Service", "start": "Start-Process",
    "sujb": "Suspend-Job", "sv": "Set-Variable", "swmi": "Set-WmiInstance",
    "tee": "Tee-Object", "trcm": "Trace-Command", "type": "Get-Content",
    "wget": "Invoke-WebRequest", "where": "Where-Object", "wjb": "Wait-Job",
    "write": "Write-Output",
}  # fmt: skip


@dataclass(frozen=True)
class ParameterMatch:
    """How a written parameter name resolves against a command's parameters.

    ``kind`` is ``exact``, ``alias`` (an alias of ``canonical``), ``prefix`` (an unambiguous
    abbreviation of ``canonical``), ``ambiguous`` (a prefix of all ``candidates``) or
    ``unknown``.
    """

    kind: Literal["exact", "alias", "prefix", "ambiguous", "unknown"]
    canonical: str | None = None
    candidates: tuple[str, ...] = ()
    command: str = ""
    """The command whose parameters were searched."""


@dataclass(frozen=True)
class Signature:
    """The parameters a command accepts: full names, and aliases (lower case → full name)."""

    command: str
    names: tuple[str, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)

    def resolve(self, written: str) -> ParameterMatch:
        """Resolve ``-written`` the way PowerShell binds it: exact, alias, then prefix."""
        key, command = written.lower(), self.command
        full = {name.lower(): name for name in self.names}
        if key in full:
            return ParameterMatch("exact", full[key], command=command)
        if key in self.aliases:
            return ParameterMatch("alias", self.aliases[key], command=command)
        candidates = {name for lower, name in full.items() if lower.startswith(key)}
        candidates |= {name for alias, name in self.aliases.items() if alias.startswith(key)}
        if len(candidates) == 1:
            return ParameterMatch("prefix", candidates.pop(), command=command)
        if candidates:
            return ParameterMatch("ambiguous", None, tuple(sorted(candidates)), command)
        return ParameterMatch("unknown", command=command)


@dataclass(frozen=True)
class Cmdlet:
    """One catalog entry, reduced to what the gates need."""

    name: str
    module: str | None
    parameters: tuple[str, ...]
    parameter_aliases: Mapping[str, str]
    supports_should_process: bool


@dataclass(frozen=True)
class Catalog:
    """The cmdlet catalog: names are looked up case-insensitively.

    It covers the Hyper-V module as documented for Windows Server 2016, 2019, 2022 and 2025,
    a few SmbShare, Storage, FailoverClusters and ServerManager cmdlets (2022 docs), and the
    Windows PowerShell 5.1 core modules. ``versions`` and ``parameter_versions`` only exist for
    Hyper-V cmdlets; other cmdlets are taken to exist on every supported release (Windows
    PowerShell 5.1 is built into Windows Server 2016 and later).
    """

    cmdlets: Mapping[str, Cmdlet]
    """Lower-case name → cmdlet."""
    command_aliases: Mapping[str, str]
    """Lower-case alias → the full command name (not necessarily a catalog cmdlet)."""
    common_parameters: tuple[str, ...]
    common_parameter_aliases: Mapping[str, str]
    versions: Mapping[str, tuple[str, ...]]
    """Hyper-V cmdlet → the releases whose docs have it."""
    parameter_versions: Mapping[str, Mapping[str, tuple[str, ...]]]
    """Hyper-V cmdlet → parameter → releases, for parameters not documented everywhere."""

    def cmdlet(self, name: str) -> Cmdlet | None:
        """The cmdlet called ``name`` (any case), if the catalog has it."""
        return self.cmdlets.get(name.lower())

    def signature(self, cmdlet: Cmdlet) -> Signature:
        """All parameters of ``cmdlet``: its own, the common ones, and WhatIf/Confirm."""
        names = list(cmdlet.parameters) + list(self.common_parameters)
        aliases = dict(self.common_parameter_aliases)
        if cmdlet.supports_should_process:
            names += ["WhatIf", "Confirm"]
            aliases |= {"wi": "WhatIf", "cf": "Confirm"}
        aliases |= cmdlet.parameter_aliases
        return Signature(cmdlet.name, tuple(dict.fromkeys(names)), aliases)


@cache
def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    """Read ``powershell-cmdlets.json`` (cached per path)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    cmdlets: dict[str, Cmdlet] = {}
    aliases = {alias: target for alias, target in _BUILTIN_ALIASES.items()}
    for name, entry in data["cmdlets"].items():
        parameter_aliases = {
            alias.lower(): parameter
            for parameter, info in entry["parameters"].items()
            for alias in info.get("aliases", [])
        }
        cmdlets[name.lower()] = Cmdlet(
            name=name,
            module=entry.get("module"),
            parameters=tuple(entry["parameters"]),
            parameter_aliases=parameter_aliases,
            supports_should_process=bool(entry.get("supports_should_process")),
        )
        aliases |= {alias.lower(): name for alias in entry.get("aliases", [])}
    return Catalog(
        cmdlets=cmdlets,
        command_aliases=aliases,
        common_parameters=tuple(data["common_parameters"]),
        common_parameter_aliases={
            k.lower(): v for k, v in data["common_parameter_aliases"].items()
        },
        versions={name: tuple(releases) for name, releases in data["versions"].items()},
        parameter_versions={
            name: {parameter: tuple(releases) for parameter, releases in per_parameter.items()}
            for name, per_parameter in data["parameter_versions"].items()
        },
    )
