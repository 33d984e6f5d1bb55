"""What a gate reports: :class:`Finding`, and :class:`_Source` to place findings in a script."""

from __future__ import annotations

from dataclasses import dataclass

import tree_sitter


@dataclass(frozen=True)
class Finding:
    """One problem in a script: a rule id (``gate/what``), a 1-based position and a message."""

    rule: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: {self.rule}: {self.message}"


def _sorted_unique(findings: list[Finding]) -> list[Finding]:
    """Findings in source order, each (rule, line, column) once."""
    unique: dict[tuple[str, int, int], Finding] = {}
    for finding in findings:
        unique.setdefault((finding.rule, finding.line, finding.column), finding)
    return sorted(unique.values(), key=lambda f: (f.line, f.column, f.rule))


class _Source:
    """A script's bytes and text, with 1-based (line, column) lookups in characters."""

    def __init__(self, source: bytes) -> None:
        self.raw = source
        self.text = source.decode("utf-8", errors="replace")

    def at_offset(self, offset: int) -> tuple[int, int]:
        """The position of a character offset into :attr:`text`."""
        line_start = self.text.rfind("\n", 0, offset) + 1
        return self.text.count("\n", 0, offset) + 1, offset - line_start + 1

    def at_node(self, node: tree_sitter.Node) -> tuple[int, int]:
        """The position where a syntax node starts (tree-sitter counts columns in bytes)."""
        row, byte_column = node.start_point
        line_start = node.start_byte - byte_column
        prefix = self.raw[line_start : node.start_byte].decode("utf-8", errors="replace")
        return row + 1, len(prefix) + 1

    def line_text(self, line: int) -> str:
        """Line ``line`` (1-based), stripped and shortened for messages."""
        lines = self.text.split("\n")
        text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        return text if len(text) <= 70 else text[:67] + "..."

    def finding_at_node(self, rule: str, node: tree_sitter.Node, message: str) -> Finding:
        line, column = self.at_node(node)
        return Finding(rule, line, column, message)

    def finding_at_offset(self, rule: str, offset: int, message: str) -> Finding:
        line, column = self.at_offset(offset)
        return Finding(rule, line, column, message)
