"""Static gates for the PowerShell scripts hyperv-backup ships.

There is no PowerShell on the machines that build and test hyperv-backup, so every ``.ps1``
in ``hyperv_backup/ps_scripts`` is checked statically instead. Each gate takes the script
source as ``bytes`` and returns a list of :class:`Finding` (empty = passed); every finding
has a rule id such as ``ps51/ternary``, and the docstring of each gate lists its rules.

``syntax_problems`` (:mod:`.syntax`)
    tree-sitter-powershell reports no ERROR or MISSING node. Strict on purpose: the grammar
    rejects bare-word comma lists (``Select-Object Name, Path``) that PowerShell accepts;
    we quote such lists (``-Property 'Name', 'Path'``) instead of weakening the gate.
``ps51_problems`` (:mod:`.ps51`)
    No PowerShell 6+/7 feature: Windows PowerShell 5.1 is what every Hyper-V host runs.
``alias_problems`` (:mod:`.aliases`)
    Commands and parameters are spelled in full, not by alias or abbreviation.
``catalog_problems`` (:mod:`.catalog_gate`)
    Every command and parameter exists in the cmdlet catalog (:mod:`.catalog`).
``release_problems`` and ``release_gaps``, the same as a dict (:mod:`.releases`)
    Every cmdlet and parameter used is documented for every Windows Server release we support
    (2016, 2019, 2022, 2025; the catalog has no 2012 / 2012 R2 docs).
``param_contract_problems`` (:mod:`.contract`; includes ``hygiene_problems``, :mod:`.hygiene`)
    The ``param()`` block matches the script's pydantic param model, and the script has its
    marker line, ``[CmdletBinding()]``, ``$ErrorActionPreference = 'Stop'``, and runs no
    generated code (``Invoke-Expression``, ``Add-Type`` compilation, ``[scriptblock]::Create``).

:func:`all_problems` runs them all. The gates share :mod:`.findings`, :mod:`.parsing` (the
syntax tree), :mod:`.lexer` (strings and comments, for the checks on raw text) and
:mod:`.commands` (commands and functions in the tree).
"""

from __future__ import annotations

from pydantic import BaseModel

from tests.gates.aliases import alias_problems
from tests.gates.catalog import CATALOG_PATH, Catalog, ParameterMatch, Signature, load_catalog
from tests.gates.catalog_gate import catalog_problems
from tests.gates.contract import param_contract_problems, powershell_type
from tests.gates.findings import Finding, _sorted_unique
from tests.gates.hygiene import hygiene_problems
from tests.gates.lexer import code_mask
from tests.gates.parsing import parse
from tests.gates.ps51 import ps51_problems
from tests.gates.releases import SUPPORTED_RELEASES, release_gaps, release_problems
from tests.gates.syntax import syntax_problems

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
