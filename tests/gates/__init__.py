"""Static gates for the PowerShell scripts hyperv-backup ships.

There is no PowerShell on the machines that build and test hyperv-backup, so every ``.ps1``
in ``hyperv_backup/ps_scripts`` is checked statically instead, by the gates below. Each gate
takes the script source as ``bytes`` and returns a list of :class:`Finding` (empty = passed):

``syntax_problems``
    tree-sitter-powershell reports no ERROR or MISSING node. Strict on purpose: the grammar
    rejects bare-word comma lists (``Select-Object Name, Path``) that PowerShell accepts;
    we quote such lists (``-Property 'Name', 'Path'``) instead of weakening the gate.
``ps51_problems``
    No PowerShell 6+/7 feature: Windows PowerShell 5.1 is what every Hyper-V host runs.
``alias_problems``
    Commands and parameters are spelled in full, not by alias or abbreviation.
``catalog_problems``
    Every command and parameter exists in the cmdlet catalog (``powershell-cmdlets.json``).
``release_problems`` (and ``release_gaps``, the same as a dict)
    Every cmdlet and parameter used is documented for every Windows Server release we support
    (2016, 2019, 2022, 2025; the catalog has no 2012 / 2012 R2 docs).
``param_contract_problems`` (includes ``hygiene_problems``)
    The ``param()`` block matches the script's pydantic param model, and the script has its
    marker line, ``[CmdletBinding()]``, ``$ErrorActionPreference = 'Stop'``, and runs no
    generated code (``Invoke-Expression``, ``Add-Type`` compilation, ``[scriptblock]::Create``).

``all_problems`` runs them all. Every finding has a rule id such as ``ps51/ternary``; the
docstring of each gate lists its rules.

Where it can, a gate works on the syntax tree. PowerShell 7 operators (``??``, ``? :``,
``?.``) only show up there as ERROR nodes, so :func:`ps51_problems` also scans the raw code,
after a small lexer (:func:`code_mask`) has blanked strings, here-strings and comments.

The cmdlet catalog is ``powershell-cmdlets.json`` beside this file, a copy of the shared
reference, so that the tests run from a bare clone.
"""

from __future__ import annotations

import itertools
import json
import re
import types
import typing
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

import tree_sitter
import tree_sitter_powershell
from pydantic import BaseModel

__all__ = [
    "CATALOG_PATH",
    "SUPPORTED_RELEASES",
    "Catalog",
    "Finding",
    "ParameterMatch",
    "Signature",
    "alias_problems",
    "all_problems",
    "catalog_problems",
    "code_mask",
    "hygiene_problems",
    "load_catalog",
    "param_contract_problems",
    "parse",
    "powershell_type",
    "ps51_problems",
    "release_gaps",
    "release_problems",
    "syntax_problems",
]

CATALOG_PATH = Path(__file__).with_name("powershell-cmdlets.json")
"""The cmdlet catalog, a copy of ``shared/reference/powershell-cmdlets.json``."""

SUPPORTED_RELEASES: tuple[str, ...] = ("2016", "2019", "2022", "2025")
"""The Windows Server releases hyperv-backup supports, as the catalog names them."""


# --- findings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One problem in a script: a rule id (``gate/what``), a 1-based position and a message."""

    rule: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.rule}: {self.message}"


def _sorted_unique(findings: list[Finding]) -> list[Finding]:
    """Findings in source order, each (rule, line, column) once."""
    unique: dict[tuple[str, int, int], Finding] = {}
    for finding in findings:
        unique.setdefault((finding.rule, finding.line, finding.column), finding)
    return sorted(unique.values(), key=lambda f: (f.line, f.column, f.rule))


class _Source:
    """A script's bytes and text, with 1-based (line, column) lookups in characters."""

    def __init__(self, source: bytes) -> None:
        self.raw = source
        self.text = source.decode("utf-8", errors="replace")

    def at_offset(self, offset: int) -> tuple[int, int]:
        """The position of a character offset into :attr:`text`."""
        line_start = self.text.rfind("\n", 0, offset) + 1
        return self.text.count("\n", 0, offset) + 1, offset - line_start + 1

    def at_node(self, node: tree_sitter.Node) -> tuple[int, int]:
        """The position where a syntax node starts (tree-sitter counts columns in bytes)."""
        row, byte_column = node.start_point
        line_start = node.start_byte - byte_column
        prefix = self.raw[line_start : node.start_byte].decode("utf-8", errors="replace")
        return row + 1, len(prefix) + 1

    def line_text(self, line: int) -> str:
        """Line ``line`` (1-based), stripped and shortened for messages."""
        lines = self.text.split("\n")
        text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        return text if len(text) <= 70 else text[:67] + "..."

    def finding_at_node(self, rule: str, node: tree_sitter.Node, message: str) -> Finding:
        line, column = self.at_node(node)
        return Finding(rule, line, column, message)

    def finding_at_offset(self, rule: str, offset: int, message: str) -> Finding:
        line, column = self.at_offset(offset)
        return Finding(rule, line, column, message)


# --- parsing -------------------------------------------------------------------------------

_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


@lru_cache(maxsize=64)
def parse(source: bytes) -> tree_sitter.Tree:
    """The tree-sitter-powershell syntax tree of a script (cached; do not edit the tree)."""
    return _PARSER.parse(source)


