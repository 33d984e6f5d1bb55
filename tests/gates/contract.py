"""The param() contract gate: a script's ``param()`` block matches its pydantic param model."""

from __future__ import annotations

import re
import types
import typing
import uuid

import tree_sitter
from pydantic import BaseModel

from tests.gates.commands import _attribute_name, _attributes, _type_literal, _variable_name
from tests.gates.findings import Finding, _sorted_unique, _Source
from tests.gates.hygiene import hygiene_problems
from tests.gates.parsing import _child, _text, parse

_ALLOWED_PARAMETER_ATTRIBUTE = re.compile(r"parameter|validate\w*|allow\w*", re.IGNORECASE)
_MANDATORY = re.compile(r"\bMandatory\b(?!\s*=\s*\$false)", re.IGNORECASE)


def powershell_type(annotation: object) -> str | None:
    """The PowerShell parameter type for a param-model field type, or None if unsupported.

    ``str`` → ``string``, ``list[str]`` → ``string[]``, ``int`` → ``int``,
    ``float`` → ``double``, ``bool`` → ``switch``, ``UUID`` → ``guid``; ``Optional[X]`` is
    the type of ``X``; a ``Literal`` of strings is ``string`` (and :func:`literal_choices`
    demands a matching ``[ValidateSet(...)]``).
    """
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in arguments if a is not type(None)]
        return powershell_type(rest[0]) if len(rest) == 1 else None
    if origin is typing.Literal and all(isinstance(a, str) for a in arguments):
        return "string"
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


def literal_choices(annotation: object) -> frozenset[str] | None:
    """The allowed values of a ``Literal`` of strings (also inside ``Optional``), else None."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in arguments if a is not type(None)]
        return literal_choices(rest[0]) if len(rest) == 1 else None
    if origin is typing.Literal and all(isinstance(a, str) for a in arguments):
        return frozenset(str(a) for a in arguments)
    return None


_VALIDATE_SET = re.compile(r"validateset", re.IGNORECASE)
_QUOTED = re.compile(r"'((?:[^']|'')*)'|\"([^\"]*)\"")


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
    ``contract/param-mandatory``, ``contract/param-validateset``, ``contract/unsupported-type``,
    and the hygiene rules.
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
        expected[ps_name.lower()] = (
            ps_name,
            ps_type,
            info.is_required(),
            literal_choices(info.annotation),
        )
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
    for key, (ps_name, ps_type, _, _) in expected.items():
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
    expected: tuple[str, str | None, bool, frozenset[str] | None],
    params_model: type[BaseModel],
) -> list[Finding]:
    ps_name, ps_type, required, choices = expected
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
    if choices is not None:
        findings += _validate_set_problems(src, parameter, variable, choices, params_model)
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


def _validate_set_problems(
    src: _Source,
    parameter: tree_sitter.Node,
    variable: tree_sitter.Node,
    choices: frozenset[str],
    params_model: type[BaseModel],
) -> list[Finding]:
    """A ``Literal`` field needs ``[ValidateSet(...)]`` with exactly its values."""
    name = _variable_name(variable)
    wanted = ", ".join(f"'{c}'" for c in sorted(choices))
    for attribute in _attributes(parameter):
        if not _VALIDATE_SET.fullmatch(_attribute_name(attribute)):
            continue
        written = {
            (single.replace("''", "'") if single else double)
            for single, double in _QUOTED.findall(_text(attribute))
        }
        if {w.casefold() for w in written} == {c.casefold() for c in choices}:
            return []
        return [
            src.finding_at_node(
                "contract/param-validateset",
                attribute,
                f"`${name}` allows {sorted(written)}; {params_model.__name__} allows {wanted}",
            )
        ]
    return [
        src.finding_at_node(
            "contract/param-validateset",
            variable,
            f"`${name}` needs [ValidateSet({wanted})] like {params_model.__name__}",
        )
    ]
