"""Tidy (long-format) study results, the files an output folder holds, and reading them back.

``StudyResult.write(out)`` writes, beside results.json and results.md:

- ``results.csv``: one line per (study row, seed, metric), with the study's settings, the
  row's stage, its float hyperparameters (``hp.NAME``) and static settings
  (``setting.NAME``) as columns (``TIDY_COLUMNS``): what a plotting or statistics script
  wants, with no reshaping. A metric that has one value for all seeds together (a timing,
  ``Metric.per == "stage"``) is one line with an empty seed.
- ``curves.csv``: the per-epoch training and validation loss of every row and seed
  (``CURVE_COLUMNS``; the loop's history of each row's last phase).
- ``predictions.npz``: every row's predictions on the training and test rows, the targets
  and the forget masks, so every figure can be redrawn (``jaxunlearn plots OUT``).

``load_result(out)`` reads a folder back into a ``StudyResult``; ``records(result)`` and
``StudyResult.to_dataframe()`` give the long table in Python. ``outputs_reference()`` is
docs/OUTPUTS.md: these files, and every metric key with its table header, direction, unit
and definition (``jaxunlearn.metrics.suite.METRICS``, the one place that maps them).

    >>> result.write("out/")                                   # doctest: +SKIP
    >>> frame = result.to_dataframe()                          # doctest: +SKIP
    >>> frame.groupby(["row", "metric"]).value.mean()          # doctest: +SKIP
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxunlearn.metrics.suite import METRICS, PER_STAGE
from jaxunlearn.report import atomic_write, atomic_write_text

if TYPE_CHECKING:
    from jaxunlearn.study import StudyResult

RESULTS_CSV, CURVES_CSV, PREDICTIONS_NPZ = "results.csv", "curves.csv", "predictions.npz"
# The study-wide settings every line of results.csv repeats (StudyConfig fields).
STUDY_COLUMNS = ("dataset", "model", "forget", "train_epochs", "seeds")
# results.csv's fixed columns, in order; ``hp.NAME`` and ``setting.NAME`` columns follow
# ``stage``, one per name any row has (empty where a row's stage has no such name).
TIDY_COLUMNS = (*STUDY_COLUMNS, "row", "stage", "seed", "metric", "value")
# The loop's per-epoch history entries that curves.csv keeps.
CURVE_VALUES = ("train_loss", "val_loss")
CURVE_COLUMNS = ("row", "stage", "seed", "epoch", *CURVE_VALUES)


def _cell(value: Any) -> Any:
    """A CSV-safe scalar: NaN and None as empty, tuples and lists as JSON."""
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    if isinstance(value, (tuple, list, dict)):
        return json.dumps(value)
    return value


def row_columns(result: StudyResult) -> dict[str, dict[str, Any]]:
    """{row: {"stage", "hp.NAME"..., "setting.NAME"...}}: what each study row ran.

    ``hp.NAME`` holds every float hyperparameter of the row's stage (the registry's default
    where the study set none); ``setting.NAME`` its static settings (epochs and the like).
    """
    from jaxunlearn.hparams import study_variants

    cfg = result.config
    out: dict[str, dict[str, Any]] = {}
    for variant in study_variants(cfg):
        columns: dict[str, Any] = {"stage": variant.stage}
        columns.update({f"hp.{k}": v for k, v in sorted(variant.resolved_hp().items())})
        settings = cfg.resolved_settings(variant.stage)
        if dataclasses.is_dataclass(settings) and not isinstance(settings, type):
            columns.update({f"setting.{k}": v for k, v in dataclasses.asdict(settings).items()})
        out[variant.row] = columns
    for row in result.rows:  # a row the configuration does not name (e.g. a loaded study's)
        out.setdefault(row, {"stage": row.partition("[")[0]})
    return out


def records(result: StudyResult) -> list[dict[str, Any]]:
    """The long table: one dict per (row, seed, metric), keys ``TIDY_COLUMNS`` plus the
    row's ``hp.``/``setting.`` columns; a per-stage metric (``Metric.per``) appears once
    with seed None. Values are floats (NaN where a seed has none: a diverged seed, the
    attack's skipped models)."""
    cfg = result.config.to_dict()
    study = {k: result.task.get(k, cfg.get(k)) if k == "dataset" else cfg.get(k) for k in STUDY_COLUMNS}
    columns = row_columns(result)
    out = []
    for row in result.rows:
        for metric, values in result.per_seed[row].items():
            values = np.asarray(values, np.float64)
            info = METRICS.get(metric)
            seeds: Iterable[int | None] = [None] if info is not None and info.per == PER_STAGE else range(values.size)
            for seed in seeds:
                value = float(values[0 if seed is None else seed])
                out.append({**study, "row": row, **columns[row], "seed": seed, "metric": metric, "value": value})
    return out


def header_of(rows: list[dict[str, Any]], fixed: tuple[str, ...]) -> list[str]:
    """``fixed`` columns, with every other key of ``rows`` inserted after ``stage`` (sorted)."""
    extra = sorted({k for r in rows for k in r} - set(fixed))
    cut = fixed.index("stage") + 1
    return [*fixed[:cut], *extra, *fixed[cut:]]


def csv_text(rows: list[dict[str, Any]], fixed: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, header_of(rows, fixed), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
    return buffer.getvalue()


def curve_records(result: StudyResult) -> list[dict[str, Any]]:
    """One dict per (row, seed, epoch) of ``result.curves`` (``CURVE_COLUMNS``)."""
    stages = {row: c["stage"] for row, c in row_columns(result).items()}
    out = []
    for row, curves in result.curves.items():
        arrays = {k: np.asarray(curves[k], np.float64) for k in CURVE_VALUES if k in curves}
        if not arrays:
            continue
        seeds, epochs = next(iter(arrays.values())).shape
        for seed in range(seeds):
            for epoch in range(epochs):
                values = {k: float(a[seed, epoch]) for k, a in arrays.items()}
                out.append({"row": row, "stage": stages.get(row, row), "seed": seed, "epoch": epoch + 1, **values})
    return out


def write_tidy(result: StudyResult, out: str | os.PathLike) -> list[Path]:
    """Writes results.csv, curves.csv and predictions.npz into ``out`` atomically.

    Returns:
        The paths written, in that order (curves.csv only when the result has curves).
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / RESULTS_CSV]
    atomic_write_text(paths[0], csv_text(records(result), TIDY_COLUMNS))
    curves = curve_records(result)
    if curves:
        paths.append(folder / CURVES_CSV)
        atomic_write_text(paths[-1], csv_text(curves, CURVE_COLUMNS))
    arrays = {
        f"pred/{row}/{split}": np.asarray(p) for row, per in result.predictions.items() for split, p in per.items()
    }
    arrays.update({f"target/{s}": np.asarray(y) for s, y in result.targets.items()})
    arrays.update({f"forget/{s}": np.asarray(m, bool) for s, m in result.forget.items()})
    paths.append(folder / PREDICTIONS_NPZ)
    atomic_write(paths[-1], lambda fh: np.savez_compressed(fh, allow_pickle=False, **arrays), binary=True)
    return paths


def _read_curves(path: Path) -> dict[str, dict[str, np.ndarray]]:
    if not path.exists():
        return {}
    by_row: dict[str, dict[tuple[int, int], dict[str, float]]] = {}
    with path.open(newline="") as fh:
        for line in csv.DictReader(fh):
            values = {k: float(line[k]) if line.get(k) else math.nan for k in CURVE_VALUES}
            by_row.setdefault(line["row"], {})[(int(line["seed"]), int(line["epoch"]))] = values
    out = {}
    for row, cells in by_row.items():
        seeds = 1 + max(s for s, _ in cells)
        epochs = max(e for _, e in cells)
        out[row] = {
            k: np.array([[cells[(s, e)][k] for e in range(1, epochs + 1)] for s in range(seeds)]) for k in CURVE_VALUES
        }
    return out


def load_result(out: str | os.PathLike) -> StudyResult:
    """A ``StudyResult`` read back from a folder that ``StudyResult.write`` (or
    ``jaxunlearn run``) wrote: per-seed metrics, summary, timings, curves, and the
    predictions when predictions.npz is there. Enough to redraw the figures
    (``jaxunlearn.plots.write_figures``) and to export the tidy tables again.

    Raises:
        ValueError: no results.json in ``out``, or one this version cannot read.
    """
    from jaxunlearn.config import StudyConfig
    from jaxunlearn.seeds import LoopPlan
    from jaxunlearn.study import StudyResult, study_table

    folder = Path(out)
    try:
        data = json.loads((folder / "results.json").read_text())
        saved = dict(data["config"])
        plan = LoopPlan(**saved.pop("plan"))
        task = saved.pop("task")
        extra = {k: saved.pop(k, default) for k, default in (("timings", {}), ("divergence", []), ("stage_stats", {}))}
        fields = {f.name for f in dataclasses.fields(StudyConfig)}
        config = StudyConfig(**{k: v for k, v in saved.items() if k in fields})
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{folder}: not a study's output folder ({type(err).__name__}: {err})") from err
    per_seed = {
        row: {k: np.array([math.nan if v is None else v for v in vals], np.float64) for k, vals in metrics.items()}
        for row, metrics in data["per_seed"].items()
    }
    predictions: dict[str, dict[str, np.ndarray]] = {}
    targets: dict[str, np.ndarray] = {}
    forget: dict[str, np.ndarray] = {}
    npz = folder / PREDICTIONS_NPZ
    if npz.exists():
        with np.load(npz) as arrays:
            for name in arrays.files:
                kind, _, rest = name.partition("/")
                if kind == "pred":
                    row, _, split = rest.rpartition("/")
                    predictions.setdefault(row, {})[split] = arrays[name]
                elif kind == "target":
                    targets[rest] = arrays[name]
                elif kind == "forget":
                    forget[rest] = arrays[name]
    return StudyResult(
        config,
        plan,
        task,
        per_seed,
        extra["timings"],
        data["summary"],
        study_table(config, data["summary"], list(data["summary"])),
        list(data["summary"]),
        divergence=extra["divergence"],
        stage_stats=extra["stage_stats"],
        predictions=predictions,
        targets=targets,
        forget=forget,
        prediction_digests=data.get("prediction_digests", {}),
        environment=data.get("environment", {}),
        curves=_read_curves(folder / CURVES_CSV),
    )


def outputs_reference() -> str:
    """docs/OUTPUTS.md: the files of an output folder and every metric key, generated from
    the code (``tests/test_tidy.py`` checks it is current)."""
    from jaxunlearn.metrics.suite import with_direction
    from jaxunlearn.plots import FIGURE_FILES, FIGURE_NOTES

    lines = [
        "# What a study writes, and what every metric means",
        "",
        "Generated from `jaxunlearn.tidy` and `jaxunlearn.metrics.suite.METRICS` (regenerate with "
        "`JAXUNLEARN_WRITE_DOCS=1 python -m pytest tests/test_tidy.py`). `jaxunlearn run --out OUT` and "
        "`StudyResult.write(OUT)` write the same files; `jaxunlearn plots OUT` redraws the figures from them, and "
        "`jaxunlearn.tidy.load_result(OUT)` reads them back into a `StudyResult`.",
        "",
        "## Files",
        "",
        "| file | what it holds |",
        "|---|---|",
        "| `results.json` | the configuration, the machine (`environment`), `summary` (per row and metric: mean, "
        "std, 95% CI half-width, n, values), `per_seed` (per row and metric: one value per seed; a per-stage "
        "metric repeats its value), timings, divergence events and a digest of every model's predictions |",
        "| `results.md` | the table, the row closest to retraining, the sweep's best row and the paper's claims, "
        "as printed |",
        f"| `{RESULTS_CSV}` | the long table: one line per row, seed and metric; columns "
        f"{', '.join(f'`{c}`' for c in TIDY_COLUMNS)}, with `hp.NAME` (the row's float hyperparameters) and "
        "`setting.NAME` (its static settings) after `stage`; a per-stage metric has an empty `seed` |",
        f"| `{CURVES_CSV}` | per-epoch losses of every row and seed: {', '.join(f'`{c}`' for c in CURVE_COLUMNS)} "
        "(standardised units, the loss the loop trains; a stage of several phases keeps its last phase's) |",
        f"| `{PREDICTIONS_NPZ}` | NumPy arrays `pred/ROW/train`, `pred/ROW/test` ([seeds, rows], target units), "
        "`target/SPLIT` and `forget/SPLIT` ([rows]) |",
    ]
    lines += [f"| `{name}` | {FIGURE_NOTES[name]} |" for name in FIGURE_FILES]
    lines += [
        "",
        "## Metrics",
        "",
        "The key is what results.json and results.csv call a metric; the header is its column in the table (a "
        "metric without one is kept in the files only). Each header in the table carries its direction in "
        "brackets.",
        "",
        "| key | table header | better | unit | per | definition |",
        "|---|---|---|---|---|---|",
    ]
    for key, m in METRICS.items():
        header = "—" if m.header is None else f"`{with_direction(key, m.header)}`"
        lines.append(f"| `{key}` | {header} | {m.direction or '—'} | {m.unit} | {m.per} | {m.definition} |")
    lines.append("")
    return "\n".join(lines)