def _walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    """``node`` and all its descendants, in source order (iterative: trees can be deep)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def _text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode("utf-8", errors="replace")


def _child(node: tree_sitter.Node, node_type: str) -> tree_sitter.Node | None:
    """The first direct child of a given type."""
    return next((c for c in node.children if c.type == node_type), None)


# --- gate: syntax --------------------------------------------------------------------------

_BARE_WORD_LIST_HINT = (
    "; if this is a bare-word list such as `Select-Object Name, Path`, quote the items "
    "(`-Property 'Name', 'Path'`): the grammar rejects bare-word lists and this gate stays strict"
)
_NUMBER_SUFFIX = re.compile(r"\b\d+(?:\.\d+)?(?:[kmgtp]b|[ld])\b", re.IGNORECASE)
_NUMBER_SUFFIX_HINT = (
    "; the grammar does not read numbers with a suffix (`1GB`, `10L`) inside expressions: "
    "write the value out (`1073741824`)"
)


def syntax_problems(source: bytes) -> list[Finding]:
    """ERROR and MISSING nodes of the syntax tree (rules ``syntax/error``, ``syntax/missing``).

    An ERROR node is reported once, at its start, and not searched for nested errors. Two
    constructs that PowerShell accepts are errors here, and the message says so: bare-word
    comma lists (``Select-Object Name, Path``) and numbers with a suffix (``-gt 1GB``).
    """
    src = _Source(source)
    findings: list[Finding] = []
    stack = [parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR":
            line, column = src.at_node(node)
            message = f"cannot parse `{src.line_text(line)}`"
            if _looks_like_bare_word_list(node):
                message += _BARE_WORD_LIST_HINT
            if _NUMBER_SUFFIX.search(code_mask(_text(node))):
                message += _NUMBER_SUFFIX_HINT
            findings.append(Finding("syntax/error", line, column, message))
            continue
        if node.is_missing:
            findings.append(
                src.finding_at_node("syntax/missing", node, f"missing `{node.type}` here")
            )
        stack.extend(reversed(node.children))
    return _sorted_unique(findings)


def _looks_like_bare_word_list(error: tree_sitter.Node) -> bool:
    """The grammar's known false positive: ``, word`` left over after a command argument."""
    children = error.children
    return any(
        a.type == "," and b.type in {"simple_name", "generic_token"}
        for a, b in itertools.pairwise(children)
    )


# --- lexer: strings and comments -------------------------------------------------------------

_SINGLE_QUOTES = "'\u2018\u2019\u201a\u201b"
_DOUBLE_QUOTES = '"\u201c\u201d\u201e'
_HERE_OPENER = re.compile(f"@[{_SINGLE_QUOTES}{_DOUBLE_QUOTES}][ \t]*\r?\n")
_BEFORE_COMMENT = frozenset(" \t\r\n;|&(){}[],=" + _SINGLE_QUOTES + _DOUBLE_QUOTES)

SegmentKind = Literal["code", "comment", "verbatim", "expandable"]


@dataclass(frozen=True)
class _Segment:
    """A run of the source: code, a comment, or the literal text of a string.

    ``verbatim`` strings are single-quoted ones and ``@' '@`` here-strings; ``expandable``
    are double-quoted ones and ``@" "@``, without their ``$( )`` sub-expressions, which are
    segments of ``code`` of their own (``$(`` and ``)`` included).
    """

    kind: SegmentKind
    start: int
    end: int


