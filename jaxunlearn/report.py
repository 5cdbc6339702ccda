"""Summaries, Markdown tables and result files for multi-seed studies.

A study produces ``per_seed[row][metric]``: one [S] array per model (row) and
metric, with NaN where a metric is undefined. :func:`summarise` reduces each
to mean / std / 95% Student-t half-width, :func:`format_table` renders a
Markdown table, and :func:`write_results` writes ``results.json`` (strict
JSON, NaN as ``null``) and ``results.md`` atomically. Host-side only; JAX is
imported lazily by :func:`environment_info`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata as _md
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = ["atomic_write_text", "environment_info", "format_table", "prediction_digest", "summarise", "write_results"]

MISSING = "—"
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "scipy", "scikit-learn")


def _summary_of(values: np.ndarray) -> dict:
    """Summarises one [S] array, ignoring non-finite entries."""
    finite = values[np.isfinite(values)]
    n = int(finite.size)
    out: dict[str, Any] = {"mean": None, "std": None, "ci95": None, "n": n}
    if n > 0:
        out["mean"] = float(np.mean(finite))
        if n > 1:
            std = float(np.std(finite, ddof=1))
            out["std"] = std
            from scipy import stats  # heavy import, only when summarising

            out["ci95"] = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))
        else:
            out["std"] = 0.0
            out["ci95"] = 0.0
    out["values"] = [float(v) for v in values]
    return out


def summarise(
    per_seed: Mapping[str, Mapping[str, Any]],
) -> dict[str, dict[str, dict]]:
    """Reduces per-seed metrics to mean, std and a 95% confidence interval.

    Args:
        per_seed: ``per_seed[row][metric]`` is array-like of shape [S]
            (a scalar counts as S = 1). NaN marks an undefined value.

    Returns:
        ``summary[row][metric]`` = ``{"mean", "std", "ci95", "n", "values"}``:
        mean and sample std (ddof=1; 0.0 when only one finite value) over the
        ``n`` finite values, ``ci95`` the half-width ``t_{0.975, n-1} * std /
        sqrt(n)`` (0.0 when n == 1), and ``values`` the raw [S] list (NaN
        kept). When no value is finite, mean/std/ci95 are None.

    Raises:
        ValueError: if a metric array has more than one dimension.
    """
    summary: dict[str, dict[str, dict]] = {}
    for row, metrics in per_seed.items():
        summary[row] = {}
        for metric, vals in metrics.items():
            arr = np.atleast_1d(np.asarray(vals, dtype=np.float64))
            if arr.ndim != 1:
                raise ValueError(f"per_seed[{row!r}][{metric!r}] must have shape [S], got {arr.shape}")
            summary[row][metric] = _summary_of(arr)
    return summary


# A mean smaller than this fraction of its spread is float noise around 0 (e.g. a paired
# difference of identical values: -3.7e-17 +- 0.25) and prints as 0.
NOISE_RELATIVE = 1e-9


def at_noise(value: float, spread: float | None) -> float:
    """``value``, or 0.0 when it is float noise next to ``spread`` (``NOISE_RELATIVE``)."""
    return 0.0 if spread and abs(value) <= NOISE_RELATIVE * abs(spread) else value


def _number(value: float, digits: int) -> str:
    if abs(value) >= 1e4:
        return f"{value:.{digits}e}"
    return f"{value:.{digits}f}"


def format_table(
    summary: Mapping[str, Mapping[str, Mapping[str, Any]]],
    rows: Sequence[str],
    columns: Sequence[tuple[str, str]],
    digits: int = 3,
    plain: Sequence[str] = (),
    spread: str = "std",
    why: Mapping[str, str] | None = None,
) -> str:
    """Renders a summary as a Markdown table of ``mean ± spread`` cells.

    A mean over fewer seeds than the row has shows ``(n=k/S)``, and a note under the table
    says why, from ``why`` ({metric: reason}; "*" for every metric). A mean that is float
    noise next to its spread prints as 0 (``at_noise``).

    Args:
        summary: output of :func:`summarise`.
        rows: row keys in display order; the first column is headed "model".
        columns: ``(metric_key, header)`` pairs in display order.
        digits: number of decimals for mean and std (values of 10^4 and more are
            written with ``digits + 1`` significant figures, e.g. ``2.433e+06``).
        plain: metric keys shown as the mean alone (e.g. one wall time per study).
        spread: what follows ±: "std" (sample std over seeds) or "ci95" (half-width of
            the 95% Student-t confidence interval of the mean).

    Returns:
        The table as a string (no trailing newline). A missing row or metric,
        or one with no finite values, shows as "—".
    """
    if spread not in ("std", "ci95"):
        raise ValueError(f"spread must be 'std' or 'ci95', got {spread!r}")
    header = "| model | " + " | ".join(h for _, h in columns) + " |"
    rule = "|---|" + "---|" * len(columns)
    lines = [header, rule]
    partial: dict[str, str] = {}  # metric -> its header, where some mean lacks seeds
    for row in rows:
        cells = []
        for key, title in columns:
            entry = summary.get(row, {}).get(key)
            if entry is None or entry.get("mean") is None:
                cells.append(MISSING)
                continue
            width = entry.get(spread) or 0.0
            mean = _number(at_noise(entry["mean"], entry.get("std")), digits)
            cell = mean if key in plain else f"{mean} ± {_number(width, digits)}"
            total = len(entry.get("values") or ())
            if entry.get("n") is not None and entry["n"] < total:
                cell += f" (n={entry['n']}/{total})"
                partial[key] = title
            cells.append(cell)
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    if partial:
        why = why or {}
        lines.append("")
        for key, title in partial.items():
            reasons = [r for r in (why.get(key), why.get("*")) if r]
            because = "; ".join(reasons) if reasons else "the other seeds have no finite value"
            lines.append(f"(n=k/S) under {title}: the mean of the k seeds with a value: {because}.")
    return "\n".join(lines)


def _lowest(values: Mapping[str, np.ndarray]) -> tuple[list[str], dict[str, dict]]:
    """(rows by mean, lowest first; {row: ``_summary_of``}) of per-seed values {row: [S]};
    rows without a finite value are left out of the ranking."""
    scores = {r: _summary_of(np.asarray(v, np.float64)) for r, v in values.items()}
    return sorted((r for r in scores if scores[r]["mean"] is not None), key=lambda r: scores[r]["mean"]), scores


def _shown(score: Mapping[str, Any]) -> str:
    return f"{score['mean']:.3f} ± {score['ci95']:.3f}"


def _separation(ranked: Sequence[str], scores: Mapping[str, Mapping[str, Any]]) -> str:
    """The sentence saying which rows' 95% CIs overlap the first's (or that none does)."""

    def interval(r: str) -> tuple[float, float]:
        return scores[r]["mean"] - scores[r]["ci95"], scores[r]["mean"] + scores[r]["ci95"]

    low, high = interval(ranked[0])
    overlap = [r for r in ranked[1:] if interval(r)[0] <= high and interval(r)[1] >= low]
    if overlap:
        return (
            " Its CI overlaps "
            + ", ".join(f"{r} ({_shown(scores[r])})" for r in overlap)
            + (": the seeds do not separate them.")
        )
    if len(ranked) > 1:
        return f" No other row's CI overlaps it (next: {ranked[1]}, {_shown(scores[ranked[1]])})."
    return ""


def closest_to_retraining(
    per_seed: Mapping[str, Mapping[str, Any]], y_std: float, controls: Sequence[str] = ("original", "retrain")
) -> str | None:
    """One paragraph naming the row closest to retraining by ``metrics.suite.gap_to_retrain``
    (mean and 95% CI over seeds), the rows whose CI overlaps its own, and doing nothing.

    Args:
        per_seed: {row: {metric: [S]}} with the "retrain" row; y_std: the std of the
            training targets; controls: rows that are not contenders.

    Returns:
        The paragraph, or None without a contender or without the retrained row.
    """
    from jaxunlearn.metrics.suite import GAP_PARTS, gap_to_retrain

    rows = [r for r in per_seed if r not in controls and all(p in per_seed[r] for p in GAP_PARTS)]
    if not rows or "retrain" not in per_seed:
        return None
    ranked, scores = _lowest({r: gap_to_retrain(dict(per_seed[r]), dict(per_seed["retrain"]), y_std) for r in rows})
    if not ranked:
        return None
    best = ranked[0]
    text = (
        f"Closest to retraining: **{best}**, gap {_shown(scores[best])} (mean ± 95% CI over {scores[best]['n']} "
        f"seeds; per seed the norm of the MAE gaps to the retrained model of that seed on test retain, test forget "
        f"and train forget rows, in standard deviations of the training targets; lower is better)."
    ) + _separation(ranked, scores)
    if "original" in per_seed:
        original = _summary_of(gap_to_retrain(dict(per_seed["original"]), dict(per_seed["retrain"]), y_std))
        if original["mean"] is not None:
            text += f" Doing nothing (original): {_shown(original)}."
    return text


def best_of_sweeps(per_seed: Mapping[str, Mapping[str, Any]], metric: str = "val_gap") -> list[str]:
    """One paragraph per swept stage (a stage with several rows ``NAME[...]``: a sweep or
    trials) naming its best row by ``metric`` (lower is better; default the validation gap
    to retraining, ``metrics.suite.METRICS["val_gap"]``, which reads no test row), with its
    95% CI over seeds and the rows whose CIs overlap it.

    Returns:
        The paragraphs, in the rows' order; [] when no stage has several rows.
    """
    stages: dict[str, list[str]] = {}
    for row in per_seed:
        if "[" in row and metric in per_seed[row]:
            stages.setdefault(row.partition("[")[0], []).append(row)
    out = []
    for stage, rows in stages.items():
        ranked, scores = _lowest({r: per_seed[r][metric] for r in rows})
        if len(rows) < 2 or not ranked:
            continue
        best = ranked[0]
        out.append(
            f"Best of the {len(rows)} {stage} rows: **{best}**, validation gap {_shown(scores[best])} (mean ± 95% "
            f"CI over {scores[best]['n']} seeds; per seed the norm of the MAE gaps to the retrained model of that "
            f"seed on the training retain, training forget and validation rows, in standard deviations of the "
            f"training targets: chosen without reading a test row; lower is better)." + _separation(ranked, scores)
        )
    return out


def jsonable(obj: Any) -> Any:
    """Converts NumPy types, paths and tuples to JSON types; NaN/inf -> None."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "__array__"):  # e.g. jax.Array
        return jsonable(np.asarray(obj))
    return str(obj)


