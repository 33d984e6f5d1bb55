"""The catalog gate: every command and parameter a script uses is in the cmdlet catalog."""

from __future__ import annotations

from tests.gates.catalog import Catalog
from tests.gates.commands import _bind, _Command, _commands, _functions, _resolve_command
from tests.gates.findings import Finding, _sorted_unique, _Source
from tests.gates.parsing import parse
from tests.gates.ps51 import _ps7_command_version


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