class _Lexer:
    """Just enough of PowerShell's tokenizer to tell code from strings and comments."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.segments: list[_Segment] = []

    def run(self) -> list[_Segment]:
        self._code(nested=False)
        return self.segments

    def _emit(self, kind: SegmentKind, start: int, end: int) -> None:
        end = min(end, len(self.text))  # a backtick at the very end steps past it
        if end > start:
            self.segments.append(_Segment(kind, start, end))

    def _code(self, *, nested: bool) -> None:
        """Code up to the end; when ``nested``, a sub-expression from ``$(`` to its ``)``."""
        text, depth, start = self.text, 0, self.pos
        if nested:
            self.pos += 2  # "$("
        while self.pos < len(text):
            i, char = self.pos, text[self.pos]
            if char == "`":
                self.pos += 2
                continue
            if char == "(":
                depth += 1
            elif char == ")" and nested:
                if depth == 0:
                    self.pos += 1
                    break
                depth -= 1
            elif text.startswith("<#", i) or (char == "#" and self._starts_token(i)):
                self._emit("code", start, i)
                self._comment()
                start = self.pos
                continue
            elif _HERE_OPENER.match(text, i):
                self._emit("code", start, i)
                self._here_string()
                start = self.pos
                continue
            elif char in _SINGLE_QUOTES or char in _DOUBLE_QUOTES:
                self._emit("code", start, i)
                self._string()
                start = self.pos
                continue
            elif text.startswith("${", i):
                self._braced_variable()
                continue
            self.pos += 1
        self._emit("code", start, self.pos)

    def _starts_token(self, i: int) -> bool:
        return i == 0 or self.text[i - 1] in _BEFORE_COMMENT

    def _comment(self) -> None:
        text, start = self.text, self.pos
        if text.startswith("<#", start):
            end = text.find("#>", start + 2)
            self.pos = len(text) if end < 0 else end + 2
        else:
            end = text.find("\n", start)
            self.pos = len(text) if end < 0 else end
        self._emit("comment", start, self.pos)

    def _braced_variable(self) -> None:
        text = self.text
        self.pos += 2
        while self.pos < len(text) and text[self.pos] != "}":
            self.pos += 2 if text[self.pos] == "`" else 1
        self.pos += 1

    def _string(self) -> None:
        """A quoted string; a doubled quote is an escaped quote."""
        text, start = self.text, self.pos
        quotes = _SINGLE_QUOTES if text[start] in _SINGLE_QUOTES else _DOUBLE_QUOTES
        expandable = quotes == _DOUBLE_QUOTES
        self.pos += 1
        while self.pos < len(text):
            char = text[self.pos]
            if char in quotes:
                if self.pos + 1 < len(text) and text[self.pos + 1] in quotes:
                    self.pos += 2
                    continue
                self.pos += 1
                break
            if expandable:
                start = self._expandable_step(start)
            else:
                self.pos += 1
        self._emit("expandable" if expandable else "verbatim", start, self.pos)

    def _here_string(self) -> None:
        """``@'...'@`` or ``@"..."@``: ends at a line that starts with the closing quote."""
        text, start = self.text, self.pos
        quotes = _SINGLE_QUOTES if text[start + 1] in _SINGLE_QUOTES else _DOUBLE_QUOTES
        expandable = quotes == _DOUBLE_QUOTES
        self.pos = text.index("\n", start) + 1
        while self.pos < len(text):
            if (
                text[self.pos] in quotes
                and text.startswith("@", self.pos + 1)
                and (self.pos == 0 or text[self.pos - 1] == "\n")
            ):
                self.pos += 2
                break
            if expandable:
                start = self._expandable_step(start)
            else:
                self.pos += 1
        self._emit("expandable" if expandable else "verbatim", start, self.pos)

    def _expandable_step(self, start: int) -> int:
        """One step inside an expandable string; returns where its current segment starts."""
        text = self.text
        if text[self.pos] == "`":
            self.pos += 2
        elif text.startswith("$(", self.pos):
            self._emit("expandable", start, self.pos)
            self._code(nested=True)
            return self.pos
        else:
            self.pos += 1
        return start


def _segments(text: str) -> list[_Segment]:
    return _Lexer(text).run()


def code_mask(text: str) -> str:
    """``text`` with every string replaced by ``_`` and every comment by spaces.

    Offsets and line breaks are kept, so positions in the mask are positions in ``text``.
    The code inside ``$( )`` in double-quoted strings is kept: it is code.
    """
    chars = list(text)
    for segment in _segments(text):
        if segment.kind == "code":
            continue
        fill = " " if segment.kind == "comment" else "_"
        for i in range(segment.start, segment.end):
            if chars[i] not in "\r\n":
                chars[i] = fill
    return "".join(chars)


# --- the cmdlet catalog ----------------------------------------------------------------------

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


# --- commands in the tree --------------------------------------------------------------------


@dataclass(frozen=True)
class _Parameter:
    written: str
    """The name as written, without the dash and a trailing colon."""
    node: tree_sitter.Node


@dataclass(frozen=True)
class _Command:
    """A command invocation with a name known before it runs (not ``& $variable``)."""

    name: str
    name_node: tree_sitter.Node
    parameters: tuple[_Parameter, ...]
    arguments: tuple[tree_sitter.Node, ...]
    """The other command elements, in order."""


_DASHES = "-\u2013\u2014\u2015"
# The grammar reads some numbers as command names: a range start (`1..3`, `0..($n - 1)`) and
# numbers with a multiplier or type suffix (`1GB`, `10L`) where an expression begins.
_NUMBER_LOOKALIKE = re.compile(r"\d+(?:\.\.|(?:\.\d+)?(?:[kmgtp]b)?[ld]?$)", re.IGNORECASE)


def _commands(tree: tree_sitter.Tree) -> list[_Command]:
    """Every command invocation in the script whose name is static text."""
    commands = []
    for node in _walk(tree.root_node):
        if node.type != "command":
            continue
        name_node = _static_command_name(node)
        if name_node is None or _NUMBER_LOOKALIKE.match(_text(name_node)):
            continue
        parameters: list[_Parameter] = []
        arguments: list[tree_sitter.Node] = []
        elements = _child(node, "command_elements")
        for element in elements.named_children if elements else []:
            if element.type == "command_parameter":
                written = _text(element).lstrip(_DASHES).rstrip(":")
                parameters.append(_Parameter(written, element))
            elif element.type != "command_argument_sep":
                arguments.append(element)
        commands.append(_Command(_text(name_node), name_node, tuple(parameters), tuple(arguments)))
    return commands


def _static_command_name(command: tree_sitter.Node) -> tree_sitter.Node | None:
    name = _child(command, "command_name")
    if name is not None:
        return name
    expression = _child(command, "command_name_expr")  # after `&` or `.`
    if expression is None or not expression.named_children:
        return None
    inner = expression.named_children[0]
    if inner.type == "command_name":
        return inner
    if inner.type == "path_command_name" and all(
        c.type == "path_command_name_token" for c in inner.named_children
    ):
        return inner
    return None


@dataclass(frozen=True)
class _Function:
    """A function the script defines, and its signature when it declares parameters."""

    name: str
    signature: Signature | None


def _functions(tree: tree_sitter.Tree, catalog: Catalog) -> dict[str, _Function]:
    """Functions and filters defined anywhere in the script, by lower-case name."""
    functions: dict[str, _Function] = {}
    for node in _walk(tree.root_node):
        if node.type != "function_statement":
            continue
        name_node = _child(node, "function_name")
        if name_node is None:
            continue
        name = _text(name_node)
        script_parameters = [
            p
            for p in _walk(node)
            if p.type == "script_parameter" and _enclosing_function(p) == node
        ]
        signature = None
        if script_parameters:
            names: list[str] = []
            aliases: dict[str, str] = {}
            advanced = False
            for parameter in script_parameters:
                variable = _child(parameter, "variable")
                if variable is None:
                    continue
                names.append(_variable_name(variable))
                for attribute in _attributes(parameter):
                    attribute_name = _attribute_name(attribute).lower()
                    advanced |= attribute_name == "parameter"
                    if attribute_name == "alias":
                        for alias in re.findall(r"['\"]([^'\"]+)['\"]", _text(attribute)):
                            aliases[alias.lower()] = names[-1]
            block = _child(_child(node, "script_block") or node, "param_block")
            advanced |= block is not None and _has_cmdletbinding(block)
            if advanced:
                names += catalog.common_parameters
                aliases |= catalog.common_parameter_aliases
            signature = Signature(name, tuple(names), aliases)
        functions[name.lower()] = _Function(name, signature)
    return functions


_SCOPES = frozenset({"function_statement", "script_block_expression"})


def _enclosing_function(node: tree_sitter.Node) -> tree_sitter.Node | None:
    parent = node.parent
    while parent is not None and parent.type not in _SCOPES:
        parent = parent.parent
    return parent


def _variable_name(variable: tree_sitter.Node) -> str:
    """``$Name`` / ``${Name}`` → ``Name``."""
    return _text(variable).lstrip("$").removeprefix("{").removesuffix("}")


def _attributes(script_parameter: tree_sitter.Node) -> list[tree_sitter.Node]:
    attribute_list = _child(script_parameter, "attribute_list")
    if attribute_list is None:
        return []
    return [a for a in attribute_list.named_children if a.type == "attribute"]


def _attribute_name(attribute: tree_sitter.Node) -> str:
    """``[Parameter(Mandatory)]`` → ``Parameter``; a type literal ``[string]`` → ``""``."""
    name = _child(attribute, "attribute_name")
    return _text(name) if name is not None else ""


def _type_literal(attribute: tree_sitter.Node) -> str | None:
    """``[string[]]`` → ``string[]``, for an attribute that is a type literal."""
    literal = _child(attribute, "type_literal")
    spec = _child(literal, "type_spec") if literal is not None else None
    return re.sub(r"\s+", "", _text(spec)) if spec is not None else None


def _has_cmdletbinding(param_block: tree_sitter.Node) -> bool:
    attribute_list = _child(param_block, "attribute_list")
    return attribute_list is not None and any(
        _attribute_name(a).lower() == "cmdletbinding" for a in attribute_list.named_children
    )


def _bind(
    command: _Command, signature: Signature | None
) -> Iterator[tuple[_Parameter, ParameterMatch]]:
    """Each ``-Parameter`` of a command with how it resolves (nothing without a signature)."""
    if signature is None:
        return
    for parameter in command.parameters:
        yield parameter, signature.resolve(parameter.written)


def _resolve_command(name: str, catalog: Catalog) -> tuple[str, bool]:
    """The full command name for ``name``, and whether ``name`` was an alias of it.

    A module-qualified name (``Hyper-V\\Get-VM``) resolves when the module is the cmdlet's.
    """
    cmdlet = catalog.cmdlet(name)
    if cmdlet is not None:
        return cmdlet.name, False
    module, _, bare = name.rpartition("\\")
    cmdlet = catalog.cmdlet(bare) if module else None
    if cmdlet is not None and (cmdlet.module or "").lower() == module.lower():
        return cmdlet.name, False
    target = catalog.command_aliases.get(name.lower())
    if target is not None:
        resolved = catalog.cmdlet(target)
        return (resolved.name if resolved else target), True
    return name, False


# --- gate: Windows PowerShell 5.1 --------------------------------------------------------------

# Cmdlets that exist only in PowerShell 6+/7 (name → first version).
_PS7_COMMANDS: Mapping[str, str] = {
    "Join-String": "6.2", "Test-Json": "6.1", "Get-Error": "7.0", "Get-Uptime": "6.0",
    "Remove-Alias": "6.0", "Remove-Service": "6.0", "ConvertFrom-Markdown": "6.1",
    "Show-Markdown": "6.1", "Get-MarkdownOption": "6.1", "Set-MarkdownOption": "6.1",
    "Get-ExperimentalFeature": "6.2", "Enable-ExperimentalFeature": "6.2",
    "Disable-ExperimentalFeature": "6.2", "Start-ThreadJob": "6.1", "Get-SecureRandom": "7.4",
    "ConvertTo-CliXml": "7.5", "ConvertFrom-CliXml": "7.5",
}  # fmt: skip

# Parameters that PowerShell 6+/7 added to cmdlets that 5.1 has (cmdlet → parameter → version).
_PS7_PARAMETERS: Mapping[str, Mapping[str, str]] = {
    "ForEach-Object": {
        "Parallel": "7.0", "ThrottleLimit": "7.0", "TimeoutSeconds": "7.0", "AsJob": "7.0",
        "UseNewRunspace": "7.1",
    },
    "ConvertTo-Json": {"AsArray": "6.2", "EnumsAsStrings": "6.2", "EscapeHandling": "6.2"},
    "ConvertFrom-Json": {"AsHashtable": "6.0", "Depth": "6.2", "NoEnumerate": "7.0"},
    "Invoke-WebRequest": {
        "SkipCertificateCheck": "6.0", "SkipHeaderValidation": "6.0", "SslProtocol": "6.0",
        "Authentication": "6.0", "Token": "6.0", "AllowUnencryptedAuthentication": "6.0",
        "SkipHttpErrorCheck": "7.0", "Form": "6.1", "Resume": "6.1",
        "MaximumRetryCount": "6.1", "RetryIntervalSec": "6.1", "NoProxy": "6.0",
    },
    "Invoke-RestMethod": {
        "SkipCertificateCheck": "6.0", "SkipHeaderValidation": "6.0", "SslProtocol": "6.0",
        "Authentication": "6.0", "Token": "6.0", "AllowUnencryptedAuthentication": "6.0",
        "SkipHttpErrorCheck": "7.0", "Form": "6.1", "Resume": "6.1",
        "MaximumRetryCount": "6.1", "RetryIntervalSec": "6.1", "NoProxy": "6.0",
        "ResponseHeadersVariable": "6.0", "StatusCodeVariable": "7.0", "FollowRelLink": "6.0",
    },
    "Get-Content": {"AsByteStream": "6.0"},
    "Set-Content": {"AsByteStream": "6.0"},
    "Add-Content": {"AsByteStream": "6.0"},
    "Sort-Object": {"Top": "6.0", "Bottom": "6.0", "Stable": "6.2"},
    "Where-Object": {"Not": "7.0"},
    "Split-Path": {"LeafBase": "6.0", "Extension": "6.0"},
    "Join-Path": {"AdditionalChildPath": "6.0"},
    "Get-Date": {"AsUTC": "7.1", "UnixTimeSeconds": "7.1"},
    "ConvertTo-Csv": {"UseQuotes": "7.0", "QuoteFields": "7.0"},
    "Export-Csv": {"UseQuotes": "7.0", "QuoteFields": "7.0"},
}  # fmt: skip

# Automatic variables that PowerShell 6+/7 defines and 5.1 does not (there they are $null).
_PS7_VARIABLES = (
    "PSStyle", "IsWindows", "IsLinux", "IsMacOS", "IsCoreCLR", "EnabledExperimentalFeatures",
    "PSNativeCommandUseErrorActionPreference", "PSNativeCommandArgumentPassing",
)  # fmt: skip

_CODE_PATTERNS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (
        "ps51/null-coalescing",
        re.compile(r"(?<![A-Za-z0-9?*\\/.])\?\?=?(?![?*.\\/A-Za-z0-9])"),
        "`{token}` (null-coalescing) is PowerShell 7.0+; use `if ($null -eq $x) {{ ... }}`",
    ),
    (
        "ps51/null-conditional",
        re.compile(r"(?:\$\{[^}]*\}|\$[A-Za-z_][\w:]*|[)\]])(\?)(?=\.[A-Za-z_]|\[)"),
        "`?.` / `?[` (null-conditional access) is PowerShell 7.1+; test for $null first",
    ),
    (
        "ps51/ternary",
        re.compile(r"(?<=[\w)\]}$])[ \t]+(\?)[ \t]+(?=[^\s|?])(?=[^\r\n;]*?[ \t]:(?:\s|$))"),
        "`c ? a : b` (ternary operator) is PowerShell 7.0+; use `if (c) {{ a }} else {{ b }}`",
    ),
    (
        "ps51/pipeline-chain",
        re.compile(r"&&|\|\|"),
        "`{token}` (pipeline chain operator) is PowerShell 7.0+; use `if ($?) {{ ... }}`",
    ),
    (
        "ps51/background-operator",
        re.compile(r"(?<![&>\w])&(?=[ \t]*(?:$|[;})]))", re.MULTILINE),
        "a trailing `&` (background job operator) is PowerShell 6.0+; use Start-Job",
    ),
    (
        "ps51/clean-block",
        re.compile(r"(?:^|[{};])[ \t]*(clean)\s*\{", re.IGNORECASE | re.MULTILINE),
        "`clean {{ }}` blocks are PowerShell 7.3+; use try/finally in `end {{ }}`",
    ),
    (
        "ps51/ps7-variable",
        re.compile(
            r"\$\{?(?:global:|script:)?(?:" + "|".join(_PS7_VARIABLES) + r")\b", re.IGNORECASE
        ),
        "`{token}` is an automatic variable of PowerShell 6+/7 only; in 5.1 it is $null",
    ),
)
_UNICODE_ESCAPE = "`u{"


def _ps7_command_version(name: str) -> str | None:
    """The PowerShell version that introduced ``name``, if it is a 6+/7-only cmdlet."""
    return next((v for k, v in _PS7_COMMANDS.items() if k.lower() == name.lower()), None)


def ps51_problems(source: bytes, catalog: Catalog | None = None) -> list[Finding]:
    """PowerShell 6+/7 features that Windows PowerShell 5.1 does not have.

    Rules: ``ps51/ternary``, ``ps51/null-coalescing`` (``??``, ``??=``),
    ``ps51/null-conditional`` (``?.``, ``?[``), ``ps51/pipeline-chain`` (``&&``, ``||``),
    ``ps51/background-operator`` (trailing ``&``), ``ps51/clean-block``,
    ``ps51/unicode-escape`` (`` `u{...} `` in a double-quoted string), ``ps51/ps7-variable``
    (``$PSStyle``, ``$IsWindows``...), ``ps51/ps7-command`` (``Join-String``, ``Test-Json``,
    ``Get-Error``...) and ``ps51/ps7-parameter`` (``ForEach-Object -Parallel``,
    ``ConvertTo-Json -AsArray``, ``ConvertFrom-Json -AsHashtable``,
    ``-SkipCertificateCheck``...). Text in strings, here-strings and comments is ignored.

    ``catalog`` (default: the bundled one) tells an abbreviation of a 5.1 parameter from an
    abbreviation of a 7-only one.
    """
    catalog = catalog or load_catalog()
    src = _Source(source)
    tree = parse(source)
    findings = _ps51_raw_problems(src)
    for node in _walk(tree.root_node):
        if node.type == "pipeline_chain_tail":
            operator = _text(node).strip()
            findings.append(
                src.finding_at_node(
                    "ps51/pipeline-chain",
                    node,
                    f"`{operator}` (pipeline chain operator) is PowerShell 7.0+; "
                    "use `if ($?) { ... }`",
                )
            )
    defined = _functions(tree, catalog)
    for command in _commands(tree):
        if command.name.lower() in defined:
            continue
        name, _ = _resolve_command(command.name, catalog)
        findings += _ps7_command_problems(src, command, name, catalog)
    return _sorted_unique(findings)


def _ps51_raw_problems(src: _Source) -> list[Finding]:
    """The raw-text half of :func:`ps51_problems`: operators and variables in code."""
    findings = []
    mask = code_mask(src.text)
    for rule, pattern, template in _CODE_PATTERNS:
        for match in pattern.finditer(mask):
            start = match.start(1) if pattern.groups else match.start()
            token = match.group(0).strip()
            findings.append(src.finding_at_offset(rule, start, template.format(token=token)))
    for segment in _segments(src.text):
        if segment.kind != "expandable":
            continue
        i = segment.start
        while i < segment.end:
            if src.text.startswith(_UNICODE_ESCAPE, i):
                findings.append(
                    src.finding_at_offset(
                        "ps51/unicode-escape",
                        i,
                        "the `u{...} escape is PowerShell 6.0+; use [char]0x2713 or "
                        "[char]::ConvertFromUtf32(0x1F600)",
                    )
                )
            i += 2 if src.text[i] == "`" else 1
    return findings


