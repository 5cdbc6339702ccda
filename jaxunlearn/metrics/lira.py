"""Per-example likelihood-ratio membership statistics (LiRA, Carlini et al. 2022; U-LiRA, Hayes et al.).

LiRA trains M shadow models so that each example is IN (trained on) about half of them.
Per example it fits one Gaussian to the statistic over the IN models and one over the OUT
models, and scores a target model's statistic x by the log likelihood ratio

    score = log N(x; mu_in, sd_in) - log N(x; mu_out, sd_out)     (larger = more likely IN).

U-LiRA tests unlearning with the same machinery: the IN side is shadows that trained on
the example and then unlearned it, the OUT side is shadows that never saw it. A good
unlearner leaves the two indistinguishable per example: AUC near 0.5 and TPR at a low
FPR near that FPR. For regression the statistic is the prediction (or the signed
residual), near Gaussian already, so no logit transform is applied.

Shapes: stats [M, F] (M models, F examples), is_in [M, F] bool (True = IN / member),
Gaussian parameters [F] each. This module computes statistics only; training the shadow
models is done elsewhere. NumPy float64 on the host; ROC curves from scikit-learn.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "attack_summary",
    "fit_gaussians",
    "leave_group_out_scores",
    "likelihood_ratio_scores",
    "per_example_auc",
    "roc_auc",
    "tpr_at_fpr",
]


def _as_stats(stats, is_in) -> tuple[np.ndarray, np.ndarray]:
    """stats as float64 [M, F] (finite) and is_in as bool [M, F] of the same shape."""
    stats = np.asarray(stats, dtype=np.float64)
    if stats.ndim != 2:
        raise ValueError(f"stats must be 2-D [n_models, n_examples], got shape {stats.shape}")
    if not np.all(np.isfinite(stats)):
        raise ValueError(f"stats contains {int(np.count_nonzero(~np.isfinite(stats)))} NaN/inf value(s)")
    return stats, _as_labels(is_in, stats.shape, "is_in")


def _as_labels(labels, shape: tuple, name: str) -> np.ndarray:
    """labels as bool of the given shape; only booleans or 0/1 accepted."""
    arr = np.asarray(labels)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if arr.dtype != bool:
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"{name} must be boolean (or 0/1)")
        arr = arr.astype(bool)
    return arr


def fit_gaussians(stats, is_in, shared_variance: bool = False, min_std: float = 1e-6):
    """Per-example Gaussians of the statistic over the IN and the OUT models.

    Args:
        stats: [M, F] statistic of M shadow models on F examples.
        is_in: [M, F] bool, True where the model trained on (IN) the example.
        shared_variance: if True, one standard deviation per side shared by all examples:
            the within-example deviations (x - mu_example) pooled over every example and
            model of that side. LiRA recommends this below about 64 shadow models.
        min_std: floor on every standard deviation (a constant statistic would give 0).

    Returns:
        (mu_in, sd_in, mu_out, sd_out), each float64 [F]: means and maximum-likelihood
        standard deviations (np.std, ddof=0). An example with fewer than 2 IN or fewer than
        2 OUT models gets NaN in all four (and adds nothing to a shared variance).
    """
    stats, is_in = _as_stats(stats, is_in)
    if not min_std > 0:
        raise ValueError(f"min_std must be > 0, got {min_std}")
    valid = (is_in.sum(axis=0) >= 2) & ((~is_in).sum(axis=0) >= 2)  # [F]
    mu_in, sd_in = _fit_side(stats, is_in, valid, shared_variance, min_std)
    mu_out, sd_out = _fit_side(stats, ~is_in, valid, shared_variance, min_std)
    return mu_in, sd_in, mu_out, sd_out


def _fit_side(stats, member, valid, shared_variance, min_std):
    """Mean and sd [F] of stats over the rows where member is True (NaN where not valid)."""
    count = member.sum(axis=0)  # [F]
    safe = np.maximum(count, 1)
    mu = np.where(member, stats, 0.0).sum(axis=0) / safe
    squares = np.where(member, np.square(stats - mu), 0.0).sum(axis=0)  # [F]
    if shared_variance:
        var = np.full(stats.shape[1], squares[valid].sum() / max(int(count[valid].sum()), 1))
    else:
        var = squares / safe
    sd = np.maximum(np.sqrt(var), min_std)
    return np.where(valid, mu, np.nan), np.where(valid, sd, np.nan)


def likelihood_ratio_scores(x, mu_in, sd_in, mu_out, sd_out) -> np.ndarray:
    """Log likelihood ratio of IN versus OUT for each statistic.

    Args:
        x: [..., F] statistics of target models (e.g. [T, F] for T targets).
        mu_in, sd_in, mu_out, sd_out: [F] from ``fit_gaussians``.

    Returns:
        [..., F] float64: log N(x; mu_in, sd_in) - log N(x; mu_out, sd_out); larger = more
        likely IN. NaN where the example's Gaussians are NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    params = [np.asarray(p, dtype=np.float64) for p in (mu_in, sd_in, mu_out, sd_out)]
    for p in params:
        if p.ndim != 1 or x.ndim < 1 or p.shape[0] != x.shape[-1]:
            raise ValueError(f"need x [..., F] and Gaussian parameters [F]; got {x.shape} and {p.shape}")
    mu_in, sd_in, mu_out, sd_out = params
    z_in, z_out = (x - mu_in) / sd_in, (x - mu_out) / sd_out
    return np.log(sd_out) - np.log(sd_in) - 0.5 * np.square(z_in) + 0.5 * np.square(z_out)


