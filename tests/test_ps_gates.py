"""The static PowerShell gates, run on every script hyperv-backup ships.

Part one checks the product scripts in ``hyperv_backup/ps_scripts``: every gate passes, the
files and the registry agree, and every cmdlet used exists on all supported releases.

Part two shows that each gate rejects what it should, on the small scripts in
``tests/gates/bad``. Each of those marks its offending lines with a trailing comment
``# expect: <rule> [<rule>...]``, and the findings of all gates must be exactly those
(rule, line) pairs: no more, no fewer. ``tests/gates/good`` holds scripts that must pass
every gate although their strings and comments are full of PowerShell 7 syntax.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Optional
from uuid import UUID

import pytest
from pydantic import BaseModel, Field

import tests.gates as gates
from hyperv_backup.ps_scripts import SCRIPTS, ScriptParams, marker_of
from tests.gates import Finding, ps51

SCRIPTS_DIR = Path(__file__).resolve().parents[1] / "hyperv_backup" / "ps_scripts"
SHIPPED = sorted(SCRIPTS_DIR.glob("*.ps1"))
FIXTURES = Path(__file__).resolve().parent / "gates"
BAD = sorted((FIXTURES / "bad").glob("*.ps1"))
GOOD = sorted((FIXTURES / "good").glob("*.ps1"))
CATALOG = gates.load_catalog()


def _report(findings: list[Finding]) -> str:
    return "\n".join(str(f) for f in findings)


def _name(path: Path) -> str:
    return path.name


# --- the shipped scripts -------------------------------------------------------------------


def test_there_are_scripts_to_check() -> None:
    assert SHIPPED, f"no .ps1 files in {SCRIPTS_DIR}"


def test_every_registered_script_has_a_file() -> None:
    missing = sorted(
        spec.filename for spec in SCRIPTS.values() if not (SCRIPTS_DIR / spec.filename).is_file()
    )
    assert not missing, f"registered in SCRIPTS but not shipped: {missing}"


def test_every_file_is_registered() -> None:
    unregistered = sorted(path.name for path in SHIPPED if path.stem not in SCRIPTS)
    assert not unregistered, f"shipped but not registered in SCRIPTS: {unregistered}"


@pytest.mark.parametrize("path", SHIPPED, ids=_name)
def test_syntax(path: Path) -> None:
    findings = gates.syntax_problems(path.read_bytes())
    assert not findings, _report(findings)


@pytest.mark.parametrize("path", SHIPPED, ids=_name)
def test_windows_powershell_51_only(path: Path) -> None:
    findings = gates.ps51_problems(path.read_bytes(), CATALOG)
    assert not findings, _report(findings)


@pytest.mark.parametrize("path", SHIPPED, ids=_name)
def test_no_aliases(path: Path) -> None:
    findings = gates.alias_problems(path.read_bytes(), CATALOG)
    assert not findings, _report(findings)


@pytest.mark.parametrize("path", SHIPPED, ids=_name)
def test_cmdlets_and_parameters_exist(path: Path) -> None:
    findings = gates.catalog_problems(path.read_bytes(), CATALOG)
    assert not findings, _report(findings)


@pytest.mark.parametrize("path", SHIPPED, ids=_name)
def test_runs_on_every_supported_release(path: Path) -> None:
    assert gates.SUPPORTED_RELEASES == ("2016", "2019", "2022", "2025")
    assert gates.release_gaps(path.read_bytes(), CATALOG) == {}
    findings = gates.release_problems(path.read_bytes(), CATALOG)
    assert not findings, _report(findings)


@pytest.mark.parametrize("path", SHIPPED, ids=_name)
def test_param_contract(path: Path) -> None:
    spec = SCRIPTS.get(path.stem)
    if spec is None:
        pytest.fail(f"{path.name} is not registered in SCRIPTS")
    findings = gates.param_contract_problems(path.read_bytes(), spec.params, spec.name)
    assert not findings, _report(findings)
    assert marker_of(path.read_text(encoding="utf-8")) == spec.name


# --- each gate rejects what it should --------------------------------------------------------


class FixtureParams(ScriptParams):
    """The contract of the fixtures: no parameters."""


class MismatchParams(ScriptParams):
    """The contract that ``bad/param_mismatch.ps1`` gets wrong in every way."""

    names: list[str] = Field(default_factory=list, alias="Name")
    force: bool = Field(default=False, alias="Force")
    vm_id: UUID | None = Field(default=None, alias="VMId")
    count: int = Field(alias="Count")
    timeout: float = Field(default=60.0, alias="Timeout")


class GoodParams(ScriptParams):
    """The contract of ``good/strings_and_comments.ps1``."""

    names: list[str] = Field(alias="Name")
    depth: int | None = Field(default=None, alias="Depth")
    force: bool = Field(default=False, alias="Force")


class ChoiceParams(ScriptParams):
    """The contract of ``bad/validate_set.ps1``: Literal fields need a matching ValidateSet."""

    mode: Literal["Fast", "Safe"] = Field(alias="Mode")
    phase: Literal["before", "after"] | None = Field(default=None, alias="Phase")
    kind: Literal["a", "b"] = Field(alias="Kind")


MODELS: dict[str, type[BaseModel]] = {
    "param_mismatch.ps1": MismatchParams,
    "validate_set.ps1": ChoiceParams,
    "strings_and_comments.ps1": GoodParams,
}

_EXPECT = re.compile(r"#\s*expect:\s*(.+)$")


def _expected(path: Path) -> set[tuple[str, int]]:
    """The (rule, line) pairs a fixture announces with ``# expect: <rules>`` comments."""
    expected = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = _EXPECT.search(line)
        if match:
            expected |= {(rule, number) for rule in match.group(1).split()}
    return expected


