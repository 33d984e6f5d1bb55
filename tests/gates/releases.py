"""The release gate: every cmdlet and parameter is documented for each supported release."""

from __future__ import annotations

from tests.gates.catalog import Catalog
from tests.gates.commands import _commands, _functions, _resolve_command
from tests.gates.findings import Finding, _sorted_unique, _Source
from tests.gates.parsing import parse

SUPPORTED_RELEASES: tuple[str, ...] = ("2016", "2019", "2022", "2025")
"""The Windows Server releases hyperv-backup supports, as the catalog names them."""


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
