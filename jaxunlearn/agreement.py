"""How closely a rerun study agrees with a committed one: the three levels of reproduction.

- ``bitwise``: every per-seed value identical (wall times excepted).
- ``rounding``: every model's predictions identical (equal ``prediction_digests``) and every
  per-seed metric equal to a relative ``RTOL`` (the host-side metrics may round differently).
- ``statistical``: every row's mean of every metric agrees with the committed one by Welch's
  two-sample t-test over the seeds (a difference of means inside its 95% confidence interval),
  with Holm's correction over the study's tests, and every claim's verdict is unchanged.

A study that reaches none of them is a real regression (or a broken install). Functions here
take and return plain ``results.json`` content; docs/reproduce.py runs the studies.

    >>> level = strongest_level(committed_json, rerun_json)       # doctest: +SKIP
    >>> level.level, level.detail                                 # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from jaxunlearn.claims import evaluate_claims, holm_rejections

__all__ = [
    "LEVELS",
    "RTOL",
    "TIMES",
    "Agreement",
    "first_seeds",
    "per_seed_differences",
    "rounding_differences",
    "statistical_agreement",
    "strongest_level",
]

LEVELS = ("bitwise", "rounding", "statistical")
# Per-seed entries that are wall times, not results.
TIMES = ("run_seconds", "time_vs_retrain")
# The rounding level's tolerance on metrics computed from identical predictions.
RTOL = 1e-9
ALPHA = 0.05


def _same(a: float | None, b: float | None, rtol: float = 0.0) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= rtol * max(abs(a), abs(b))


def per_seed_differences(
    expected: Mapping, got: Mapping, seeds: int | None = None, rtol: float = 0.0
) -> tuple[int, list[str]]:
    """(number of per-seed values compared, descriptions of those that differ) between two
    results.json ``per_seed`` tables, wall times excepted.

    Args:
        expected, got: {row: {metric: [S] (None for NaN)}}.
        seeds: compare the first ``seeds`` only (default: all).
        rtol: relative tolerance (0: bitwise).
    """
    compared, diffs = 0, []
    for row, metrics in expected.items():
        if row not in got:
            diffs.append(f"{row}: row missing")
            continue
        for name, values in metrics.items():
            if name in TIMES:
                continue
            want = values[:seeds] if seeds is not None else values
            have = got[row].get(name)
            have = have[:seeds] if have is not None and seeds is not None else have
            compared += len(want)
            if have is None or len(have) != len(want):
                diffs.append(f"{row}.{name}: {len(want)} values committed, {None if have is None else len(have)} now")
                continue
            for i, (a, b) in enumerate(zip(want, have, strict=True)):
                if not _same(a, b, rtol):
                    diffs.append(f"{row}.{name}[seed {i}]: {a!r} committed, {b!r} now")
    for row in got:
        if row not in expected:
            diffs.append(f"{row}: a row the committed study does not have")
    return compared, diffs


def rounding_differences(expected: Mapping, got: Mapping, seeds: int | None = None) -> list[str] | None:
    """What breaks the rounding level between two results.json contents (empty: it holds), or
    None when the committed study has no ``prediction_digests`` (an older run: unknowable)."""
    want, have = expected.get("prediction_digests"), got.get("prediction_digests") or {}
    if not want:
        return None
    diffs = []
    for row, digests in want.items():
        mine = have.get(row)
        for i, digest in enumerate(digests[:seeds] if seeds is not None else digests):
            if mine is None or i >= len(mine) or mine[i] != digest:
                diffs.append(f"{row}[seed {i}]: predictions differ")
    return diffs + per_seed_differences(expected["per_seed"], got["per_seed"], seeds, rtol=RTOL)[1]


@dataclasses.dataclass(frozen=True)
class MeanTest:
    """Welch's test of one row's metric: committed mean, rerun mean, p-value, seeds each."""

    row: str
    metric: str
    committed: float
    rerun: float
    p: float
    n: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class StatisticalCheck:
    """The statistical level: ``ok``; ``tests`` (every MeanTest); ``rejected`` (those Holm's
    correction rejects at 5%); ``claims_changed`` ("claim vs rival: a -> b" lines)."""

    ok: bool
    tests: tuple[MeanTest, ...]
    rejected: tuple[MeanTest, ...]
    claims_changed: tuple[str, ...]

    @property
    def worst(self) -> MeanTest | None:
        """The test with the smallest p-value (the metric that agrees least)."""
        finite = [t for t in self.tests if not math.isnan(t.p)]
        return min(finite, key=lambda t: t.p) if finite else None


def welch_p_value(a: Sequence[float | None], b: Sequence[float | None]) -> tuple[float, int, int]:
    """Two-sided p-value of Welch's t-test that the finite values of ``a`` and ``b`` have equal
    means, with their counts. Two constant samples: p = 1 if their values are equal (to
    ``RTOL``), else 0. NaN when either side has fewer than 2 values."""
    from scipy import stats

    x = np.array([v for v in a if v is not None], np.float64)
    y = np.array([v for v in b if v is not None], np.float64)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if x.size < 2 or y.size < 2:
        return math.nan, int(x.size), int(y.size)
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        return (1.0 if _same(float(x[0]), float(y[0]), RTOL) else 0.0), int(x.size), int(y.size)
    return float(stats.ttest_ind(x, y, equal_var=False).pvalue), int(x.size), int(y.size)


def statistical_agreement(
    expected: Mapping, got: Mapping, alpha: float = ALPHA, claims: bool = True
) -> StatisticalCheck:
    """The statistical level between two ``per_seed`` tables (all seeds of each): Welch's test
    per row and metric (wall times excepted), Holm's correction over all of them, and (with
    ``claims``) the claims' verdicts (``jaxunlearn.claims``) of both. Leave ``claims`` on for a
    whole study; a verdict drawn from two seeds is noise (one seed more or less moves it), so a
    check of a two-seed rerun compares the means only."""
    tests = []
    for row, metrics in expected.items():
        for name, values in metrics.items():
            if name in TIMES or row not in got or name not in got[row]:
                continue
            p, n_a, n_b = welch_p_value(values, got[row][name])
            finite_a = [v for v in values if v is not None and math.isfinite(v)]
            finite_b = [v for v in got[row][name] if v is not None and math.isfinite(v)]
            tests.append(
                MeanTest(
                    row,
                    name,
                    float(np.mean(finite_a)) if finite_a else math.nan,
                    float(np.mean(finite_b)) if finite_b else math.nan,
                    p,
                    (n_a, n_b),
                )
            )
    rejected = tuple(t for t, r in zip(tests, holm_rejections([t.p for t in tests], alpha), strict=True) if r)
    missing = [row for row in expected if row not in got]

    def as_arrays(per_seed: Mapping) -> dict[str, dict[str, np.ndarray]]:
        return {
            row: {k: np.array([np.nan if v is None else v for v in vals], np.float64) for k, vals in m.items()}
            for row, m in per_seed.items()
        }

    changed: tuple[str, ...] = ()
    if claims:
        before, after = evaluate_claims(as_arrays(expected)), evaluate_claims(as_arrays(got))
        pairs = zip(before, after, strict=False)  # a different number of claims is reported below
        changed = tuple(
            f"{a.claim} vs {a.versus}: {a.outcome} -> {b.outcome}" for a, b in pairs if a.outcome != b.outcome
        )
        if len(before) != len(after):
            changed += (f"{len(before)} claims committed, {len(after)} now",)
    ok = not rejected and not changed and not missing
    return StatisticalCheck(ok, tuple(tests), rejected, changed)


def first_seeds(results: Mapping[str, Any], seeds: int) -> dict[str, Any]:
    """A copy of results.json content with its per-seed values and prediction digests cut to
    the first ``seeds`` seeds (to compare a short rerun at every level, the statistical one
    included, knowing that a test over few seeds detects only large differences)."""
    out = dict(results)
    out["per_seed"] = {row: {k: list(v)[:seeds] for k, v in m.items()} for row, m in results["per_seed"].items()}
    if "prediction_digests" in results:
        out["prediction_digests"] = {row: list(d)[:seeds] for row, d in results["prediction_digests"].items()}
    return out


@dataclasses.dataclass(frozen=True)
class Agreement:
    """The strongest level that holds (``level``: one of LEVELS, or None when none does) and a
    one-line ``detail`` per level tried."""

    level: str | None
    detail: tuple[str, ...]
    statistical: StatisticalCheck | None = None


def strongest_level(
    expected: Mapping[str, Any],
    got: Mapping[str, Any],
    seeds: int | None = None,
    statistical: bool = True,
    claims: bool = True,
) -> Agreement:
    """Tries the levels from the strongest down.

    Args:
        expected, got: the committed and the rerun results.json contents.
        seeds: the first ``seeds`` seeds were rerun (bitwise and rounding compare those); the
            statistical level needs every seed and is only tried when ``seeds`` is None.
        statistical: also try the statistical level.
        claims: the statistical level also requires every claim's verdict unchanged
            (``statistical_agreement``).
    """
    detail = []
    compared, diffs = per_seed_differences(expected["per_seed"], got["per_seed"], seeds)
    if not diffs:
        return Agreement("bitwise", (f"bitwise: {compared} of {compared} per-seed values identical",))
    detail.append(f"bitwise: {compared - len(diffs)} of {compared} per-seed values identical; first: {diffs[0]}")
    rounding = rounding_differences(expected, got, seeds)
    if rounding is None:
        detail.append("rounding: the committed study has no prediction digests (made before they were recorded)")
    elif not rounding:
        return Agreement("rounding", (*detail, f"rounding: every prediction identical, every metric to rtol {RTOL:g}"))
    else:
        detail.append(f"rounding: {len(rounding)} differences; first: {rounding[0]}")
    if not statistical or seeds is not None:
        detail.append("statistical: not tried (needs every seed rerun)")
        return Agreement(None, tuple(detail))
    check = statistical_agreement(expected["per_seed"], got["per_seed"], claims=claims)
    worst = check.worst
    worst_text = (
        f"worst: {worst.row}.{worst.metric} {worst.committed:.6g} committed, {worst.rerun:.6g} now, p = {worst.p:.3g}"
        if worst
        else "no testable metric"
    )
    if check.ok:
        detail.append(
            f"statistical: {len(check.tests)} means agree (Welch, Holm at {ALPHA:g}), "
            f"{'claims unchanged' if claims else 'claims not compared'}; {worst_text}"
        )
        return Agreement("statistical", tuple(detail), check)
    why = [f"{t.row}.{t.metric} {t.committed:.6g} -> {t.rerun:.6g} (p = {t.p:.3g})" for t in check.rejected]
    detail.append(f"statistical: FAILS: {'; '.join(why + list(check.claims_changed)) or 'rows missing'}; {worst_text}")
    return Agreement(None, tuple(detail), check)