def _umask() -> int:
    mask = os.umask(0)  # the only portable way to read it: set and restore at once
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[IO], object], binary: bool = False) -> None:
    """Calls ``write(file)`` on a temp file in ``path``'s folder, then os.replace()s it into place.

    A reader never sees a partial file; on any error the temp file is removed. The file
    gets the permissions of a plainly created one (0666 less the umask), not the private
    0600 of a temporary file.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda fh: fh.write(text))


def _markdown(config: Mapping[str, Any], table_md: str) -> str:
    lines = ["# jaxunlearn results", "", "## Configuration", ""]
    for key, value in config.items():
        shown = value if isinstance(value, str) else json.dumps(jsonable(value))
        lines.append(f"- {key}: {shown}")
    lines += ["", "## Results (mean ± 95% confidence-interval half-width over seeds)", "", table_md.rstrip(), ""]
    return "\n".join(lines)


def write_results(
    out_dir: str | os.PathLike,
    *,
    summary: Mapping[str, Any],
    per_seed: Mapping[str, Mapping[str, Any]],
    table_md: str,
    config: Mapping[str, Any],
    environment: Mapping[str, Any],
    prediction_digests: Mapping[str, Sequence[str]] | None = None,
) -> tuple[Path, Path]:
    """Writes ``results.json`` and ``results.md`` into ``out_dir`` atomically.

    Args:
        out_dir: output directory, created (with parents) if needed.
        summary: output of :func:`summarise`.
        per_seed: ``per_seed[row][metric]`` arrays of shape [S].
        table_md: Markdown table from :func:`format_table`.
        config: study configuration (JSON-convertible values).
        environment: output of :func:`environment_info`.
        prediction_digests: {row: [S] hex} (:func:`prediction_digest`), written when given.

    Returns:
        ``(json_path, md_path)``.

    Raises:
        ValueError: if the content cannot be encoded as strict JSON; nothing
            is written in that case.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = jsonable(
        {
            "config": config,
            "environment": environment,
            "summary": summary,
            "per_seed": per_seed,
            **({"prediction_digests": prediction_digests} if prediction_digests is not None else {}),
        }
    )
    text = json.dumps(payload, indent=2, allow_nan=False) + "\n"
    md = _markdown(config, table_md)
    json_path, md_path = out / "results.json", out / "results.md"
    atomic_write_text(json_path, text)
    atomic_write_text(md_path, md)
    return json_path, md_path