def _all_findings(path: Path) -> list[Finding]:
    model = MODELS.get(path.name, FixtureParams)
    return gates.all_problems(path.read_bytes(), CATALOG, model, "fixture")


@pytest.mark.parametrize("path", BAD, ids=_name)
def test_bad_fixture_is_rejected_by_exactly_the_expected_rules(path: Path) -> None:
    expected = _expected(path)
    assert expected, f"{path.name} has no `# expect: <rule>` comment"
    findings = _all_findings(path)
    assert {(f.rule, f.line) for f in findings} == expected, _report(findings)


@pytest.mark.parametrize(
    ("fixture", "rule"),
    [
        ("ternary.ps1", "ps51/ternary"),
        ("null_coalescing.ps1", "ps51/null-coalescing"),
        ("null_conditional.ps1", "ps51/null-conditional"),
        ("pipeline_chain.ps1", "ps51/pipeline-chain"),
        ("parallel.ps1", "ps51/ps7-parameter"),
        ("asarray.ps1", "ps51/ps7-parameter"),
        ("as_hashtable.ps1", "ps51/ps7-parameter"),
        ("skip_certificate_check.ps1", "ps51/ps7-parameter"),
        ("clean_block.ps1", "ps51/clean-block"),
        ("unicode_escape.ps1", "ps51/unicode-escape"),
        ("ps7_cmdlets.ps1", "ps51/ps7-command"),
        ("ps7_variable.ps1", "ps51/ps7-variable"),
        ("background_job.ps1", "ps51/background-operator"),
        ("alias_command.ps1", "alias/command"),
        ("alias_parameter.ps1", "alias/parameter"),
        ("alias_parameter.ps1", "alias/parameter-prefix"),
        ("unknown_cmdlet.ps1", "catalog/unknown-command"),
        ("unknown_parameter.ps1", "catalog/unknown-parameter"),
        ("unknown_parameter.ps1", "catalog/ambiguous-parameter"),
        ("release_gap.ps1", "release/command"),
        ("release_gap.ps1", "release/parameter"),
        ("param_mismatch.ps1", "contract/param-type"),
        ("validate_set.ps1", "contract/param-validateset"),
        ("param_mismatch.ps1", "contract/param-missing"),
        ("param_mismatch.ps1", "contract/param-extra"),
        ("no_marker.ps1", "contract/marker"),
        ("invoke_expression.ps1", "contract/invoke-expression"),
        ("gate_allow.ps1", "contract/invoke-expression"),
        ("add_type.ps1", "contract/add-type"),
        ("syntax_error.ps1", "syntax/missing"),
        ("bareword_list.ps1", "syntax/error"),
    ],
)
def test_gate_rule_fires(fixture: str, rule: str) -> None:
    """The gate a rule belongs to reports it on its own (not only through all_problems)."""
    source = (FIXTURES / "bad" / fixture).read_bytes()
    gate = rule.split("/", maxsplit=1)[0]
    findings = {
        "syntax": lambda: gates.syntax_problems(source),
        "ps51": lambda: gates.ps51_problems(source, CATALOG),
        "alias": lambda: gates.alias_problems(source, CATALOG),
        "catalog": lambda: gates.catalog_problems(source, CATALOG),
        "release": lambda: gates.release_problems(source, CATALOG),
        "contract": lambda: gates.param_contract_problems(
            source, MODELS.get(fixture, FixtureParams), "fixture"
        ),
    }[gate]()
    assert rule in {f.rule for f in findings}, _report(findings)


