"""An evaluation's outputs: results.json, results.md and the eps histogram figure."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from jaxunlearn.evaluation.protocol import EvaluationResult
from jaxunlearn.report import atomic_write_text, jsonable

FIGURE = "eps_histogram.png"


def timing_table(timings: dict[str, dict[str, float]]) -> str:
    """Markdown: per block, models, wall/compile/run seconds and models per second."""
    lines = [
        "| block | models | wall s | compile s | models/s (after compiling) | loaded |",
        "|---|---|---|---|---|---|",
    ]
    for name, t in timings.items():
        rate = t["models"] / t["run"] if t["run"] > 0 else float("nan")
        lines.append(
            f"| {name} | {t['models']} | {t['wall']:.1f} | {t['compile']:.1f} | {rate:.2f} | "
            f"{'yes' if t.get('loaded') else 'no'} |"
        )
    return "\n".join(lines)


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
        + "\n".join(f"- {n}" for n in result.notes)
        + f"\n{figure}\n## Time per block\n\n"
        + timing_table(result.timings)
        + f"\n\n## Settings\n\n{settings}\n- run: {json.dumps(run, default=str)}\n"
        + f"- environment: {json.dumps(environment, default=str)}\n"
    )
    atomic_write_text(paths[1], md)
    return paths
