"""The Windows PowerShell 5.1 gate: no PowerShell 6+/7 operator, cmdlet, parameter or variable.

PowerShell 7 operators (``??``, ``? :``, ``?.``) only show up in the syntax tree as ERROR
nodes, so this gate also scans the raw code, after :func:`~tests.gates.lexer.code_mask` has
blanked strings, here-strings and comments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from tests.gates.catalog import Catalog, load_catalog
from tests.gates.commands import _Command, _commands, _functions, _resolve_command
from tests.gates.findings import Finding, _sorted_unique, _Source
from tests.gates.lexer import _segments, code_mask
from tests.gates.parsing import _text, _walk, parse

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
