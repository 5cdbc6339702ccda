"""The Markdown table of an evaluation's rows."""

from __future__ import annotations

import math


def _cell(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and (abs(value) >= 1e4 or (0 < abs(value) < 1e-3)):
        return f"{value:.3g}"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def markdown_table(rows: list[str], metrics: dict[str, dict[str, float]], columns: list[tuple[str, str]]) -> str:
    """One line per row, one column per (metric key, header) pair."""
    lines = ["| row | " + " | ".join(h for _, h in columns) + " |", "|---|" + "---|" * len(columns)]
    for row in rows:
        lines.append(f"| {row} | " + " | ".join(_cell(metrics[row].get(k)) for k, _ in columns) + " |")
    return "\n".join(lines)
