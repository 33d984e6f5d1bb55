"""The alias gate: commands and parameters are spelled in full, not by alias or abbreviation."""

from __future__ import annotations

from tests.gates.catalog import Catalog
from tests.gates.commands import _bind, _commands, _functions, _resolve_command
from tests.gates.findings import Finding, _sorted_unique, _Source
from tests.gates.parsing import parse


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
