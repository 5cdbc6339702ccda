"""Figures of a study: how far each model is from retraining on the forget set, and errors.

Two figures, drawn from a :class:`jaxunlearn.study.StudyResult`:

- ``forget_deviation_hist.png``: the paper's histogram of
  ``|prediction - retrained prediction| / |label|`` over the TRAIN forget rows, one panel
  per model (original and each unlearner or swept row; at most 5 panels a line), pooled
  over seeds (seed i of a model is
  compared with seed i of the retrained model). Mass near 0 means the model predicts the
  forgotten rows as a model that never saw them would.
- ``errors_ci.png``: retain MAE (test), forget MAE (test) and forget MAE (train) of every
  model (one line per row, so the labels of a sweep's rows stay readable), mean over seeds
  with its 95% Student-t confidence interval (from :func:`jaxunlearn.report.summarise`).
  The retrained model's mean is a dashed line.

The numbers behind the histogram come from :func:`forget_deviation`, a pure NumPy
function. Figures are built with matplotlib's object-oriented API on the Agg canvas (no
pyplot, no global backend change), and matplotlib is imported only when a figure is drawn.
matplotlib is optional (``pip install 'jaxunlearn[plots]'``); :func:`check_plots_available`
reports its absence without importing anything.

    >>> from jaxunlearn.plots import write_figures
    >>> paths = write_figures(result, "results/")     # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxunlearn.extras import require
from jaxunlearn.report import atomic_write

__all__ = [
    "FIGURE_FILES",
    "check_plots_available",
    "error_figure",
    "forget_deviation",
    "forget_deviation_figure",
    "write_figures",
]

# Stable file names written by :func:`write_figures`, in order.
FIGURE_FILES: tuple[str, ...] = ("forget_deviation_hist.png", "errors_ci.png")

# (metric key, panel title) of the error figure.
ERROR_METRICS: tuple[tuple[str, str], ...] = (
    ("test_retain_mae", "retain MAE (test)"),
    ("test_forget_mae", "forget MAE (test)"),
    ("train_forget_mae", "forget MAE (train)"),
)

# Histogram panels per line of the figure.
PANELS_PER_LINE = 5

# Labels with |y| below this fraction of the training targets' std are divided by it instead.
DEFAULT_FLOOR = 0.1


def forget_deviation(
    predictions: Mapping[str, Mapping[str, np.ndarray]],
    targets: Mapping[str, np.ndarray],
    forget: Mapping[str, np.ndarray],
    models: Sequence[str] | None = None,
    reference: str = "retrain",
    floor: float = DEFAULT_FLOOR,
) -> dict[str, np.ndarray]:
    """Per-row ``|pred - reference pred| / max(|label|, floor * std(train labels))`` on the train forget set.

    The paper divides by the label. Labels at or near zero (a similarity score of 0, a
    centred target) would make that ratio explode, so the divisor never drops below
    ``floor`` times the standard deviation of all training labels: a scale the target
    itself defines, unchanged by the units. For labels away from zero (ages, loads in MW)
    it is exactly the paper's ratio.

    Args:
        predictions: {model: {"train": [S, N]}} in target units (``StudyResult.predictions``).
        targets: {"train": [N]} in target units; forget: {"train": [N] bool}.
        models: models to compare (default: every model but ``reference``, in given order).
        reference: the model compared against; seed i of each model is paired with its seed i.
        floor: fraction of the training labels' std below which |label| is not used (> 0).

    Returns:
        {model: [S * F]} float64 ratios, seed-major (seed 0's F forget rows first).

    Raises:
        ValueError: no forget rows, a missing model, or shapes that disagree.
    """
    if not floor > 0:
        raise ValueError(f"floor must be > 0, got {floor}")
    if reference not in predictions:
        raise ValueError(f"no predictions of the reference model {reference!r}; have {sorted(predictions)}")
    y = np.asarray(targets["train"], np.float64)
    mask = np.asarray(forget["train"], bool)
    if y.ndim != 1 or mask.shape != y.shape:
        raise ValueError(f"targets and forget mask must both be [N]; got {y.shape} and {mask.shape}")
    if not mask.any():
        raise ValueError("the train forget set is empty")
    scale = float(np.std(y))
    scale = scale if scale > 0 else max(float(np.max(np.abs(y))), 1.0)
    denom = np.maximum(np.abs(y[mask]), floor * scale)
    ref = np.asarray(predictions[reference]["train"], np.float64)
    if models is None:
        models = [m for m in predictions if m != reference]
    out = {}
    for name in models:
        if name not in predictions:
            raise ValueError(f"no predictions of model {name!r}; have {sorted(predictions)}")
        pred = np.asarray(predictions[name]["train"], np.float64)
        if pred.shape != ref.shape or pred.shape[-1] != y.shape[0]:
            raise ValueError(f"{name}: predictions {pred.shape} vs reference {ref.shape} and targets {y.shape}")
        out[name] = (np.abs(pred[:, mask] - ref[:, mask]) / denom).reshape(-1)
    return out


def check_plots_available() -> None:
    """Checks, without importing it, that matplotlib (the ``plots`` extra) is installed.

    Cheap enough to call before a study starts, so a missing package is reported before
    any training rather than after it.

    Raises:
        MissingExtraError: (a ValueError) matplotlib is missing; the message names
            ``pip install 'jaxunlearn[plots]'``.
    """
    require("plots", "drawing figures (--plots)", "matplotlib")


def new_figure(width: float, height: float):
    """A pyplot-free Figure on an Agg canvas (matplotlib imported lazily)."""
    check_plots_available()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _title(result: Any) -> str:
    cfg, task = result.config, result.task
    dataset = task.get("dataset", cfg.dataset)
    if dataset == "(given task)":
        dataset = task.get("name", dataset)
    return f"{dataset} / {cfg.model}, {cfg.seeds} seed{'s' if cfg.seeds != 1 else ''}"


def _check_predictions(result: Any) -> None:
    if not getattr(result, "predictions", None) or "retrain" not in result.predictions:
        raise ValueError("the study result holds no predictions (run_study keeps them); cannot draw the histogram")


def forget_deviation_figure(result: Any, bins: int = 30, floor: float = DEFAULT_FLOOR):
    """The histogram of :func:`forget_deviation` ratios, one panel per model, shared bins.

    Bins span 0 to the 99th percentile of all models' ratios pooled; larger ratios are
    counted in the last bin. Bars are the fraction of forget rows (over all seeds) in each
    bin; the dashed line marks each model's median.

    Returns:
        a ``matplotlib.figure.Figure``.
    """
    _check_predictions(result)
    models = [r for r in result.rows if r != "retrain" and r in result.predictions]
    ratios = forget_deviation(result.predictions, result.targets, result.forget, models, floor=floor)
    pooled = np.concatenate(list(ratios.values()))
    top = float(np.percentile(pooled, 99)) if pooled.size else 1.0
    edges = np.linspace(0.0, top if top > 0 else 1.0, bins + 1)
    cols = min(len(models), PANELS_PER_LINE)
    lines = -(-len(models) // cols)
    fig = new_figure(3.2 * cols, 0.4 + 2.6 * lines)
    grid = np.atleast_2d(fig.subplots(lines, cols, sharex=True, sharey=True, squeeze=False))
    axes = grid.ravel()
    for ax in axes[len(models) :]:
        ax.set_visible(False)
    for ax, name in zip(axes, models, strict=False):  # the grid may have spare axes (hidden above)
        r = ratios[name]
        ax.hist(np.minimum(r, edges[-1]), bins=edges, weights=np.full(r.size, 1.0 / r.size), color="C0")
        med = float(np.median(r))
        ax.axvline(med, color="k", linestyle="--", linewidth=1)
        ax.set_title(f"{name} (median {med:.3g})", fontsize=10 if len(name) < 24 else 8)
        ax.set_xlabel("|pred - retrain pred| / |label|")
    for ax in grid[:, 0]:
        ax.set_ylabel("fraction of train forget rows")
    fig.supxlabel(f"the last bin also counts ratios above {edges[-1]:.3g} (99th percentile of all panels)", fontsize=8)
    fig.suptitle(f"Distance to retraining on the train forget set: {_title(result)}", fontsize=11)
    return fig


def error_figure(result: Any, metrics: Sequence[tuple[str, str]] = ERROR_METRICS):
    """Retain and forget MAE per model: mean over seeds with 95% confidence intervals.

    Returns:
        a ``matplotlib.figure.Figure`` with one panel per metric.
    """
    rows = list(result.rows)
    fig = new_figure(1.6 + 3.0 * len(metrics), 1.2 + 0.3 * len(rows))
    axes = np.atleast_1d(fig.subplots(1, len(metrics), sharey=True))
    ys = np.arange(len(rows))
    for ax, (key, title) in zip(axes, metrics, strict=True):
        means, cis = [], []
        for row in rows:
            entry = result.summary.get(row, {}).get(key) or {}
            means.append(np.nan if entry.get("mean") is None else entry["mean"])
            cis.append(0.0 if entry.get("ci95") is None else entry["ci95"])
        colors = ["C1" if r == "retrain" else "C0" for r in rows]
        for y, m, c, col in zip(ys, means, cis, colors, strict=True):
            ax.errorbar(m, y, xerr=c, fmt="o", color=col, capsize=3)
        ref = result.summary.get("retrain", {}).get(key) or {}
        if ref.get("mean") is not None:
            ax.axvline(ref["mean"], color="C1", linestyle="--", linewidth=1, label="retrain mean")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("MAE (target units)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ys, rows, fontsize=9)
    axes[0].set_ylim(len(rows) - 0.5, -0.5)  # the first row on top
    fig.supxlabel("mean over seeds ± 95% CI", fontsize=8)
    fig.suptitle(f"Errors over seeds: {_title(result)}", fontsize=11)
    return fig


def save_figure(fig, path: Path, dpi: int) -> None:
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi), binary=True)


def write_figures(result: Any, out_dir: str | os.PathLike, dpi: int = 120) -> list[Path]:
    """Writes the study's figures as PNG files into ``out_dir`` (created if needed), atomically.

    Each file is written to a temporary file in ``out_dir`` and moved into place with
    ``os.replace``, so a reader never sees a partial PNG. File names are fixed (see
    ``FIGURE_FILES``): ``forget_deviation_hist.png`` (the histogram of
    |prediction - retrained prediction| / |label| on the train forget set, per model) and
    ``errors_ci.png`` (retain/forget MAE with 95% confidence intervals over seeds).

    Args:
        result: a ``StudyResult`` from :func:`jaxunlearn.study.run_study` (it needs
            ``predictions``, ``targets``, ``forget``, ``summary``, ``rows``, ``config``).
        out_dir: output directory.
        dpi: resolution of the PNGs.

    Returns:
        The written paths, in ``FIGURE_FILES`` order.

    Raises:
        MissingExtraError: matplotlib (the ``plots`` extra) is not installed.
    """
    check_plots_available()  # before creating out_dir
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    drawers: tuple[Callable[[Any], Any], ...] = (forget_deviation_figure, error_figure)
    for name, draw in zip(FIGURE_FILES, drawers, strict=True):
        path = out / name
        save_figure(draw(result), path, dpi)
        paths.append(path)
    return paths
