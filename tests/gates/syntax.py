"""The syntax gate: the script parses without ERROR or MISSING nodes."""

from __future__ import annotations

import itertools
import re

import tree_sitter

from tests.gates.findings import Finding, _sorted_unique, _Source
from tests.gates.lexer import code_mask
from tests.gates.parsing import _text, parse

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