def _ps7_command_problems(
    src: _Source, command: _Command, name: str, catalog: Catalog
) -> list[Finding]:
    findings = []
    version = _ps7_command_version(name)
    if version is not None:
        findings.append(
            src.finding_at_node(
                "ps51/ps7-command",
                command.name_node,
                f"`{command.name}` is a PowerShell {version}+ cmdlet; "
                "Windows PowerShell 5.1 does not have it",
            )
        )
    if (
        name.lower() == "clean"
        and command.arguments
        and any(n.type == "script_block_expression" for n in _walk(command.arguments[0]))
    ):
        findings.append(
            src.finding_at_node(
                "ps51/clean-block",
                command.name_node,
                "`clean { }` blocks are PowerShell 7.3+; use try/finally in `end { }`",
            )
        )
    added = next((v for k, v in _PS7_PARAMETERS.items() if k.lower() == name.lower()), None)
    cmdlet = catalog.cmdlet(name)
    if added is None or cmdlet is None:
        return findings
    signature = catalog.signature(cmdlet)
    for parameter in command.parameters:
        key = parameter.written.lower()
        if len(key) < 2 or signature.resolve(key).kind in {"exact", "alias", "prefix"}:
            continue  # too short to tell, or a 5.1 parameter (possibly abbreviated)
        full = next((p for p in added if p.lower().startswith(key)), None)
        if full is not None:
            findings.append(
                src.finding_at_node(
                    "ps51/ps7-parameter",
                    parameter.node,
                    f"`{name} -{full}` is PowerShell {added[full]}+; "
                    "Windows PowerShell 5.1 does not have this parameter",
                )
            )
    return findings


