"""Per-example (epsilon, delta) forgetting score of the NeurIPS 2023 unlearning challenge, for regression.

Method (Triantafillou et al., the challenge's metric note and scoring code; our own code):
(eps, delta)-unlearning asks that models produced by the unlearner be hard to tell apart
from models retrained from scratch without the forget set. For each forget example we
have one scalar statistic per model, here the model's prediction in standardised target
units (a signed quantity: never |residual| or squared error, which fold the distribution):

    unlearned [N_u, F]   N_u unlearned models (all started from one original model)
    retrained [N_r, F]   N_r models retrained from scratch on the retain rows

For example f the two samples unlearned[:, f] and retrained[:, f] are attacked with two
families of threshold rules; every rule's empirical false-positive and false-negative
rates give an epsilon (``per_example_epsilons``), the largest one is the example's eps_f,
and eps_f earns points 2**-k in bin k of width 0.5 (``epsilon_points``). The forgetting
quality F is the mean of the points over the forget examples (``forgetting_quality``), and
the final score multiplies F by the utility ratios (``final_score``).

Speed: the counting is vectorised across examples and attack grid points (sorted samples,
binary-search counts, one table of epsilons per possible pair of error counts), so no
sample is compared with every grid point. ``per_example_epsilons`` on F=545 examples with
N_u = N_r = 256 models each took about 0.9 s on one CPU core (NumPy 2.4, a busy 2-core
machine; the same with 512 models a side), almost all of it the interval attack's
~161k (l, r) pairs per example. Memory: two tables of (N_u + 1)(N_r + 1) float64
(4 MiB at 512 models a side) plus chunks of at most ~4M cells.

Everything is NumPy float64 on the host.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "BIN_WIDTH",
    "BUFFER",
    "DELTA",
    "EPS_CAP",
    "GRID_PER_UNIT",
    "GRID_UNITS",
    "MAX_THRESHOLDS",
    "MIN_POINT_CUTOFF",
    "RANGE_GUARD",
    "eps_histogram",
    "epsilon_points",
    "few_models_warning",
    "final_score",
    "forgetting_quality",
    "grid_scale",
    "largest_finite_eps",
    "min_scoring_models",
    "per_example_epsilons",
    "point_cutoff",
]

DELTA = 1e-5
EPS_CAP = 50.0
GRID_PER_UNIT = 100
RANGE_GUARD = 0.01
BIN_WIDTH = 0.5
BUFFER = 2.0  # interval attack: how far (in units of the statistic) its ends move around the peakier sample
MAX_THRESHOLDS = 1 << 20  # threshold attack: most grid points per example (only samples ~10^4 units apart reach it)
GRID_UNITS = ("reference-std", "target")
"""What one unit of the attack grid is, per example (``grid_scale``): "reference-std", the
standard deviation of the retrained models' predictions on that example (the default of
``jaxunlearn.evaluation``); "target", one standardised target unit, the challenge's rule taken
literally. Why the first: the challenge's 100 grid points and +-2 buffer are in logit units,
where retrained models spread over about a unit; a good regression model's retrained
predictions spread over a few hundredths of a standardised target unit (0.06 on the
electricity task), so the literal grid has a handful of points inside retraining's spread,
and a sample narrower than one grid step (0.01) cannot be split by any attack: every rule
that errs on one side errs on none of the other, is discarded, and the example's eps is 0,
a full point (docs/EVALUATION.md gives the measurement). Per reference standard deviation,
the grid has 100 points per unit of spread on every example and dataset, and F no longer
depends on the target's units.
"""
MIN_POINT_CUTOFF = 5
"""The smallest point cut-off, ceil(ln(N - 1)), at which F is read without a warning
(``few_models_warning``); N >= 56 models a side (``min_scoring_models``).

