"""Commands and functions in a syntax tree, and how their names and parameters resolve."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import tree_sitter

from tests.gates.catalog import Catalog, ParameterMatch, Signature
from tests.gates.parsing import _child, _text, _walk


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