# --- gate: aliases -----------------------------------------------------------------------------


def alias_problems(source: bytes, catalog: Catalog) -> list[Finding]:
    """Commands and parameters spelled by alias or abbreviation instead of in full.

    Rules: ``alias/command`` (``gci``, ``%``, ``?``, ``where``, ``foreach`` as a command...),
    ``alias/parameter`` (``Get-VM -VMName``, ``-EA``) and ``alias/parameter-prefix``
    (``-Comp`` for ``-ComputerName``). Parameters of the script's own functions count too.
    """
    src = _Source(source)
    tree = parse(source)
    functions = _functions(tree, catalog)
    findings = []
    for command in _commands(tree):
        function = functions.get(command.name.lower())
        if function is not None:
            signature = function.signature
        else:
            name, is_alias = _resolve_command(command.name, catalog)
            if is_alias:
                findings.append(
                    src.finding_at_node(
                        "alias/command",
                        command.name_node,
                        f"`{command.name}` is an alias; write `{name}`",
                    )
                )
            cmdlet = catalog.cmdlet(name)
            signature = catalog.signature(cmdlet) if cmdlet else None
        for parameter, match in _bind(command, signature):
            if match.kind == "alias":
                findings.append(
                    src.finding_at_node(
                        "alias/parameter",
                        parameter.node,
                        f"`-{parameter.written}` is an alias of `-{match.canonical}` "
                        f"({match.command}); write `-{match.canonical}`",
                    )
                )
            elif match.kind == "prefix":
                findings.append(
                    src.finding_at_node(
                        "alias/parameter-prefix",
                        parameter.node,
                        f"`-{parameter.written}` abbreviates `-{match.canonical}` "
                        f"({match.command}); write `-{match.canonical}`",
                    )
                )
    return _sorted_unique(findings)