def leave_group_out_scores(stats, is_in, groups, shared_variance: bool = False, min_std: float = 1e-6) -> np.ndarray:
    """Score every model with Gaussians fitted on the models of all other groups.

    Each model in turn is the target, and its own group (itself and, e.g., the models that
    share its data split) is left out of the fit, so no model is scored by Gaussians that
    saw it.

    Args:
        stats: [M, F]; is_in: [M, F] bool (as in ``fit_gaussians``).
        groups: [M] int group id per model (at least 2 distinct ids).
        shared_variance, min_std: as in ``fit_gaussians``.

    Returns:
        [M, F] float64 log likelihood ratios (NaN for an example whose other groups have
        fewer than 2 IN or 2 OUT models). One fit per group, vectorised over examples.
    """
    stats, is_in = _as_stats(stats, is_in)
    groups = np.asarray(groups)
    if groups.shape != (stats.shape[0],) or not np.issubdtype(groups.dtype, np.integer):
        raise ValueError(f"groups must be an int array of shape ({stats.shape[0]},), got {groups.dtype} {groups.shape}")
    ids = np.unique(groups)
    if ids.size < 2:
        raise ValueError("leave_group_out_scores needs at least 2 groups")
    scores = np.empty(stats.shape)
    for g in ids:
        held_out = groups == g
        params = fit_gaussians(stats[~held_out], is_in[~held_out], shared_variance, min_std)
        scores[held_out] = likelihood_ratio_scores(stats[held_out], *params)
    return scores


def _flat_valid(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """Flattened scores and labels without NaN scores; both classes must remain."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = _as_labels(labels, scores.shape, "labels")
    keep = ~np.isnan(scores)
    s, y = scores[keep].reshape(-1), labels[keep].reshape(-1)
    if not (y.any() and (~y).any()):
        raise ValueError("need at least one IN and one OUT label among the non-NaN scores")
    return s, y


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve of an attack, pooling all (model, example) pairs.

    Args:
        scores: [...] attack scores (larger = more likely IN); NaN entries are ignored.
        labels: [...] bool, True = IN, same shape.

    Returns:
        AUC in [0, 1] (0.5 = chance; ties count one half).
    """
    from sklearn.metrics import roc_auc_score

    s, y = _flat_valid(scores, labels)
    return float(roc_auc_score(y, s))


def tpr_at_fpr(scores, labels, fpr: float) -> float:
    """True-positive rate of the attack at a false-positive rate of at most ``fpr``.

    Args:
        scores, labels: as in ``roc_auc`` (pooled, NaN scores ignored).
        fpr: the allowed false-positive rate, in [0, 1].

    Returns:
        The largest TPR over the ROC curve's points (score thresholds, ties never split)
        whose FPR <= fpr; 0 when only the "call nothing IN" point qualifies.
    """
    from sklearn.metrics import roc_curve

    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    s, y = _flat_valid(scores, labels)
    fprs, tprs, _ = roc_curve(y, s, drop_intermediate=False)
    return float(tprs[fprs <= fpr].max())


def per_example_auc(scores, labels) -> np.ndarray:
    """AUC of the attack on each example separately (over the models).

    Args:
        scores: [M, F] attack scores (NaN entries ignored); labels: [M, F] bool, True = IN.

    Returns:
        [F] float64: the Mann-Whitney U statistic / (n_in n_out) with tied scores given
        average ranks (equal to sklearn's roc_auc_score); NaN for an example without both
        an IN and an OUT model among its non-NaN scores.
    """
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [n_models, n_examples], got shape {scores.shape}")
    labels = _as_labels(labels, scores.shape, "labels")
    valid = ~np.isnan(scores)
    n_in = (labels & valid).sum(axis=0)
    n_out = (~labels & valid).sum(axis=0)
    ranks = rankdata(scores, axis=0, nan_policy="omit")  # NaN scores keep a NaN rank
    rank_sum_in = np.where(labels & valid, ranks, 0.0).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum_in - n_in * (n_in + 1) / 2.0) / (n_in * n_out)
    return np.where((n_in > 0) & (n_out > 0), auc, np.nan)


def attack_summary(scores, labels) -> dict:
    """The attack's headline numbers, JSON-serialisable (NaN written as None).

    Args:
        scores: [M, F] attack scores; labels: [M, F] bool, True = IN.

    Returns:
        {"auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr": floats over all pairs,
         "per_example_auc": [F] list (None where undefined),
         "per_example_auc_mean": mean over defined examples (or None),
         "n_models", "n_examples", "n_in", "n_out", "n_nan_scores": ints}.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [n_models, n_examples], got shape {scores.shape}")
    labels = _as_labels(labels, scores.shape, "labels")
    valid = ~np.isnan(scores)
    per_example = per_example_auc(scores, labels)
    defined = per_example[~np.isnan(per_example)]
    return {
        "auc": roc_auc(scores, labels),
        "tpr_at_1pct_fpr": tpr_at_fpr(scores, labels, 0.01),
        "tpr_at_0.1pct_fpr": tpr_at_fpr(scores, labels, 0.001),
        "per_example_auc": [None if np.isnan(a) else float(a) for a in per_example],
        "per_example_auc_mean": float(defined.mean()) if defined.size else None,
        "n_models": int(scores.shape[0]),
        "n_examples": int(scores.shape[1]),
        "n_in": int((labels & valid).sum()),
        "n_out": int((~labels & valid).sum()),
        "n_nan_scores": int((~valid).sum()),
    }
