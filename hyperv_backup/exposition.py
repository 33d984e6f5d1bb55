"""The Prometheus text exposition format (version 0.0.4), as far as our metrics files need it.

Writing: ``# HELP`` and ``# TYPE`` once per family, then its samples; label values escaped
(backslash, double quote, line feed), so a VM may be named anything. Reading: the samples of
a file written before — hand edits included — to carry values (last success times) from one
run to the next; lines that are not samples are skipped, never fatal.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Family", "Sample", "escape_label_value", "format_families", "parse_samples"]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_UNESCAPE = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(frozen=True)
class Family:
    """A metric family: its name, help text, type and the label names of every sample."""

    name: str
    help: str
    labels: tuple[str, ...]
    type: str = "gauge"


@dataclass(frozen=True)
class Sample:
    """One line of a metrics file: ``name{labels} value``."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float

    @classmethod
    def of(cls, name: str, labels: Mapping[str, str], value: float) -> Sample:
        """A sample with its labels in a canonical order (sorted by name)."""
        return cls(name, tuple(sorted(labels.items())), float(value))

    def label(self, name: str) -> str | None:
        """The value of label ``name``, or None."""
        return dict(self.labels).get(name)


def escape_label_value(value: str) -> str:
    """``\\`` → ``\\\\``, ``"`` → ``\\"``, line feed → ``\\n``: the format's only escapes."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _format_sample(sample: Sample, order: tuple[str, ...]) -> str:
    labels = dict(sample.labels)
    names = [n for n in order if n in labels] + sorted(n for n in labels if n not in order)
    inner = ",".join(f'{n}="{escape_label_value(labels[n])}"' for n in names)
    value = _format_value(sample.value)
    if not inner:
        return f"{sample.name} {value}"
    return f"{sample.name}{{{inner}}} {value}"


def format_families(families: Iterable[Family], samples: Iterable[Sample]) -> str:
    """The text of a metrics file: each family with its samples, in a stable order.

    Families without samples are left out (a ``# TYPE`` with no sample helps nobody). Of
    samples with the same name and labels the last one wins: a series appears once.
    """
    by_name: dict[str, dict[tuple[tuple[str, str], ...], Sample]] = {}
    for sample in samples:
        by_name.setdefault(sample.name, {})[sample.labels] = sample
    lines: list[str] = []
    for family in families:
        rows = sorted(by_name.get(family.name, {}).values(), key=lambda s: s.labels)
        if not rows:
            continue
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        lines.extend(_format_sample(row, family.labels) for row in rows)
    return "\n".join(lines) + "\n" if lines else ""


def parse_samples(text: str) -> list[Sample]:
    """Every well-formed sample line of ``text``; comments and malformed lines are skipped."""
    samples = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        sample = _parse_line(line)
        if sample is not None:
            samples.append(sample)
    return samples


def _parse_line(line: str) -> Sample | None:
    name_match = _NAME.match(line)
    if name_match is None:
        return None
    position = name_match.end()
    labels: dict[str, str] = {}
    if position < len(line) and line[position] == "{":
        parsed = _parse_labels(line, position + 1)
        if parsed is None:
            return None
        labels, position = parsed
    fields = line[position:].split()
    if not fields or len(fields) > 2:  # value, and an optional timestamp we do not use
        return None
    try:
        value = float(fields[0])
    except ValueError:
        return None
    return Sample.of(name_match.group(), labels, value)


def _parse_labels(line: str, position: int) -> tuple[dict[str, str], int] | None:
    """The labels from just after ``{`` to ``}``; the position after ``}``."""
    labels: dict[str, str] = {}
    while True:
        while position < len(line) and line[position] in " ,":
            position += 1
        if position < len(line) and line[position] == "}":
            return labels, position + 1
        name_match = _LABEL_NAME.match(line, position)
        if name_match is None:
            return None
        position = name_match.end()
        if line[position : position + 2] != '="':
            return None
        position += 2
        value: list[str] = []
        while True:
            if position >= len(line):
                return None  # unterminated value
            char = line[position]
            if char == "\\":
                escaped = _UNESCAPE.get(line[position + 1 : position + 2])
                if escaped is None:
                    return None
                value.append(escaped)
                position += 2
            elif char == '"':
                position += 1
                break
            else:
                value.append(char)
                position += 1
        labels[name_match.group()] = "".join(value)