# --- gate: catalog -----------------------------------------------------------------------------


def catalog_problems(
    source: bytes, catalog: Catalog, extra_commands: frozenset[str] = frozenset()
) -> list[Finding]:
    """Commands and parameters that the cmdlet catalog does not know.

    Every command invoked by name must be a function the script defines or a catalog cmdlet
    (directly or through an alias; ``extra_commands`` adds names, any case). Each ``-Param``
    must be one of the cmdlet's parameters, a common parameter, or ``-WhatIf``/``-Confirm``
    when the cmdlet supports ShouldProcess, spelled in full, by alias or by an unambiguous
    prefix (:func:`alias_problems` rejects the last two). For the script's own functions that
    declare parameters, ``-Param`` must be one of those.

    Rules: ``catalog/unknown-command``, ``catalog/unknown-parameter``,
    ``catalog/ambiguous-parameter``. Calls through a variable (``& $command``) and .NET
    method calls are not commands and are not checked.
    """
    src = _Source(source)
    tree = parse(source)
    functions = _functions(tree, catalog)
    extra = {name.lower() for name in extra_commands}
    findings = []
    for command in _commands(tree):
        function = functions.get(command.name.lower())
        if function is not None:
            signature = function.signature
        elif command.name.lower() in extra:
            signature = None
        else:
            name, is_alias = _resolve_command(command.name, catalog)
            cmdlet = catalog.cmdlet(name)
            if cmdlet is None:
                findings.append(_unknown_command(src, command, name, is_alias))
                continue
            signature = catalog.signature(cmdlet)
        for parameter, match in _bind(command, signature):
            if match.kind == "unknown":
                findings.append(
                    src.finding_at_node(
                        "catalog/unknown-parameter",
                        parameter.node,
                        f"`{match.command}` has no parameter `-{parameter.written}`",
                    )
                )
            elif match.kind == "ambiguous":
                findings.append(
                    src.finding_at_node(
                        "catalog/ambiguous-parameter",
                        parameter.node,
                        f"`-{parameter.written}` is ambiguous for `{match.command}`: "
                        + ", ".join(f"-{c}" for c in match.candidates),
                    )
                )
    return _sorted_unique(findings)


def _unknown_command(src: _Source, command: _Command, name: str, is_alias: bool) -> Finding:
    message = f"`{command.name}` is not a cmdlet in the catalog"
    if is_alias:
        message = f"`{command.name}` is an alias of `{name}`, which is not a cmdlet in the catalog"
    version = _ps7_command_version(name)
    if version is not None:
        message += f" (it is PowerShell {version}+ only)"
    else:
        message += " nor a function of this script"
    return src.finding_at_node("catalog/unknown-command", command.name_node, message)


# --- gate: Windows Server releases ---------------------------------------------------------


def release_gaps(
    source: bytes, catalog: Catalog, releases: tuple[str, ...] = SUPPORTED_RELEASES
) -> dict[str, tuple[str, ...]]:
    """Cmdlets (and ``Cmdlet -Parameter``) used by the script → releases that lack them.

    Only the Hyper-V module has per-release documentation (2016, 2019, 2022, 2025); the
    catalog has no docs for Windows Server 2012 / 2012 R2, so this cannot tell whether a
    script runs there. Cmdlets outside the Hyper-V module count as present everywhere.
    """
    gaps: dict[str, tuple[str, ...]] = {}
    tree = parse(source)
    defined = _functions(tree, catalog)
    for command in _commands(tree):
        if command.name.lower() in defined:
            continue
        cmdlet = catalog.cmdlet(_resolve_command(command.name, catalog)[0])
        if cmdlet is None:
            continue
        documented = catalog.versions.get(cmdlet.name, releases)
        missing = tuple(r for r in releases if r not in documented)
        if missing:
            gaps[cmdlet.name] = missing
        per_parameter = catalog.parameter_versions.get(cmdlet.name, {})
        signature = catalog.signature(cmdlet)
        for parameter in command.parameters:
            canonical = signature.resolve(parameter.written).canonical
            if canonical is not None and canonical in per_parameter:
                missing = tuple(r for r in releases if r not in per_parameter[canonical])
                if missing:
                    gaps[f"{cmdlet.name} -{canonical}"] = missing
    return gaps


