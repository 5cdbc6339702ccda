"""The Markdown tables of an evaluation, and the one list of columns each is built from.

Every table an evaluation prints takes its columns from a list of ``Column``: the metric's
key (in ``EvaluationResult.metrics`` and results.json), the header the table shows, and
the definition that results.md, the command's output and docs/EVALUATION.md give (the
docs' column reference is generated from the same lists:
``jaxunlearn.evaluation.report.column_reference``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of an evaluation's table.

    Attributes:
        key: the metric's key in ``EvaluationResult.metrics`` (and results.json).
        header: the column's header in the table.
        definition: what the number is, and which way is better (one sentence or a few).
    """

    key: str
    header: str
    definition: str


def _key_header(column: Column | tuple[str, str]) -> tuple[str, str]:
    """(key, header) of a ``Column`` or of a plain (key, header) pair."""
    if isinstance(column, Column):
        return column.key, column.header
    key, header = column
    return key, header


def _cell(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and (abs(value) >= 1e4 or (0 < abs(value) < 1e-3)):
        return f"{value:.3g}"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown_table(
    rows: list[str],
    metrics: dict[str, dict[str, float]],
    columns: Sequence[Column | tuple[str, str]],
    row_header: str = "row",
) -> str:
    """One line per row, one column per ``Column`` (or (metric key, header) pair)."""
    pairs = [_key_header(c) for c in columns]
    lines = [f"| {row_header} | " + " | ".join(h for _, h in pairs) + " |", "|---|" + "---|" * len(pairs)]
    for row in rows:
        lines.append(f"| {row} | " + " | ".join(_cell(metrics[row].get(k)) for k, _ in pairs) + " |")
    return "\n".join(lines)


def definitions(columns: Sequence[Column]) -> list[str]:
    """One line per column: "`header`: definition" (what results.md and the command print)."""
    return [f"`{c.header}`: {c.definition}" for c in columns]


def reference_table(columns: Sequence[Column]) -> str:
    """A Markdown table of the columns' headers and definitions (docs/EVALUATION.md)."""
    lines = ["| column | what it is |", "|---|---|"]
    lines += ["| `" + c.header + "` | " + c.definition.replace("|", "\\|") + " |" for c in columns]
    return "\n".join(lines)
