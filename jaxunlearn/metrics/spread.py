"""Where two sets of models' per-example predictions differ: their spread or their location.

The NeurIPS'23 score (``jaxunlearn.metrics.epsilon``) says how well threshold attacks tell
an unlearner's N models from N retrained ones, example by example, but not why. Two causes
look alike in F and eps:

- the unlearned predictions sit elsewhere (a shift of the location), or
- they spread more or less widely than retraining's (a change of scale). A sample far
  narrower than the reference is close to a point mass: on the challenge's literal grid it
  could even earn full points (``jaxunlearn.metrics.epsilon.GRID_UNITS``).

This control separates the two, per forget example f, with the reference's standard
deviation as the unit:

    spread_ratio_f = std(unlearned[:, f]) / std(retrained[:, f])      1: retraining's spread
    mean_shift_f   = |mean(unlearned[:, f]) - mean(retrained[:, f])| / std(retrained[:, f])

and summarises each by its median over the forget examples (robust to the examples where
the reference barely varies). Two independent sets of retrained models give a spread ratio
near 1 and a shift of the order of sqrt(2 / N) (the noise floor row shows both for the N at
hand); the original model repeated N times gives a spread ratio of 0.

Standard deviations use ddof = 1. An example whose reference predictions do not vary at all
(std 0) gives inf, or NaN where the unlearned ones do not vary either; the medians skip NaN.
"""

from __future__ import annotations

import numpy as np


def _samples(x, name: str) -> np.ndarray:
    a = np.asarray(x, np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"{name} must be [N, F] with N >= 2 models, got shape {a.shape}")
    return a


def spread_and_shift(unlearned, retrained) -> tuple[np.ndarray, np.ndarray]:
    """Per-example spread ratio and mean shift (module docstring).

    Args:
        unlearned: [N_u, F] predictions, N_u >= 2; retrained: [N_r, F], N_r >= 2, the same F.

    Returns:
        (spread_ratio [F], mean_shift [F]), float64.

    Raises:
        ValueError: a side that is not [N, F] with N >= 2, or a different F.
    """
    u, r = _samples(unlearned, "unlearned"), _samples(retrained, "retrained")
    if u.shape[1] != r.shape[1]:
        raise ValueError(f"unlearned has {u.shape[1]} examples, retrained {r.shape[1]}")
    scale = r.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = u.std(axis=0, ddof=1) / scale
        shift = np.abs(u.mean(axis=0) - r.mean(axis=0)) / scale
    return spread, shift


def spread_summary(unlearned, retrained) -> dict[str, float]:
    """{"spread_ratio", "mean_shift"}: the medians over the forget examples of
    ``spread_and_shift`` (NaN skipped; NaN when no example is left)."""
    spread, shift = spread_and_shift(unlearned, retrained)
    out = {}
    for key, values in (("spread_ratio", spread), ("mean_shift", shift)):
        kept = values[~np.isnan(values)]
        out[key] = float(np.median(kept)) if kept.size else float("nan")
    return out