def prediction_digest(arrays: Sequence[np.ndarray]) -> str:
    """A short hex digest (SHA-256, 16 hex digits) of one model's predictions: the float32
    bytes of each array in order, with its shape. Equal digests mean bitwise equal outputs.

    Args:
        arrays: e.g. one seed's predictions on the train rows [N_train] and test rows [N_test].
    """
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a, dtype="<f4"))
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _version(dist: str) -> str:
    try:
        return _md.version(dist)
    except _md.PackageNotFoundError:
        return "not installed"


_PACKAGE_DIR = Path(__file__).resolve().parent


def _git_dirty() -> bool | None:
    """Whether the library's own files differ from the commit (so ``git_commit`` is not the
    whole story of the code that ran); None outside a git checkout. Other files (results
    being written, docs) do not count."""
    try:
        res = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", str(_PACKAGE_DIR)],
            cwd=_PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(res.stdout.strip()) if res.returncode == 0 else None


def _git_commit() -> str | None:
    try:
        res = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=_PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = res.stdout.strip()
    return commit if res.returncode == 0 and commit else None


def environment_info() -> dict[str, Any]:
    """Describes the software and hardware a study ran on.

    Returns:
        dict with ``python``, ``platform``, ``versions`` (jax, jaxlib, flax,
        optax, numpy; "not installed" if absent), ``jax_backend``,
        ``jax_device_kinds`` (sorted unique), ``jax_device_count`` (all processes'),
        ``jax_process_count``,
        ``git_commit`` of the library's checkout (None outside one), ``git_dirty`` (its
        package files changed since that commit), ``cpu`` (the host CPU's model name), ``cpu_cores``
        (the cores the process may use), ``numerics`` ("native" or "portable",
        :mod:`jaxunlearn.numerics`), ``machine`` (CPU identity and ISA, BLAS kernels, XLA flags
        and threads, every package version: :func:`jaxunlearn.machine.machine_description`)
        and ``timestamp_utc`` (ISO 8601).
    """
    from jaxunlearn import numerics
    from jaxunlearn.machine import cpu_cores, machine_description

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in _PACKAGES},
    }
    try:
        import jax  # lazy: keeps this module importable without JAX

        devices = jax.devices()
        info["jax_backend"] = jax.default_backend()
        info["jax_device_kinds"] = sorted({d.device_kind for d in devices})
        info["jax_device_count"] = len(devices)
        info["jax_process_count"] = jax.process_count()
    except Exception as exc:  # noqa: BLE001 - JAX missing or no backend
        info["jax_backend"] = f"unavailable ({type(exc).__name__})"
        info["jax_device_kinds"] = []
        info["jax_device_count"] = 0
    info["git_commit"] = _git_commit()
    info["git_dirty"] = _git_dirty()
    machine = machine_description()
    info["cpu"] = machine["cpu"]["model_name"]
    info["cpu_cores"] = cpu_cores()
    info["numerics"] = numerics.current()
    info["machine"] = machine
    info["timestamp_utc"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    return info