Why: with N models a side the smallest nonzero error rate is 1/N, so an attack that errs
at all shows at most ``largest_finite_eps(N)`` = ln(N(1 - delta) - 1), just below the
cut-off; beyond it there is only a perfect separation (or the range guard), which the cap
(50) records. Two independent sets of retrained models already show each other an eps of
about 1.4-1.6 (the median over examples of identical normals at 12 to 512 models a side;
log 5 = 1.61 is 5 models against 1 in a tail), which earns 2^-2 to 2^-3 points. At a
cut-off of 5 or more, a forget example as far from retraining as N models can show short of
a perfect separation earns at most 2^-8, at least 32 times less than retraining's own
noise; at N = 16 (cut-off 3, largest finite eps 2.7) it earns 2^-5, only 4 times less, so
F cannot tell a row far from retraining from one that is not. The challenge used 512.
"""

_CHUNK_CELLS = 1 << 22  # most (example x attack) cells held in memory at once (~32 MiB per float64 array)


# ----------------------------------------------------------------------------------------------
# Per-example epsilons
# ----------------------------------------------------------------------------------------------
def per_example_epsilons(
    unlearned, retrained, delta: float = DELTA, grid_per_unit: float = GRID_PER_UNIT, scale=None
) -> np.ndarray:
    """The challenge's per-example epsilon for every forget example.

    Args:
        unlearned: [N_u, F] statistic (prediction, standardised units) of N_u unlearned models.
        retrained: [N_r, F] the same for N_r retrained models (N_r may differ from N_u).
        delta: the delta of (eps, delta)-unlearning, in [0, 1).
        grid_per_unit: attack grid points per unit of the statistic (> 0).
        scale: [F] positive finite units, one per example (``grid_scale``): both samples of
            example f are divided by scale[f] before the attacks, so the grid and the buffer
            are laid in units of scale[f]. None: 1 (the statistic's own units).

    Returns:
        eps: [F] float64 in [0, EPS_CAP].

    Per example f, with u = unlearned[:, f] and r = retrained[:, f]:

    - Positive side: the sample with the larger median; on equal medians the unlearned one
      (as in the challenge's code). The threshold attack depends on this choice, the
      interval attack only through the tie-break below.
    - Threshold attack: predict "positive" when value >= t, for t = np.linspace(lo, hi, n)
      with lo/hi the pooled minimum/maximum and n = max(ceil((hi - lo) * grid_per_unit), 2),
      at most MAX_THRESHOLDS, so both endpoints are always on the grid.
    - Interval attack: predict "peakier sample" (the one with the smaller range max - min;
      on equal ranges the negative side, as in the challenge's code) when l <= value <= r,
      both ends inclusive. With width = the smaller range, s = 1 / grid_per_unit and
      n = ceil(2 * BUFFER * grid_per_unit) (400 at the default):
          r_i  = (max_peaky - BUFFER) + i * s,          i = 0..n,
          l_ij = (min_peaky - 2 * BUFFER) + (i + j) * s,  j = 0..n,
      i.e. r runs over max_peaky -+ 2 and, for each r, l over r - width -+ 2 (exactly
      r_i - width - 2 + j * s in real arithmetic; the lattice form is how it is computed).
      The step is exactly 1 / grid_per_unit with both ends included (401 x 401 pairs),
      where the challenge's code uses np.linspace with 400 points (step 4/399); pairs with
      l > r are empty intervals and are discarded by the rule below.
    - Each attack gives FPR and FNR (one sample's error rate each; the formula is symmetric
      in the two). FPR = FNR = 0: eps = inf; exactly one of them 0: the attack is
      discarded; else eps = max(log(1 - delta - FPR) - log(FNR),
      log(1 - delta - FNR) - log(FPR)), clipped below at 0 (a log of a non-positive
      number counts as -inf, so FPR = FNR = 1 gives 0).
    - eps_f = the largest eps over both attack families, clipped to [0, EPS_CAP]. If every
      attack is discarded (possible only for tiny N), eps_f = 0: no rule found evidence.
    - Range guard: if smaller range / larger range < RANGE_GUARD, eps_f = EPS_CAP; this
      includes one sample constant and the other not (a point mass). If BOTH ranges are 0
      the ratio is undefined and the guard does not apply: the attacks then give 0 when
      the two constants are equal and inf -> EPS_CAP when they differ.

    The grid is in the statistic's own units (standardised target units for predictions)
    unless ``scale`` is given: a sample whose spread is only a few hundredths of a unit meets
    only a few grid points, so the attacks are coarse there, and one narrower than a grid
    step cannot be split at all (eps 0). ``scale=grid_scale(retrained, "reference-std")``
    lays the grid in units of retraining's spread on each example (``GRID_UNITS``).

    Raises:
        ValueError: arrays not 2-D, different F, fewer than 2 models on a side, no
            example, non-finite values, or delta / grid_per_unit out of range.
    """
    u, r = _validate(unlearned, "unlearned"), _validate(retrained, "retrained")
    if u.shape[1] != r.shape[1]:
        raise ValueError(f"unlearned has {u.shape[1]} examples but retrained has {r.shape[1]}")
    if scale is not None:
        scale = np.asarray(scale, np.float64)
        if scale.shape != (u.shape[1],) or not np.all(np.isfinite(scale) & (scale > 0)):
            raise ValueError(f"scale must hold {u.shape[1]} positive finite numbers, one per example")
        u, r = u / scale, r / scale
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    if not (math.isfinite(grid_per_unit) and grid_per_unit > 0):
        raise ValueError(f"grid_per_unit must be a positive number, got {grid_per_unit}")

    su, sr = np.sort(u.T, axis=1), np.sort(r.T, axis=1)  # [F, N_u], [F, N_r], each row ascending
    n_u, n_r = su.shape[1], sr.shape[1]
    retrained_positive = np.median(sr, axis=1) > np.median(su, axis=1)  # [F]
    range_u, range_r = su[:, -1] - su[:, 0], sr[:, -1] - sr[:, 0]  # [F]
    # The peakier sample: smaller range; ties go to the negative (smaller-median) side.
    peaky_is_u = np.where(retrained_positive, range_u <= range_r, range_u < range_r)  # [F]

    tables = _rule_tables(n_u, n_r, delta)
    eps = np.maximum(
        _threshold_attack(su, sr, ~retrained_positive, tables, grid_per_unit),
        _interval_attack(su, sr, peaky_is_u, tables, grid_per_unit),
    )
    eps = np.clip(eps, 0.0, EPS_CAP)

    small, large = np.minimum(range_u, range_r), np.maximum(range_u, range_r)
    with np.errstate(divide="ignore", invalid="ignore"):
        guarded = (large > 0) & (small / large < RANGE_GUARD)
    return np.where(guarded, EPS_CAP, eps)


def _validate(x, name: str) -> np.ndarray:
    """x as float64 [N, F], checked: 2-D, N >= 2, F >= 1, all finite."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n_models, n_examples], got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 models (rows), got {arr.shape[0]}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name} has no example (column)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains {int(np.count_nonzero(~np.isfinite(arr)))} NaN/inf value(s)")
    return arr


def _rule_tables(n_u: int, n_r: int, delta: float) -> np.ndarray:
    """Epsilon of every possible outcome of a rule "the models whose value falls in a region are sample p".

    Args:
        n_u, n_r: models per side; delta: as in ``per_example_epsilons``.

    Returns:
        [2, n_u + 1, n_r + 1] float64: entry [p, c_u, c_r] is the eps when c_u unlearned and
        c_r retrained models fall in the region and the rule names sample p there (p = 1:
        unlearned, p = 0: retrained). The named sample's models outside the region and the
        other sample's models inside it are the errors; their rates give the eps (the
        formula is symmetric, so which rate is the FPR does not matter): inf when both
        error counts are 0; 0 when exactly one is 0 (a discarded attack: every kept eps is
        >= 0, so 0 never changes a maximum); otherwise the formula clipped below at 0.
    """
    c_u = np.arange(n_u + 1)[:, None]  # [n_u + 1, 1]
    c_r = np.arange(n_r + 1)[None, :]  # [1, n_r + 1]
    names_retrained = _eps_from_errors(c_u, n_r - c_r, n_u, n_r, delta)
    names_unlearned = _eps_from_errors(n_u - c_u, c_r, n_u, n_r, delta)
    return np.stack([names_retrained, names_unlearned])


def _eps_from_errors(errors_u: np.ndarray, errors_r: np.ndarray, n_u: int, n_r: int, delta: float) -> np.ndarray:
    """Per-attack eps from error counts on each sample (broadcasting int arrays -> float64)."""
    rate_u, rate_r = np.broadcast_arrays(errors_u / n_u, errors_r / n_r)
    with np.errstate(divide="ignore", invalid="ignore"):
        keep_u = np.log(np.maximum(1.0 - delta - rate_u, 0.0))  # -inf where 1 - delta - rate <= 0
        keep_r = np.log(np.maximum(1.0 - delta - rate_r, 0.0))
        eps = np.maximum(np.maximum(keep_u - np.log(rate_r), keep_r - np.log(rate_u)), 0.0)
    eps = np.where((rate_u == 0) | (rate_r == 0), 0.0, eps)  # discarded
    return np.where((rate_u == 0) & (rate_r == 0), np.inf, eps)  # perfect separation


def _count_below(sorted_x: np.ndarray, q: np.ndarray, strict: bool) -> np.ndarray:
    """Per row, how many sorted values lie below each query (a batched searchsorted).

    Args:
        sorted_x: [E, N] rows sorted ascending.
        q: [E, Q] queries.
        strict: count x < q (True) or x <= q (False).

    Returns:
        [E, Q] int64 counts, by binary lifting: log2(N) gather-and-compare passes.
    """
    n = sorted_x.shape[1]
    count = np.zeros(q.shape, dtype=np.int64)
    step = 1 << (n.bit_length() - 1)  # largest power of two <= n
    while step:
        cand = count + step
        value = np.take_along_axis(sorted_x, np.minimum(cand, n) - 1, axis=1)
        ok = (cand <= n) & ((value < q) if strict else (value <= q))
        count = np.where(ok, cand, count)
        step >>= 1
    return count


def _chunks(n_items: int, cells_per_item: int):
    """Slices over n_items so that each slice holds at most ~_CHUNK_CELLS cells."""
    size = max(1, _CHUNK_CELLS // max(cells_per_item, 1))
    return (slice(start, min(start + size, n_items)) for start in range(0, n_items, size))


def _table_index_dtype(tables: np.ndarray):
    """The narrowest integer type that indexes the flattened tables (int32 up to ~32k models)."""
    return np.int32 if tables.size < 2**31 else np.int64


def _threshold_attack(su, sr, unlearned_positive, tables, grid_per_unit) -> np.ndarray:
    """Best single-threshold eps per example ([t, inf) names the positive sample).

    Args:
        su: [F, N_u], sr: [F, N_r] sorted samples; unlearned_positive: [F] bool.
        tables: [2, N_u + 1, N_r + 1] from ``_rule_tables``.

    Returns:
        [F] float64, each >= 0 (inf for a perfect separation).
    """
    n_u, n_r = su.shape[1], sr.shape[1]
    lo = np.minimum(su[:, 0], sr[:, 0])
    hi = np.maximum(su[:, -1], sr[:, -1])
    n_points = np.clip(np.ceil((hi - lo) * grid_per_unit), 2, MAX_THRESHOLDS).astype(np.int64)  # [F]
    flat_tables, itype = tables.reshape(-1), _table_index_dtype(tables)
    best = np.empty(su.shape[0])
    for part in _chunks(su.shape[0], int(n_points.max())):
        t = _linspace_rows(lo[part], hi[part], n_points[part])  # [E, T]
        at_or_above_u = n_u - _count_below(su[part], t, strict=True)
        at_or_above_r = n_r - _count_below(sr[part], t, strict=True)
        offset = unlearned_positive[part, None] * tables[0].size
        index = (at_or_above_u * (n_r + 1) + at_or_above_r + offset).astype(itype)
        best[part] = flat_tables.take(index).max(axis=1)
    return best


def _linspace_rows(start: np.ndarray, stop: np.ndarray, num: np.ndarray) -> np.ndarray:
    """Row e = np.linspace(start[e], stop[e], num[e]) (bit for bit), padded by repeating stop[e].

    Args:
        start, stop: [E] float64; num: [E] int >= 2.

    Returns:
        [E, max(num)] float64 (repeated thresholds change no maximum).
    """
    k = np.arange(int(num.max()), dtype=np.float64)[None, :]
    step = ((stop - start) / (num - 1))[:, None]
    grid = k * step + start[:, None]
    return np.where(k >= (num - 1)[:, None], stop[:, None], grid)


def _interval_attack(su, sr, peaky_is_u, tables, grid_per_unit) -> np.ndarray:
    """Best interval eps per example ([l, r] names the peakier sample).

    Args:
        su: [F, N_u], sr: [F, N_r] sorted samples; peaky_is_u: [F] bool.
        tables: [2, N_u + 1, N_r + 1] from ``_rule_tables``.

    Returns:
        [F] float64, each >= 0 (inf for a perfect separation).

    With le_X(r) = #{X <= r} and lt_X(l) = #{X < l}, the interval [l, r] holds
    c_X = le_X(r) - lt_X(l) models of sample X when l <= r; when l > r (an empty interval)
    that difference is <= 0 for both samples. So the table index c_u (N_r + 1) + c_r is
    exact and >= 0 for every non-empty interval and <= 0 for every empty one; clamping it
    at 0 maps an empty interval to c_u = c_r = 0, its true (discarded) outcome. Because
    l_ij depends on i + j only, lt_X is counted once on the 2n + 1 lattice points and the
    index is A[i] - B[i + j], built with a sliding window (no copy).
    """
    n_r = sr.shape[1]
    n = math.ceil(2 * BUFFER * grid_per_unit)
    steps = np.arange(2 * n + 1) / grid_per_unit  # [2n + 1]
    peaky_min = np.where(peaky_is_u, su[:, 0], sr[:, 0])
    peaky_max = np.where(peaky_is_u, su[:, -1], sr[:, -1])
    flat_tables, itype = tables.reshape(-1), _table_index_dtype(tables)
    best = np.empty(su.shape[0])
    for part in _chunks(su.shape[0], (n + 1) ** 2):
        rights = (peaky_max[part] - BUFFER)[:, None] + steps[None, : n + 1]  # [E, n + 1]
        lefts = (peaky_min[part] - 2 * BUFFER)[:, None] + steps[None, :]  # [E, 2n + 1]
        a = _count_below(su[part], rights, strict=False) * (n_r + 1) + _count_below(sr[part], rights, strict=False)
        b = _count_below(su[part], lefts, strict=True) * (n_r + 1) + _count_below(sr[part], lefts, strict=True)
        windows = sliding_window_view(b.astype(itype), n + 1, axis=1)  # [E, n+1, n+1]: [e, i, j] = b[e, i + j]
        index = a.astype(itype)[:, :, None] - windows
        np.maximum(index, 0, out=index)
        index += (peaky_is_u[part] * tables[0].size).astype(itype)[:, None, None]
        best[part] = flat_tables.take(index).reshape(index.shape[0], -1).max(axis=1)
    return best


# ----------------------------------------------------------------------------------------------
# Points, quality, score, histogram
# ----------------------------------------------------------------------------------------------
def _cutoff(n_models: int) -> float:
    """ceil(ln(n_models - 1)): eps at or beyond it earns no point (7 for 512 models)."""
    if int(n_models) != n_models or n_models < 2:
        raise ValueError(f"n_models must be an integer >= 2, got {n_models}")
    return float(math.ceil(math.log(n_models - 1)))


def point_cutoff(n_models: int) -> float:
    """The points' cut-off ceil(ln(n_models - 1)): eps at or beyond it earns no point
    (3 for 16 models a side, 5 for 64, 6 for 256, 7 for 512)."""
    return _cutoff(n_models)


def largest_finite_eps(n_models: int, delta: float = DELTA) -> float:
    """The largest eps an attack can give with ``n_models`` models a side short of a
    perfect separation: one error on each side, ln(n_models (1 - delta) - 1) (0 when that
    is negative). It is below ``point_cutoff(n_models)`` for n_models >= 3, so with equal
    sides the examples that earn no point are exactly those at the cap (``EPS_CAP``)."""
    if int(n_models) != n_models or n_models < 2:
        raise ValueError(f"n_models must be an integer >= 2, got {n_models}")
    return max(math.log(n_models * (1.0 - delta) - 1.0), 0.0)


def min_scoring_models() -> int:
    """The fewest models a side whose point cut-off is at least ``MIN_POINT_CUTOFF`` (56)."""
    n = 2
    while _cutoff(n) < MIN_POINT_CUTOFF:
        n += 1
    return n


def few_models_warning(n_models: int) -> str | None:
    """A warning when ``n_models`` models a side are too few for the points' cut-off to
    mean much (cut-off below ``MIN_POINT_CUTOFF``: see its docstring); None otherwise."""
    cutoff = _cutoff(n_models)
    if cutoff >= MIN_POINT_CUTOFF:
        return None
    largest = largest_finite_eps(n_models)
    return (
        f"{n_models} models per row are too few for the NeurIPS'23 points to mean much: the points stop at "
        f"eps = ceil(ln(N - 1)) = {cutoff:g}, and short of a perfect separation ('eps at cap') {n_models} models a "
        f"side cannot show an eps above ln(N - 1) = {largest:.2f}, {'little above' if largest > 1.6 else 'not above'} "
        "the 1.4-1.6 that two sets of retrained models show each other, so F cannot tell a row far from "
        f"retraining from retraining's own noise. Use at least {min_scoring_models()} models (a cut-off of "
        f"{MIN_POINT_CUTOFF} or more); the challenge used 512."
    )


def _as_eps(eps) -> np.ndarray:
    """eps as float64 (any shape), checked: no NaN, none negative (inf allowed)."""
    arr = np.asarray(eps, dtype=np.float64)
    if np.isnan(arr).any() or (arr < 0).any():
        raise ValueError("eps must be >= 0 (inf allowed) and not NaN")
    return arr


def epsilon_points(eps, n_models: int) -> np.ndarray:
    """Points earned by each epsilon.

    Args:
        eps: [...] epsilons (>= 0, inf allowed).
        n_models: models per side; the bins stop at ceil(ln(n_models - 1)) (7 for 512).

    Returns:
        [...] float64: 2**-k for eps in bin k = [k/2, (k+1)/2), 0 at or beyond the cut-off
        (inf included): 1 for eps < 0.5, 0.5 for [0.5, 1), ..., 2**-13 for [6.5, 7) at 512.
    """
    eps = _as_eps(eps)
    cutoff = _cutoff(n_models)
    below = eps < cutoff
    k = np.floor(np.where(below, eps, 0.0) / BIN_WIDTH)
    return np.where(below, np.exp2(-k), 0.0)


def grid_scale(retrained, unit: str) -> np.ndarray:
    """[F] the attack grid's unit per example (``GRID_UNITS``) for ``per_example_epsilons``.

    Args:
        retrained: [N_r, F] the reference sample; unit: "reference-std" (its standard
            deviation per example, ddof = 1; 1 where it does not vary) or "target" (1).
    """
    if unit not in GRID_UNITS:
        raise ValueError(f"unknown grid unit {unit!r}; choose from {GRID_UNITS}")
    r = _validate(retrained, "retrained")
    if unit == "target":
        return np.ones(r.shape[1])
    std = r.std(axis=0, ddof=1)
    return np.where(std > 0, std, 1.0)


def forgetting_quality(unlearned, retrained, **kw) -> tuple[float, np.ndarray]:
    """The challenge's forgetting quality F: mean points over the forget examples.

    Args:
        unlearned: [N_u, F]; retrained: [N_r, F] (see ``per_example_epsilons``).
        **kw: passed to ``per_example_epsilons`` (delta, grid_per_unit, scale).

    Returns:
        (F in [0, 1], eps [F]). The bins use n_models = min(N_u, N_r): the smaller side
        limits how large an eps the data can show.
    """
    eps = per_example_epsilons(unlearned, retrained, **kw)
    n_models = min(np.shape(unlearned)[0], np.shape(retrained)[0])
    return float(epsilon_points(eps, n_models).mean()), eps


def final_score(
    quality: float,
    retain_mae_unlearned: float,
    retain_mae_retrained: float,
    test_mae_unlearned: float,
    test_mae_retrained: float,
) -> float:
    """The challenge's final score with regression utility: F x (MAE_R/MAE_U)_retain x (MAE_R/MAE_U)_test.

    The challenge multiplies by accuracy ratios RA_U/RA_R and TA_U/TA_R; for errors the
    ratio turns over, so an unlearner with larger error than retraining scores lower. The
    ratios are not capped (an unlearner better than retraining can exceed F). MAEs are
    averages over the unlearned (U) and retrained (R) models.

    Args:
        quality: forgetting quality F in [0, 1].
        retain_mae_unlearned, retain_mae_retrained: MAE on the retain rows (U must be > 0).
        test_mae_unlearned, test_mae_retrained: MAE on the test rows (U must be > 0).

    Returns:
        The score (float).
    """
    if not (math.isfinite(quality) and 0.0 <= quality <= 1.0):
        raise ValueError(f"quality must be in [0, 1], got {quality}")
    for name, value in (("retain_mae_unlearned", retain_mae_unlearned), ("test_mae_unlearned", test_mae_unlearned)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value}")
    for name, value in (("retain_mae_retrained", retain_mae_retrained), ("test_mae_retrained", test_mae_retrained)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a non-negative finite number, got {value}")
    return float(quality * (retain_mae_retrained / retain_mae_unlearned) * (test_mae_retrained / test_mae_unlearned))


def eps_histogram(eps, n_models: int) -> dict:
    """Counts of epsilons per scoring bin, JSON-serialisable.

    Args:
        eps: [F] epsilons (>= 0, inf allowed).
        n_models: as in ``epsilon_points``.

    Returns:
        {"bin_width": 0.5, "cutoff": c, "edges": [0, 0.5, ..., c] (floats),
         "counts": [count per bin [k/2, (k+1)/2)] (ints), "at_or_beyond_cutoff": int
         (inf included), "points_per_bin": [1, 0.5, ...], "n_examples": int}.
    """
    eps = _as_eps(eps).reshape(-1)
    cutoff = _cutoff(n_models)
    n_bins = math.ceil(cutoff / BIN_WIDTH)
    below = eps < cutoff
    counts = np.bincount(np.floor(eps[below] / BIN_WIDTH).astype(np.int64), minlength=n_bins)
    return {
        "bin_width": float(BIN_WIDTH),
        "cutoff": cutoff,
        "edges": [float(k * BIN_WIDTH) for k in range(n_bins)] + [cutoff],
        "counts": [int(c) for c in counts],
        "at_or_beyond_cutoff": int(np.count_nonzero(~below)),
        "points_per_bin": [float(2.0**-k) for k in range(n_bins)],
        "n_examples": int(eps.size),
    }