_ALLOW = "# gate-allow: scriptblock-create the users own configured command"
_HEAD = (
    "# hyperv-backup-script: fixture\n[CmdletBinding()]\nparam()\n\n"
    "$ErrorActionPreference = 'Stop'\n"
)
_CREATE = "$b = [scriptblock]::Create($c)"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(f"{_ALLOW}\n{_CREATE}\n", set(), id="marker-exempts-the-line-below"),
        pytest.param(f"{_CREATE}\n", {("contract/invoke-expression", 6)}, id="no-marker"),
        pytest.param(
            f"{_ALLOW}\n{_CREATE}\n{_CREATE}\n",
            {("contract/invoke-expression", 8)},
            id="only-the-next-line",
        ),
        pytest.param(
            f"# gate-allow: scriptblock-create\n{_CREATE}\n",
            {("contract/gate-allow", 6), ("contract/invoke-expression", 7)},
            id="no-reason",
        ),
        pytest.param(
            "# gate-allow: invoke-expression the users own command\n"
            "Invoke-Expression -Command $c\n",
            {("contract/gate-allow", 6), ("contract/invoke-expression", 7)},
            id="other-rules-stay-forbidden",
        ),
        pytest.param(
            f"{_ALLOW}\nInvoke-Expression -Command $c\n",
            {("contract/gate-allow", 6), ("contract/invoke-expression", 7)},
            id="does-not-exempt-invoke-expression",
        ),
        pytest.param(
            f"{_ALLOW}\n\n{_CREATE}\n",
            {("contract/gate-allow", 6), ("contract/invoke-expression", 8)},
            id="not-directly-above",
        ),
        pytest.param(
            f"{_CREATE}  {_ALLOW}\n",
            {("contract/gate-allow", 6), ("contract/invoke-expression", 6)},
            id="not-alone-on-its-line",
        ),
        pytest.param(
            f"$s = '{_ALLOW}'\n{_CREATE}\n",
            {("contract/invoke-expression", 7)},
            id="in-a-string-is-no-marker",
        ),
        pytest.param(
            f"<# {_ALLOW} #>\n{_CREATE}\n",
            {("contract/invoke-expression", 7)},
            id="in-a-block-comment-is-no-marker",
        ),
    ],
)
def test_gate_allow_marker_is_required_and_narrow(
    body: str, expected: set[tuple[str, int]]
) -> None:
    """``[scriptblock]::Create`` needs a ``# gate-allow: scriptblock-create <reason>`` line
    directly above it; the marker exempts that line from that rule and nothing else."""
    findings = gates.hygiene_problems((_HEAD + body).encode(), "fixture")
    assert {(f.rule, f.line) for f in findings} == expected, _report(findings)


def test_only_invoke_hook_creates_script_blocks() -> None:
    """The exemption is for running the user's own hook command, and for nothing else."""
    marked = sorted(p.name for p in SHIPPED if "gate-allow:" in p.read_text(encoding="utf-8"))
    assert marked == ["invoke-hook.ps1"]


def test_the_known_grammar_false_positive_is_reported() -> None:
    """``Select-Object Name, Path`` is valid PowerShell, but the gate stays strict: quote it."""
    findings = gates.syntax_problems(b"Get-VM | Select-Object Name, Path\n")
    assert [f.rule for f in findings] == ["syntax/error"]
    assert "quote the items" in findings[0].message
    assert gates.syntax_problems(b"Get-VM | Select-Object -Property 'Name', 'Path'\n") == []


def test_numbers_with_suffixes_are_reported_with_a_hint() -> None:
    findings = gates.syntax_problems((FIXTURES / "bad" / "numeric_suffix.ps1").read_bytes())
    assert any("write the value out" in f.message for f in findings), _report(findings)


def test_release_gaps_names_cmdlets_and_releases() -> None:
    source = (FIXTURES / "bad" / "release_gap.ps1").read_bytes()
    assert gates.release_gaps(source, CATALOG) == {
        "Get-VMGpuPartitionAdapter": ("2016", "2019"),
        "New-VM -GuestStateIsolationType": ("2016", "2019", "2022"),
    }


# --- no false positives ----------------------------------------------------------------------


@pytest.mark.parametrize("path", GOOD, ids=_name)
def test_good_fixture_passes_every_gate(path: Path) -> None:
    findings = _all_findings(path)
    assert not findings, _report(findings)


