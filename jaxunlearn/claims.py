"""The paper's claims about Blindspot, tested seed by seed on a study's per-seed metrics.

Each claim compares Blindspot with another model on the same seeds (a paired difference
per seed), so seed-to-seed variation shared by both models cancels. A claim *holds* when
the 95% Student-t confidence interval of the mean paired difference lies entirely on the
claimed side, *fails* when it lies entirely on the other side, and is *inconclusive*
when it contains 0. That is a two-sided paired t-test at 5% per comparison; with many
comparisons some come out significant by chance, so ``holm`` also gives each verdict after
Holm's step-down correction, which keeps the chance of any false "holds"/"fails" among a
family of comparisons (one claims table, say) at 5%.

    >>> verdicts = evaluate_claims(per_seed)      # per_seed[row][metric] -> [S]  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from jaxunlearn.report import at_noise

# How far Blindspot may raise the original's retain error and still "keep" it (relative).
RETAIN_TOLERANCE = 0.10


@dataclasses.dataclass(frozen=True)
class Verdict:
    """One claim against one competitor.

    Attributes:
        claim: what the paper says. versus: the model compared with.
        mean, ci95: mean paired margin (positive = the claim's direction) and the
            half-width of its 95% CI. n: seeds with finite values on both sides.
        outcome: "holds", "fails" or "inconclusive".
        p: two-sided p-value of the paired t-test (mean margin 0); NaN below 2 seeds.
    """

    claim: str
    versus: str
    mean: float
    ci95: float
    n: int
    outcome: str
    p: float = math.nan


def paired_interval(margin: np.ndarray) -> tuple[float, float, int]:
    """(mean, 95% Student-t half-width, n) of the finite entries of a per-seed difference [S]."""
    from scipy import stats

    finite = margin[np.isfinite(margin)]
    n = int(finite.size)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(finite[0]), math.inf, 1
    half = float(stats.t.ppf(0.975, n - 1) * np.std(finite, ddof=1) / math.sqrt(n))
    return float(np.mean(finite)), half, n


def paired_p_value(margin: np.ndarray) -> float:
    """Two-sided p-value of the paired t-test that the finite entries of ``margin`` [S]
    have mean 0 (NaN below 2 seeds; 0 when every entry is the same nonzero value)."""
    from scipy import stats

    finite = margin[np.isfinite(margin)]
    n = int(finite.size)
    if n < 2:
        return math.nan
    sd = float(np.std(finite, ddof=1))
    mean = float(np.mean(finite))
    if sd == 0.0:
        return 1.0 if mean == 0.0 else 0.0
    return float(2.0 * stats.t.sf(abs(mean) / (sd / math.sqrt(n)), n - 1))


def holm_rejections(p_values: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Which of ``p_values`` (one family) are significant after Holm's step-down correction:
    the k-th smallest of m is significant while p <= alpha / (m - k + 1) (k = 1, 2, ...).
    NaN p-values count in m and are never significant."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: (math.isnan(p_values[i]), p_values[i]))
    out = [False] * m
    for k, i in enumerate(order):
        if math.isnan(p_values[i]) or p_values[i] > alpha / (m - k):
            break
        out[i] = True
    return out


def holm(verdicts: Sequence[Verdict], alpha: float = 0.05) -> list[str]:
    """Each verdict's outcome after Holm's step-down correction over ``verdicts`` (one
    family, ``holm_rejections``): a significant margin holds or fails by its sign, the rest
    are inconclusive. Verdicts without a p-value count in m and are inconclusive."""
    significant = holm_rejections([v.p for v in verdicts], alpha)
    return [
        ("holds" if v.mean > 0 else "fails") if sig else "inconclusive"
        for v, sig in zip(verdicts, significant, strict=True)
    ]


def _outcome(mean: float, half: float) -> str:
    if not math.isfinite(mean):
        return "inconclusive"
    if mean - half > 0:
        return "holds"
    if mean + half < 0:
        return "fails"
    return "inconclusive"


def _distance_to_retrain(metric: str, target: float | None = None) -> Callable[[Mapping, str], np.ndarray]:
    """Per-seed |metric(row) - reference|: reference = retrain's value, or a constant."""

    def distance(per_seed, row):
        value = np.asarray(per_seed[row][metric], np.float64)
        ref = np.asarray(per_seed["retrain"][metric], np.float64) if target is None else target
        return np.abs(value - ref)

    return distance


# (claim, per-seed distance to minimise)
CLAIMS: Sequence[tuple[str, Callable[[Mapping, str], np.ndarray]]] = (
    (
        "forget-set predictions closest to retraining (lower W1)",
        lambda per_seed, row: np.asarray(per_seed[row]["wasserstein"], np.float64),
    ),
    ("forget error (test MAE) nearest the retrained model's", _distance_to_retrain("test_forget_mae")),
    ("membership-attack rate nearest the retrained model's", _distance_to_retrain("mia")),
    ("anamnesis index nearest 1", _distance_to_retrain("ain", target=1.0)),
)


def claims_subject() -> str:
    """The unlearner the paper's claims are about (registered with ``claims_subject``)."""
    from jaxunlearn import unlearn

    return next(u.name for u in unlearn.all_stages() if u.claims_subject)


def competitors(subject: str) -> list[str]:
    """Every registered unlearner but ``subject``, in the registry's order (the paper's
    baselines, the general-unlearning ones this library adds, then any user's)."""
    from jaxunlearn import unlearn

    return [name for name in unlearn.names() if name != subject]


def evaluate_claims(
    per_seed: Mapping[str, Mapping[str, npt.ArrayLike]],
    subject: str | None = None,
    rivals: Sequence[str] | None = None,
) -> list[Verdict]:
    """Tests every claim of ``CLAIMS`` for ``subject`` plus the retain-error claim.

    Args:
        per_seed: ``per_seed[row][metric]`` = [S] values (rows: original, retrain, ...).
        subject: the model the claims are about (default: ``claims_subject()``).
        rivals: the rows to compare with (e.g. a swept ``NAME[lr=0.0003]``); default:
            the ``competitors`` present.

    Returns:
        One Verdict per (claim, competitor) whose rows are present.
    """
    subject = subject or claims_subject()
    verdicts = []
    for claim, distance in CLAIMS:
        for rival in competitors(subject) if rivals is None else rivals:
            if rival in per_seed and subject in per_seed:
                margin = distance(per_seed, rival) - distance(per_seed, subject)
                mean, half, n = paired_interval(margin)
                verdicts.append(Verdict(claim, rival, mean, half, n, _outcome(mean, half), paired_p_value(margin)))
    if subject in per_seed and "original" in per_seed:
        ratio = np.asarray(per_seed[subject]["test_retain_mae"], np.float64) / np.asarray(
            per_seed["original"]["test_retain_mae"], np.float64
        )
        margin = 1.0 + RETAIN_TOLERANCE - ratio
        mean, half, n = paired_interval(margin)
        verdicts.append(
            Verdict(
                f"retain error (test MAE) within {RETAIN_TOLERANCE:.0%} of the original's",
                "original",
                mean,
                half,
                n,
                _outcome(mean, half),
                paired_p_value(margin),
            )
        )
    return verdicts


def claims_table(verdicts: Sequence[Verdict]) -> str:
    """Markdown table of verdicts: claim, compared with, margin (mean ± 95% CI), seeds,
    p-value, outcome, and the outcome after Holm's correction over the table's verdicts."""
    lines = [
        "| claim | compared with | margin (mean ± 95% CI) | seeds | p | verdict | "
        f"after Holm ({len(verdicts)} comparisons) |",
        "|---|---|---|---|---|---|---|",
    ]
    for v, corrected in zip(verdicts, holm(verdicts), strict=True):
        lines.append(
            f"| {v.claim} | {v.versus} | {at_noise(v.mean, v.ci95):.4g} ± {v.ci95:.3g} | {v.n} | {v.p:.2g} | "
            f"**{v.outcome}** | {corrected} |"
        )
    return "\n".join(lines)


def claims_absent(per_seed: Mapping[str, Mapping[str, npt.ArrayLike]], subject: str | None = None) -> str:
    """Why ``claims_report`` has no table for this study: one sentence naming what is missing."""
    subject = subject or claims_subject()
    swept = [r for r in per_seed if r.startswith(f"{subject}[")]
    rivals = competitors(subject)
    if swept:
        return (
            f"The paper's claims about {subject} are not checked: {subject} is swept ({len(swept)} rows); compare "
            f"one row with evaluate_claims(result.per_seed, subject={swept[0]!r}) in Python."
        )
    if subject not in per_seed:
        return (
            f"The paper's claims are about {subject}, which this study does not run: add it to --unlearners to "
            "check them."
        )
    return (
        f"The paper's claims about {subject} are not checked: they compare it with another unlearner "
        f"({', '.join(rivals)}), and this study runs none."
    )


def claims_report(per_seed: Mapping[str, Mapping[str, npt.ArrayLike]], subject: str | None = None) -> str | None:
    """The paper's claims about ``subject`` (default ``claims_subject()``) on a study's
    per-seed metrics as Markdown (a heading line and ``claims_table``), or None when the
    study has no ``subject`` row or no competitor of it (a sweep's rows are named
    ``NAME[...]``: compare those with ``evaluate_claims(per_seed, subject=row)``)."""
    subject = subject or claims_subject()
    verdicts = evaluate_claims(per_seed, subject=subject)
    if not any(v.versus != "original" for v in verdicts):
        return None
    return (
        f"The paper's claims about {subject}, seed by seed (margin > 0: {subject} is better by that much; "
        f"verdict from the paired 95% CI, and after Holm's correction over the table):\n\n" + claims_table(verdicts)
    )
