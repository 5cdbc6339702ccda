"""An evaluation's outputs: results.json, results.md and the eps histogram figure, and the
column reference of docs/EVALUATION.md (``column_reference``), all from the same column lists."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from jaxunlearn.evaluation.protocol import (
    PROTOCOL_COLUMNS,
    PROTOCOLS,
    SHARED_SETTINGS,
    EvaluationResult,
    settings_of,
)
from jaxunlearn.evaluation.table import Column, definitions, reference_table
from jaxunlearn.report import atomic_write_text, jsonable

FIGURE = "eps_histogram.png"
# results.md's "Time per block" table (``timing_table``): its columns, in order.
TIMING_COLUMNS = [
    Column(
        "block",
        "block",
        "a block of models: one stage over a range of seeds (e.g. `retrain-floor`: the noise floor's retrained "
        "models; `shadows-NAME`: U-LiRA's shadows of stage NAME), trained and saved as a whole.",
    ),
    Column("models", "models", "how many models the block holds."),
    Column("wall", "wall s", "seconds from the block's start to its end, compiling included."),
    Column(
        "compile",
        "compile s",
        "seconds of the wall time spent compiling (sizing the chunks to the device's memory included).",
    ),
    Column("rate", "models/s (after compiling)", "models divided by the seconds they ran after compiling."),
    Column(
        "loaded",
        "loaded",
        "yes: the block was loaded from its checkpoint (`--resume`) and its times are those of the run that "
        "trained it.",
    ),
]


def timing_table(timings: dict[str, dict[str, float]]) -> str:
    """Markdown: per block, models, wall/compile/run seconds and models per second (``TIMING_COLUMNS``)."""
    lines = ["| " + " | ".join(c.header for c in TIMING_COLUMNS) + " |", "|" + "---|" * len(TIMING_COLUMNS)]
    for name, t in timings.items():
        cells = {
            "block": name,
            "models": str(t["models"]),
            "wall": f"{t['wall']:.1f}",
            "compile": f"{t['compile']:.1f}",
            "rate": f"{t['models'] / t['run'] if t['run'] > 0 else float('nan'):.2f}",
            "loaded": "yes" if t.get("loaded") else "no",
        }
        lines.append("| " + " | ".join(cells[c.key] for c in TIMING_COLUMNS) + " |")
    return "\n".join(lines)


def notes_text(result: EvaluationResult) -> str:
    """What the command prints under the table and results.md holds: the notes (warnings
    among them), then every column's definition."""
    lines = [f"- {n}" for n in result.notes]
    if result.columns:
        lines += ["", "Columns (docs/EVALUATION.md):", *(f"- {d}" for d in definitions(result.columns))]
    return "\n".join(lines)


def _option(setting: str) -> str:
    return "--" + setting.replace("_", "-")


def column_reference() -> str:
    """docs/EVALUATION.md's generated section: per protocol, the settings it reads and its
    table's columns, then the time-per-block table's columns (tests/test_evaluation_docs.py)."""
    parts = []
    for name in PROTOCOLS:
        own = [s for s in settings_of(name) if s not in SHARED_SETTINGS]
        parts += [
            f"### `--protocol {name}`",
            "",
            f"Settings it reads: {', '.join(f'`{_option(s)}`' for s in settings_of(name) if s != 'protocol')} "
            f"(its own: {', '.join(f'`{_option(s)}`' for s in own) or 'none'}); results.json's `evaluation` and "
            "results.md's settings list these only.",
            "",
            reference_table(PROTOCOL_COLUMNS[name]),
            "",
        ]
    parts += ["### Time per block (results.md)", "", reference_table(TIMING_COLUMNS)]
    return "\n".join(parts) + "\n"


def eps_histogram_figure(result: EvaluationResult):
    """One bar chart per row of the eps histogram (neurips23)."""
    from jaxunlearn.plots import new_figure

    rows = [r for r in result.rows if r in result.histograms]
    cols = min(3, len(rows))
    lines = -(-len(rows) // cols)
    fig = new_figure(3.4 * cols, 0.4 + 2.6 * lines)
    axes = fig.subplots(lines, cols, sharey=True, squeeze=False).ravel()
    for ax in axes[len(rows) :]:
        ax.set_visible(False)
    for ax, row in zip(axes, rows, strict=False):  # the grid may have spare axes (hidden above)
        h = result.histograms[row]
        labels = [f"{e:g}" for e in h["edges"][:-1]] + [f">={h['edges'][-1]:g}"]
        ax.bar(range(len(labels)), h["counts"] + [h["at_or_beyond_cutoff"]], color="tab:blue")
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
        ax.set_title(row, fontsize=9)
        ax.set_xlabel("per-example eps (bin start)")
    for ax in axes[::cols]:
        ax.set_ylabel("forget examples")
    return fig


def write_evaluation(
    out_dir: str | os.PathLike,
    result: EvaluationResult,
    run: dict[str, Any],
    config: dict[str, Any],
    evaluation: dict[str, Any],
    environment: dict[str, Any],
    plots: bool = False,
) -> list[Path]:
    """Writes results.json, results.md (and with ``plots`` the eps histogram) atomically."""
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    payload = jsonable(
        {
            "protocol": result.protocol,
            "evaluation": evaluation,
            "config": config,
            "run": run,
            "environment": environment,
            **{k: v for k, v in dataclasses.asdict(result).items() if k not in ("protocol", "table")},
        }
    )
    paths = [out / "results.json", out / "results.md"]
    atomic_write_text(paths[0], json.dumps(payload, indent=1, allow_nan=False) + "\n")
    figure = ""
    if plots and result.histograms:
        from jaxunlearn.plots import save_figure

        save_figure(eps_histogram_figure(result), out / FIGURE, 120)
        paths.append(out / FIGURE)
        figure = f"\n![per-example eps histogram]({FIGURE})\n"
    settings = "\n".join(f"- {k}: {json.dumps(v, default=str)}" for k, v in {**evaluation, **config}.items())
    md = (
        f"# jaxunlearn evaluation: {result.protocol}\n\n{result.table}\n\n"
        + notes_text(result)
        + f"\n{figure}\n## Time per block\n\n"
        + timing_table(result.timings)
        + f"\n\n## Settings\n\n{settings}\n- run: {json.dumps(run, default=str)}\n"
        + f"- environment: {json.dumps(environment, default=str)}\n"
    )
    atomic_write_text(paths[1], md)
    return paths