def release_problems(
    source: bytes, catalog: Catalog, releases: tuple[str, ...] = SUPPORTED_RELEASES
) -> list[Finding]:
    """:func:`release_gaps` as findings: rules ``release/command``, ``release/parameter``."""
    src = _Source(source)
    gaps = release_gaps(source, catalog, releases)
    tree = parse(source)
    findings = []
    for command in _commands(tree):
        cmdlet = catalog.cmdlet(_resolve_command(command.name, catalog)[0])
        if cmdlet is None:
            continue
        if cmdlet.name in gaps:
            findings.append(
                src.finding_at_node(
                    "release/command",
                    command.name_node,
                    f"`{cmdlet.name}` is not documented for Windows Server "
                    + ", ".join(gaps[cmdlet.name]),
                )
            )
        signature = catalog.signature(cmdlet)
        for parameter in command.parameters:
            key = f"{cmdlet.name} -{signature.resolve(parameter.written).canonical}"
            if key in gaps:
                findings.append(
                    src.finding_at_node(
                        "release/parameter",
                        parameter.node,
                        f"`{key}` is not documented for Windows Server " + ", ".join(gaps[key]),
                    )
                )
    return _sorted_unique(findings)


# --- gate: the param() contract and script hygiene -------------------------------------

_MARKER = re.compile(r"#[ \t]*hyperv-backup-script:[ \t]*(\S+)[ \t]*")
_ALLOWED_PARAMETER_ATTRIBUTE = re.compile(r"parameter|validate\w*|allow\w*", re.IGNORECASE)
_MANDATORY = re.compile(r"\bMandatory\b(?!\s*=\s*\$false)", re.IGNORECASE)
_SCRIPTBLOCK_CREATE = re.compile(
    r"\[\s*(?:System\.Management\.Automation\.)?ScriptBlock\s*\]\s*::\s*Create\b", re.IGNORECASE
)
_COMPILING_ADD_TYPE_PARAMETERS = ("TypeDefinition", "MemberDefinition", "Path", "LiteralPath")


def powershell_type(annotation: object) -> str | None:
    """The PowerShell parameter type for a param-model field type, or None if unsupported.

    ``str`` → ``string``, ``list[str]`` → ``string[]``, ``int`` → ``int``,
    ``float`` → ``double``, ``bool`` → ``switch``, ``UUID`` → ``guid``; ``Optional[X]`` is
    the type of ``X``.
    """
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in arguments if a is not type(None)]
        return powershell_type(rest[0]) if len(rest) == 1 else None
    if origin is list and arguments == (str,):
        return "string[]"
    table: dict[object, str] = {
        str: "string",
        int: "int",
        float: "double",
        bool: "switch",
        uuid.UUID: "guid",
    }
    return table.get(annotation)


def param_contract_problems(
    source: bytes, params_model: type[BaseModel], script_name: str | None = None
) -> list[Finding]:
    """The top-level ``param()`` block against the script's pydantic param model.

    Names are the fields' aliases (the field name when there is none), compared exactly;
    types follow :func:`powershell_type`, compared case-insensitively. Allowed attributes are
    ``[Parameter(...)]``, ``[Validate...]`` and ``[Allow...]``; ``Mandatory`` needs a required
    field (hyperv-backup leaves out ``None`` and ``False`` values). Also runs
    :func:`hygiene_problems`.

    Rules: ``contract/param-block``, ``contract/param-missing``, ``contract/param-extra``,
    ``contract/param-name``, ``contract/param-type``, ``contract/param-attribute``,
    ``contract/param-mandatory``, ``contract/unsupported-type``, and the hygiene rules.
    """
    src = _Source(source)
    root = parse(source).root_node
    findings = hygiene_problems(source, script_name)
    param_block = _child(root, "param_block")
    if param_block is None:
        return _sorted_unique(
            [*findings, Finding("contract/param-block", 1, 1, "no top-level param() block")]
        )
    expected = {}
    for field_name, info in params_model.model_fields.items():
        ps_name = info.alias or field_name
        ps_type = powershell_type(info.annotation)
        if ps_type is None:
            findings.append(
                src.finding_at_node(
                    "contract/unsupported-type",
                    _child(param_block, "param") or param_block,
                    f"{params_model.__name__}.{field_name}: no PowerShell type for "
                    f"{info.annotation!r} in the type table",
                )
            )
        expected[ps_name.lower()] = (ps_name, ps_type, info.is_required())
    declared = set()
    parameter_list = _child(param_block, "parameter_list")
    for parameter in parameter_list.named_children if parameter_list else []:
        if parameter.type != "script_parameter" or (var := _child(parameter, "variable")) is None:
            continue
        name = _variable_name(var)
        declared.add(name.lower())
        if name.lower() not in expected:
            findings.append(
                src.finding_at_node(
                    "contract/param-extra",
                    var,
                    f"`${name}` is not a field of {params_model.__name__}",
                )
            )
            continue
        findings += _parameter_problems(src, parameter, var, expected[name.lower()], params_model)
    keyword = _child(param_block, "param") or param_block
    for key, (ps_name, ps_type, _) in expected.items():
        if key not in declared:
            findings.append(
                src.finding_at_node(
                    "contract/param-missing",
                    keyword,
                    f"param() lacks `[{ps_type}]${ps_name}` from {params_model.__name__}",
                )
            )
    return _sorted_unique(findings)


