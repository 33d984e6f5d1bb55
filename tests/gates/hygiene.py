"""The hygiene gate: what every product script must have, and must not do.

Every script starts with its marker line, has ``[CmdletBinding()]`` and sets
``$ErrorActionPreference = 'Stop'``, and runs no generated code.

One exception is allowed, explicitly and narrowly: a script that must run a user's own
configured command (``invoke-hook``) may call ``[scriptblock]::Create`` on the line directly
below a comment line ``# gate-allow: scriptblock-create <reason>``. The marker exempts that
one line from that one rule; ``Invoke-Expression`` and ``Add-Type`` stay forbidden, and a
marker without a reason, with an unknown rule, or with nothing to exempt is itself a finding.
"""

from __future__ import annotations

import re

import tree_sitter

from tests.gates.catalog import Signature
from tests.gates.commands import _Command, _commands, _has_cmdletbinding
from tests.gates.findings import Finding, _sorted_unique, _Source
from tests.gates.lexer import _segments, code_mask
from tests.gates.parsing import _child, _text, _walk, parse

_MARKER = re.compile(r"#[ \t]*hyperv-backup-script:[ \t]*(\S+)[ \t]*")
_SCRIPTBLOCK_CREATE = re.compile(
    r"\[\s*(?:System\.Management\.Automation\.)?ScriptBlock\s*\]\s*::\s*Create\b", re.IGNORECASE
)
_COMPILING_ADD_TYPE_PARAMETERS = ("TypeDefinition", "MemberDefinition", "Path", "LiteralPath")
# `# gate-allow: <rule> <reason>`, alone on its line (the lexer's comment segments run from
# the `#` to the end of the line).
_GATE_ALLOW = re.compile(r"#[ \t]*gate-allow:[ \t]*(\S*)[ \t]*(.*?)[ \t]*", re.IGNORECASE)
_ALLOWABLE = frozenset({"scriptblock-create"})


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
    - ``contract/gate-allow``: a ``# gate-allow:`` marker that is not alone on its line, names
      a rule other than ``scriptblock-create``, gives no reason, or is not directly above a
      line with ``[scriptblock]::Create``. A valid marker exempts that line from
      ``contract/invoke-expression`` for ``[scriptblock]::Create`` only.
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
    creates = [
        (src.at_offset(m.start())[0], m.start())
        for m in _SCRIPTBLOCK_CREATE.finditer(code_mask(src.text))
    ]
    allowed_lines, marker_findings = _gate_allow_markers(src, {line for line, _ in creates})
    findings += marker_findings
    for line, offset in creates:
        if line not in allowed_lines:
            findings.append(
                src.finding_at_offset(
                    "contract/invoke-expression",
                    offset,
                    "[scriptblock]::Create runs generated code; write the script block literally "
                    "(a user's own command may be run from the line below a "
                    "`# gate-allow: scriptblock-create <reason>` comment)",
                )
            )
    return _sorted_unique(findings)


def _gate_allow_markers(src: _Source, create_lines: set[int]) -> tuple[set[int], list[Finding]]:
    """The lines that valid ``# gate-allow: scriptblock-create`` markers exempt, and the
    findings for markers that are not valid."""
    allowed: set[int] = set()
    findings = []
    lines = src.text.split("\n")
    for segment in _segments(src.text):
        if segment.kind != "comment" or src.text.startswith("<#", segment.start):
            continue
        comment = src.text[segment.start : segment.end].rstrip("\r")
        marker = _GATE_ALLOW.fullmatch(comment)
        if marker is None:
            continue
        line, _ = src.at_offset(segment.start)
        rule, reason = marker.group(1).lower(), marker.group(2)
        problem = None
        if lines[line - 1].strip().rstrip("\r") != comment.strip():
            problem = "must be alone on its line, directly above the line it exempts"
        elif rule not in _ALLOWABLE:
            problem = f"`{rule or '(none)'}` cannot be allowed; only " + ", ".join(
                sorted(_ALLOWABLE)
            )
        elif not reason:
            problem = "needs a reason: `# gate-allow: scriptblock-create <why>`"
        elif line + 1 not in create_lines:
            problem = "exempts nothing: the next line has no [scriptblock]::Create"
        if problem is None:
            allowed.add(line + 1)
        else:
            findings.append(
                src.finding_at_offset(
                    "contract/gate-allow", segment.start, f"this marker {problem}"
                )
            )
    return allowed, findings


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
