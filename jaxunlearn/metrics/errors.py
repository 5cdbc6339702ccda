"""Error and distribution metrics from host predictions, in the target's own units.

These run once per study on small arrays ([S, N] predictions), so they are plain NumPy /
SciPy: simple, exact, and the reference the compiled code is checked against.
"""

from __future__ import annotations

import math

import numpy as np


def masked_errors(pred: np.ndarray, y: np.ndarray, mask: np.ndarray, y_std: float) -> dict[str, np.ndarray]:
    """MAE and MSE over the rows selected by ``mask``, per seed, in target units.

    Args:
        pred: [S, N] standardised predictions; y: [N] standardised targets;
        mask: [N] bool rows to include; y_std: the target's standard deviation.

    Returns:
        {"mae": [S], "mse": [S]} (NaN when the mask selects no row).
    """
    pred, y, mask = np.asarray(pred, np.float64), np.asarray(y, np.float64).reshape(-1), np.asarray(mask, bool)
    if pred.ndim != 2 or pred.shape[1] != y.shape[0] or mask.shape != y.shape:
        raise ValueError(f"need pred [S, N], y [N], mask [N]; got {pred.shape}, {y.shape}, {mask.shape}")
    if not mask.any():
        nan = np.full(pred.shape[0], np.nan)
        return {"mae": nan, "mse": nan}
    err = (pred[:, mask] - y[mask]) * y_std
    return {"mae": np.abs(err).mean(axis=1), "mse": np.square(err).mean(axis=1)}


def wasserstein_to_reference(pred: np.ndarray, reference: np.ndarray, mask: np.ndarray, y_std: float) -> np.ndarray:
    """1-D Wasserstein-1 distance between two models' predictions on the masked rows, per seed.

    Args:
        pred, reference: [S, N] standardised predictions (seed i of each compared).
        mask: [N] bool rows (the paper: the training forget set); y_std: target std.

    Returns:
        [S] distances in target units (0 = identical prediction distributions).
    """
    pred, reference, mask = np.asarray(pred), np.asarray(reference), np.asarray(mask, bool)
    if pred.shape != reference.shape:
        raise ValueError(f"pred {pred.shape} and reference {reference.shape} differ in shape")
    return np.array([_wasserstein(p[mask], r[mask]) * y_std for p, r in zip(pred, reference, strict=True)])


def _wasserstein(u: np.ndarray, v: np.ndarray) -> float:
    """W1 between the empirical distributions of ``u`` [Nu] and ``v`` [Nv] (equal weights):
    the integral of |F_u - F_v| over the sorted union of both samples.

    The same integral as ``scipy.stats.wasserstein_distance``, with its last step, a dot
    product of [Nu + Nv - 1] terms, summed exactly (``math.fsum``) instead of by the BLAS:
    numpy's BLAS picks its kernel by the CPU, and each kernel sums in its own order, so the
    dot made the last digits of a study's W1 depend on the machine (2339.443458530345 on one
    AMD EPYC, 2339.4434585303457 on a newer one). Every other step is sorting, counting and
    one IEEE operation per element, which round alike on every machine.
    """
    u, v = np.sort(np.asarray(u, np.float64).ravel()), np.sort(np.asarray(v, np.float64).ravel())
    if u.size == 0 or v.size == 0:
        raise ValueError(f"W1 needs two non-empty samples, got {u.size} and {v.size} values")
    points = np.sort(np.concatenate([u, v]), kind="mergesort")
    widths = np.diff(points)  # [Nu + Nv - 1]
    u_cdf = np.searchsorted(u, points[:-1], side="right") / u.size
    v_cdf = np.searchsorted(v, points[:-1], side="right") / v.size
    return math.fsum((np.abs(u_cdf - v_cdf) * widths).tolist())
