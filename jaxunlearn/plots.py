"""Figures of a study: how far each model is from retraining, its metrics, its learning curves.

Four figures, drawn from a :class:`jaxunlearn.study.StudyResult` (a live one, or one read
back from an output folder by ``jaxunlearn.tidy.load_result``: ``jaxunlearn plots OUT``):

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
- ``metrics_ci.png``: the same for the Wasserstein distance to retraining, the membership
  attack and the anamnesis index (its line is at 1, the retrained model's own value).
- ``learning_curves.png``: the training and validation loss per epoch of every row's last
  phase, mean over seeds with the range of the seeds shaded: did the models converge?

The numbers behind the histogram come from :func:`forget_deviation`, a pure NumPy
function. Figures are built with matplotlib's object-oriented API on the Agg canvas (no
pyplot, no global backend change), and matplotlib is imported only when a figure is drawn.
matplotlib is optional (``pip install 'jaxunlearn[plots]'``); :func:`check_plots_available`
reports its absence without importing anything.

    >>> from jaxunlearn.plots import write_figures
    >>> paths = write_figures(result, "results/")     # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxunlearn.extras import require
from jaxunlearn.metrics.suite import METRICS, NEAREST_ONE, with_direction
from jaxunlearn.report import atomic_write

__all__ = [
    "FIGURE_FILES",
    "check_plots_available",
    "error_figure",
    "forget_deviation",
    "forget_deviation_figure",
    "learning_curve_figure",
    "metrics_figure",
    "write_figures",
]

# The metric keys of the error figure and of the other metrics' figure (panel titles and
# units come from ``METRICS``).
ERROR_METRICS: tuple[str, ...] = ("test_retain_mae", "test_forget_mae", "train_forget_mae")
OTHER_METRICS: tuple[str, ...] = ("wasserstein", "mia", "ain")

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


def error_figure(result: Any, metrics: Sequence[str] = ERROR_METRICS, what: str = "Errors"):
    """One panel per metric key: every row's mean over seeds with its 95% confidence interval.

    The dashed line is the retrained model's mean, or 1 for a metric best nearest 1 (the AIN).

    Returns:
        a ``matplotlib.figure.Figure`` with one panel per metric.
    """
    rows = list(result.rows)
    fig = new_figure(1.6 + 3.0 * len(metrics), 1.2 + 0.3 * len(rows))
    axes = np.atleast_1d(fig.subplots(1, len(metrics), sharey=True))
    ys = np.arange(len(rows))
    for ax, key in zip(axes, metrics, strict=True):
        info = METRICS[key]
        means, cis = [], []
        for row in rows:
            entry = result.summary.get(row, {}).get(key) or {}
            means.append(np.nan if entry.get("mean") is None else entry["mean"])
            cis.append(0.0 if entry.get("ci95") is None else entry["ci95"])
        colors = ["C1" if r == "retrain" else "C0" for r in rows]
        for y, m, c, col in zip(ys, means, cis, colors, strict=True):
            ax.errorbar(m, y, xerr=c, fmt="o", color=col, capsize=3)
        ref = result.summary.get("retrain", {}).get(key) or {}
        if info.direction == NEAREST_ONE:
            ax.axvline(1.0, color="C1", linestyle="--", linewidth=1, label="best: 1")
        elif ref.get("mean") is not None:
            ax.axvline(ref["mean"], color="C1", linestyle="--", linewidth=1, label="retrain mean")
        ax.set_title(with_direction(key, info.header or key), fontsize=10)
        ax.set_xlabel(info.unit)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(ys, rows, fontsize=9)
    axes[0].set_ylim(len(rows) - 0.5, -0.5)  # the first row on top
    fig.supxlabel("mean over seeds ± 95% CI", fontsize=8)
    fig.suptitle(f"{what} over seeds: {_title(result)}", fontsize=11)
    return fig


def metrics_figure(result: Any):
    """``error_figure`` of the W1 distance, the membership attack and the AIN."""
    return error_figure(result, OTHER_METRICS, "Distance, attack and relearning")


def learning_curve_figure(result: Any):
    """Training and validation loss per epoch, one panel per row: the mean over seeds as a
    line, the seeds' range shaded (log scale when every loss is positive).

    Raises:
        ValueError: the result holds no curves.
    """
    curves = {row: c for row, c in getattr(result, "curves", {}).items() if c}
    if not curves:
        raise ValueError("the study result holds no learning curves (run_study keeps them; curves.csv in a folder)")
    rows = [r for r in result.rows if r in curves]
    cols = min(len(rows), PANELS_PER_LINE)
    lines = -(-len(rows) // cols)
    fig = new_figure(3.2 * cols, 0.6 + 2.4 * lines)
    grid = np.atleast_2d(fig.subplots(lines, cols, squeeze=False))
    for ax in grid.ravel()[len(rows) :]:
        ax.set_visible(False)
    shown = {  # a stage that does not validate has an all-NaN val_loss: left out
        row: {k: np.asarray(v, np.float64) for k, v in sorted(curves[row].items()) if np.isfinite(v).any()}
        for row in rows
    }
    positive = all(np.nanmin(v) > 0 for c in shown.values() for v in c.values())
    for ax, row in zip(grid.ravel(), rows, strict=False):
        for color, (name, values) in zip(("C0", "C1"), shown[row].items(), strict=False):
            epochs = np.arange(1, values.shape[1] + 1)
            with np.errstate(all="ignore"), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # an epoch where every seed is NaN
                mean, low, high = (f(values, axis=0) for f in (np.nanmean, np.nanmin, np.nanmax))
            ax.plot(epochs, mean, color=color, marker="o" if epochs.size < 12 else None, label=name.replace("_", " "))
            ax.fill_between(epochs, low, high, color=color, alpha=0.2)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if positive:
            ax.set_yscale("log")
        ax.set_title(row, fontsize=10 if len(row) < 24 else 8)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    grid[0, 0].legend(fontsize=8)
    for ax in grid[:, 0]:
        ax.set_ylabel("loss (standardised)")
    fig.suptitle(f"Learning curves of each row's last phase (mean, range over seeds): {_title(result)}", fontsize=11)
    return fig


def save_figure(fig, path: Path, dpi: int) -> None:
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi), binary=True)


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """One figure of ``write_figures``: how to draw it, what it shows, and (for a figure
    whose data an older output folder may lack) whether a result has that data; a figure
    without ``available`` is always drawn, and its drawer raises when its data is missing."""

    draw: Callable[[Any], Any]
    note: str
    available: Callable[[Any], bool] | None = None


# Every figure ``write_figures`` draws, in order, by file name.
FIGURES: dict[str, FigureSpec] = {
    "forget_deviation_hist.png": FigureSpec(
        forget_deviation_figure,
        "per model, the histogram of \\|prediction - retrained prediction\\| / \\|label\\| on the training "
        "forget rows, pooled over seeds",
    ),
    "errors_ci.png": FigureSpec(error_figure, "retain and forget MAE of every row, mean over seeds with 95% CIs"),
    "metrics_ci.png": FigureSpec(metrics_figure, "W1 to retrain, MIA forget and AIN of every row, mean with 95% CIs"),
    "learning_curves.png": FigureSpec(
        learning_curve_figure,
        "training and validation loss per epoch of every row's last phase, mean and range over seeds (a folder "
        "written before curves were kept has none)",
        available=lambda result: any(getattr(result, "curves", {}).values()),
    ),
}
FIGURE_FILES: tuple[str, ...] = tuple(FIGURES)
FIGURE_NOTES: dict[str, str] = {name: spec.note for name, spec in FIGURES.items()}


def write_figures(result: Any, out_dir: str | os.PathLike, dpi: int = 120) -> list[Path]:
    """Writes the study's figures as PNG files into ``out_dir`` (created if needed), atomically.

    Each file is written to a temporary file in ``out_dir`` and moved into place with
    ``os.replace``, so a reader never sees a partial PNG. File names are fixed (see
    ``FIGURES``, which says what each shows).

    Args:
        result: a ``StudyResult`` from :func:`jaxunlearn.study.run_study` (it needs
            ``predictions``, ``targets``, ``forget``, ``summary``, ``rows``, ``config``,
            ``curves``), or one read back by ``jaxunlearn.tidy.load_result``.
        out_dir: output directory.
        dpi: resolution of the PNGs.

    Returns:
        The written paths, in ``FIGURE_FILES`` order (a figure whose data the result lacks,
        ``FigureSpec.available``, is left out).

    Raises:
        MissingExtraError: matplotlib (the ``plots`` extra) is not installed.
    """
    check_plots_available()  # before creating out_dir
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, spec in FIGURES.items():
        if spec.available is not None and not spec.available(result):
            continue
        path = out / name
        save_figure(spec.draw(result), path, dpi)
        paths.append(path)
    return paths