@pytest.mark.parametrize(
    "source",
    [
        "Write-Output 'use $a ?? $b && $c || $d'",
        'Write-Output "use ?? && || and `$x?.y"',
        "Write-Output 'it''s ?? && still one string'",
        "Write-Output 1  # $a ?? $b; Get-X && Get-Y || Get-Z; $c ? 1 : 2",
        "<# $a ?? $b\n Get-X && Get-Y #>\nWrite-Output 1",
        "$s = @'\n$a ?? $b && $c ? 1 : 2 `u{2713}\n'@\nWrite-Output $s",
        '$s = @"\n ?? && || `$PSStyle\n"@\nWrite-Output $s',
        "Write-Output '`u{2713}' '$PSStyle' 'ForEach-Object -Parallel'",
        "Get-ChildItem -Path 'C:\\VMs' -Filter '??.vhdx'",
        "$h = @{ clean = 1 }; Write-Output $h",
        "$x = 0..3; Write-Output $x",
        "$vm = Hyper-V\\Get-VM -Name 'web01'; Write-Output $vm",
        "Write-Output $a 2>&1",
    ],
)
def test_text_in_strings_and_comments_is_not_code(source: str) -> None:
    data = source.encode()
    findings = [
        *gates.syntax_problems(data),
        *gates.ps51_problems(data, CATALOG),
        *gates.alias_problems(data, CATALOG),
        *gates.catalog_problems(data, CATALOG),
    ]
    assert not findings, _report(findings)


def test_code_inside_string_subexpressions_is_code() -> None:
    findings = gates.ps51_problems(b'Write-Output "size: $($size ?? 0)"\n', CATALOG)
    assert [f.rule for f in findings] == ["ps51/null-coalescing"]


def test_code_mask_blanks_strings_and_comments_and_keeps_offsets() -> None:
    text = "$a = 'x ?? y' # c && d\n$b = \"q $($a) r\"\n"
    mask = gates.code_mask(text)
    assert len(mask) == len(text)
    assert mask.splitlines() == ["$a = ________         ", "$b = ___$($a)___"]


# --- the catalog and the gate's own tables ---------------------------------------------------


def test_bundled_catalog_loads() -> None:
    """The bundled copy has the documented shape (533 cmdlets, 226 of them Hyper-V)."""
    assert len(CATALOG.cmdlets) == 533
    assert sum(c.module == "Hyper-V" for c in CATALOG.cmdlets.values()) == 226
    assert CATALOG.command_aliases["gci"] == "Get-ChildItem"
    assert CATALOG.common_parameter_aliases["ea"] == "ErrorAction"


def test_bundled_catalog_matches_the_shared_reference() -> None:
    """Only where the shared reference is around (not in a bare clone)."""
    shared = Path(__file__).resolve().parents[2] / "shared/reference/powershell-cmdlets.json"
    if not shared.is_file():
        pytest.skip(f"{shared} is not here")
    assert gates.CATALOG_PATH.read_bytes() == shared.read_bytes()


def test_signature_resolution() -> None:
    get_vm = CATALOG.cmdlet("get-vm")
    assert get_vm is not None
    signature = CATALOG.signature(get_vm)
    assert signature.resolve("name").kind == "exact"
    assert signature.resolve("VMName") == gates.ParameterMatch("alias", "Name", command="Get-VM")
    assert signature.resolve("ComputerN").canonical == "ComputerName"
    assert signature.resolve("ComputerN").kind == "prefix"
    assert signature.resolve("C").kind == "ambiguous"
    assert signature.resolve("Nmae").kind == "unknown"
    assert signature.resolve("WhatIf").kind == "unknown"  # Get-VM has no ShouldProcess


def test_ps7_tables_do_not_overlap_the_51_catalog() -> None:
    """A 7-only cmdlet or parameter that the 5.1 catalog has would be a false positive."""
    assert not [name for name in ps51._PS7_COMMANDS if CATALOG.cmdlet(name)]
    overlap = []
    for name, parameters in ps51._PS7_PARAMETERS.items():
        cmdlet = CATALOG.cmdlet(name)
        assert cmdlet is not None, name
        known = {n.lower() for n in CATALOG.signature(cmdlet).names}
        overlap += [f"{name} -{p}" for p in parameters if p.lower() in known]
    assert not overlap


def test_powershell_type_table() -> None:
    assert gates.powershell_type(str) == "string"
    assert gates.powershell_type(list[str]) == "string[]"
    assert gates.powershell_type(int) == "int"
    assert gates.powershell_type(float) == "double"
    assert gates.powershell_type(bool) == "switch"
    assert gates.powershell_type(UUID) == "guid"
    assert gates.powershell_type(int | None) == "int"
    assert gates.powershell_type(Optional[list[str]]) == "string[]"  # noqa: UP045
    assert gates.powershell_type(dict[str, str]) is None
    assert gates.powershell_type(int | str) is None


def test_finding_str() -> None:
    assert str(Finding("ps51/ternary", 3, 7, "no")) == "3:7: ps51/ternary: no"