def _parameter_problems(
    src: _Source,
    parameter: tree_sitter.Node,
    variable: tree_sitter.Node,
    expected: tuple[str, str | None, bool],
    params_model: type[BaseModel],
) -> list[Finding]:
    ps_name, ps_type, required = expected
    name = _variable_name(variable)
    findings = []
    if name != ps_name:
        findings.append(
            src.finding_at_node(
                "contract/param-name", variable, f"`${name}` should be spelled `${ps_name}`"
            )
        )
    types_written = []
    for attribute in _attributes(parameter):
        written_type = _type_literal(attribute)
        if written_type is not None:
            types_written.append(written_type)
            continue
        attribute_name = _attribute_name(attribute)
        if not _ALLOWED_PARAMETER_ATTRIBUTE.fullmatch(attribute_name):
            findings.append(
                src.finding_at_node(
                    "contract/param-attribute",
                    attribute,
                    f"`[{attribute_name}(...)]` on `${name}`: only [Parameter(...)], "
                    "[Validate...] and [Allow...] attributes are allowed",
                )
            )
        elif _MANDATORY.search(_text(attribute)) and not required:
            findings.append(
                src.finding_at_node(
                    "contract/param-mandatory",
                    attribute,
                    f"`${name}` is Mandatory but optional in {params_model.__name__}: "
                    "None and False values are not sent, and PowerShell would then fail",
                )
            )
    if ps_type is not None and [t.lower() for t in types_written] != [ps_type]:
        written = " ".join(f"[{t}]" for t in types_written) or "no type"
        findings.append(
            src.finding_at_node(
                "contract/param-type",
                variable,
                f"`${name}` is declared with {written}; {params_model.__name__} needs [{ps_type}]",
            )
        )
    return findings


def hygiene_problems(source: bytes, script_name: str | None = None) -> list[Finding]:
    """What every product script must have, and must not do.

    - ``contract/marker``: the first line is ``# hyperv-backup-script: <script_name>``
      (any name when ``script_name`` is None).
    - ``contract/cmdletbinding``: the top-level ``param()`` has ``[CmdletBinding()]``.
    - ``contract/error-action``: ``$ErrorActionPreference = 'Stop'`` at the top level, before
      any top-level statement that runs a command.
    - ``contract/invoke-expression``: no ``Invoke-Expression`` / ``iex`` and no
      ``[scriptblock]::Create``.
    - ``contract/add-type``: ``Add-Type`` only with ``-AssemblyName`` (no compiled source).
    """
    src = _Source(source)
    root = parse(source).root_node
    findings = []

    first_line = src.text.lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
    marker = _MARKER.fullmatch(first_line)
    wanted = f"# hyperv-backup-script: {script_name or '<name>'}"
    if marker is None or (script_name is not None and marker.group(1) != script_name):
        findings.append(
            Finding("contract/marker", 1, 1, f"the first line must be `{wanted}`: `{first_line}`")
        )

    param_block = _child(root, "param_block")
    if param_block is None or not _has_cmdletbinding(param_block):
        findings.append(
            Finding("contract/cmdletbinding", 1, 1, "no [CmdletBinding()] on the top-level param()")
        )

    findings += _error_action_problems(src, root)

    for command in _commands(parse(source)):
        lower = command.name.lower()
        if lower in {"invoke-expression", "iex"}:
            findings.append(
                src.finding_at_node(
                    "contract/invoke-expression",
                    command.name_node,
                    f"`{command.name}` runs generated code; call commands directly",
                )
            )
        elif lower == "add-type":
            findings += _add_type_problems(src, command)
    for match in _SCRIPTBLOCK_CREATE.finditer(code_mask(src.text)):
        findings.append(
            src.finding_at_offset(
                "contract/invoke-expression",
                match.start(),
                "[scriptblock]::Create runs generated code; write the script block literally",
            )
        )
    return _sorted_unique(findings)


def _error_action_problems(src: _Source, root: tree_sitter.Node) -> list[Finding]:
    """``$ErrorActionPreference = 'Stop'`` at the top level, before any command runs."""
    statements = _child(root, "statement_list")
    top_level = statements.named_children if statements else []
    where = next((i for i, s in enumerate(top_level) if _sets_error_action_stop(s)), None)
    if where is None:
        return [
            Finding("contract/error-action", 1, 1, "no top-level `$ErrorActionPreference = 'Stop'`")
        ]
    for statement in top_level[:where]:
        if statement.type != "function_statement" and any(
            n.type == "command" for n in _walk(statement)
        ):
            return [
                src.finding_at_node(
                    "contract/error-action",
                    statement,
                    "this runs before `$ErrorActionPreference = 'Stop'` is set",
                )
            ]
    return []


def _sets_error_action_stop(statement: tree_sitter.Node) -> bool:
    assignment = _child(statement, "assignment_expression")
    if statement.type != "pipeline" or assignment is None:
        return False
    target = _child(assignment, "left_assignment_expression")
    value = _child(assignment, "pipeline")
    return (
        target is not None
        and value is not None
        and _text(target).strip().lower() == "$erroractionpreference"
        and _text(value).strip().strip("'\"").lower() == "stop"
    )


def _add_type_problems(src: _Source, command: _Command) -> list[Finding]:
    signature = Signature(
        "Add-Type",
        ("AssemblyName", *_COMPILING_ADD_TYPE_PARAMETERS),
        {"an": "AssemblyName", "pspath": "LiteralPath", "lp": "LiteralPath"},
    )
    used = {signature.resolve(p.written).canonical for p in command.parameters}
    if "AssemblyName" in used and not used & set(_COMPILING_ADD_TYPE_PARAMETERS):
        return []
    return [
        src.finding_at_node(
            "contract/add-type",
            command.name_node,
            "Add-Type may only load assemblies (-AssemblyName); it must not compile code",
        )
    ]


# --- everything at once ----------------------------------------------------------------


def all_problems(
    source: bytes,
    catalog: Catalog,
    params_model: type[BaseModel],
    script_name: str | None = None,
) -> list[Finding]:
    """Every gate's findings for one product script, in source order."""
    return _sorted_unique(
        [
            *syntax_problems(source),
            *ps51_problems(source, catalog),
            *alias_problems(source, catalog),
            *catalog_problems(source, catalog),
            *release_problems(source, catalog),
            *param_contract_problems(source, params_model, script_name),
        ]
    )
