"""The tree-sitter-powershell parser, and small helpers to walk and read its syntax trees."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import tree_sitter
import tree_sitter_powershell

_PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


@lru_cache(maxsize=64)
def parse(source: bytes) -> tree_sitter.Tree:
    """The tree-sitter-powershell syntax tree of a script (cached; do not edit the tree)."""
    return _PARSER.parse(source)


def _walk(node: tree_sitter.Node) -> Iterator[tree_sitter.Node]:
    """``node`` and all its descendants, in source order (iterative: trees can be deep)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


def _text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode("utf-8", errors="replace")


def _child(node: tree_sitter.Node, node_type: str) -> tree_sitter.Node | None:
    """The first direct child of a given type."""
    return next((c for c in node.children if c.type == node_type), None)
