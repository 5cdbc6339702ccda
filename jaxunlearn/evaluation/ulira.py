"""U-LiRA for regression: a per-example likelihood-ratio attack on unlearned models
(Hayes et al., SaTML 2025, after LiRA, Carlini et al., S&P 2022).

The candidate rows are the task's forget rows (C of them). ``groups`` G training sets are
drawn in complementary pairs: a random half of the candidates and the other half, so
every candidate is IN exactly G/2 sets and every set holds exactly C/2 candidates, plus
every retain row. In each group, ``models / G`` shadow models are trained on the group's
rows ("original") and then unlearn the group's candidates with the unlearner; for every
candidate a shadow is IN (trained on it, then unlearned it) or OUT (never saw it).

Per candidate, a Gaussian is fitted to the statistic (the prediction, standardised units)
over the IN shadows and one over the OUT shadows; a target model is scored by the log
likelihood ratio. Targets are held out by group: the models of group g are scored with
Gaussians fitted on the other G - 1 groups only, so no target (nor a model trained on
exactly its rows) is in its own fit. Reported: AUC and TPR at 1% and 0.1% FPR over all
(model, candidate) pairs, and each candidate's own AUC over the models (its exposure).

Controls: "retrain" (retraining on the retain rows: IN and OUT models are the same
distribution, so the attack must be at chance; its spread is the noise floor) and
"original" (no unlearning at all: the attack should be far from chance). A candidate is
called exposed when its AUC exceeds the largest per-candidate AUC the retrain control
reached.

Every group has the same row sets at the same positions (retain rows first, then the
group's C/2 candidates), given to each shadow as its training rows over the one task
(``Split.rows``): each stage trains all its shadows in one compiled call (chunked only
by memory) and compiles once.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np

from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task
from jaxunlearn.evaluation.blocks import BlockRunner
from jaxunlearn.evaluation.protocol import EvaluationConfig, EvaluationResult, register_protocol
from jaxunlearn.evaluation.table import Column, markdown_table
from jaxunlearn.metrics.lira import attack_summary, leave_group_out_scores

# Shadows' seeds start here in every stage's key stream, apart from the neurips23
# protocol's (0 .. 2N-1), so the two protocols never share a model.
FIRST_SEED = 1_000_000
# Below this many IN (and OUT) shadows per candidate, one variance pooled over candidates
# is fitted instead of one per candidate (LiRA's finding: per-example variances need many
# shadows).
PER_EXAMPLE_VARIANCE_MIN = 64
MASK_SEED_TAG = 2023
# The EvaluationConfig fields this protocol reads beyond ``protocol.SHARED_SETTINGS``.
SETTINGS = ("groups",)
ROW_COLUMN = Column(
    "row",
    "row",
    "the shadow models of one stage: `retrain` (shadows retrained on the retain rows: IN and OUT are one "
    "distribution, the control at chance), `original` (shadows that never unlearn: how much there is to "
    "forget), then each unlearner (shadows that trained on their group's rows, then unlearned its candidates).",
)
COLUMNS = [
    Column(
        "auc",
        "AUC",
        "the attack's area under the ROC curve over all (shadow, candidate) pairs, IN against OUT, each shadow "
        "scored by the log likelihood ratio of Gaussians fitted on the other groups' shadows; 0.5 is chance (the "
        "retrain control), nearer 0.5 is better.",
    ),
    Column(
        "tpr_at_1pct_fpr",
        "TPR @ 1% FPR",
        "the share of IN pairs the attack flags at the threshold that flags at most 1% of the OUT pairs; chance "
        "is 0.01, lower (down to chance) is better.",
    ),
    Column(
        "tpr_at_0.1pct_fpr",
        "TPR @ 0.1% FPR",
        "the same at most 0.1% of the OUT pairs; chance is 0.001.",
    ),
    Column(
        "example_auc_median",
        "median per-row AUC",
        "the median over candidates of each candidate's own AUC over the shadows (its exposure); nearer 0.5 is better.",
    ),
    Column(
        "exposed_rows",
        "exposed rows",
        "how many candidates have an own AUC above the largest any candidate reached under the retrain control "
        "(the notes give it; 0 for that control by construction); lower is better.",
    ),
    Column(
        "run_seconds",
        "time s",
        "seconds the row's shadows took after compiling, all together (an unlearner's: the unlearning only; "
        "the shadows it starts from are the `original` row's).",
    ),
]


def candidate_masks(candidates: int, groups: int, seed: int) -> np.ndarray:
    """[G, C] bool: group g's IN candidates. Groups 2p and 2p+1 split the candidates into
    a random half and the rest (C even), so each candidate is IN in exactly G/2 groups."""
    rng = np.random.default_rng([seed, MASK_SEED_TAG])
    masks = np.zeros((groups, candidates), bool)
    for pair in range(groups // 2):
        masks[2 * pair, rng.permutation(candidates)[: candidates // 2]] = True
        masks[2 * pair + 1] = ~masks[2 * pair]
    return masks


def shadow_rows(retain_rows: np.ndarray, candidates: np.ndarray, masks: np.ndarray, per_group: int) -> np.ndarray:
    """[G * per_group, R + C/2] int32: every shadow's training rows (``Split.rows``), the
    retain rows followed by its group's IN candidates; shadow i is in group i // per_group.
    Every group's set has the same sizes at the same positions, so one compiled program
    trains all shadows of a stage."""
    groups = np.stack([np.concatenate([retain_rows, candidates[m]]) for m in masks])
    return np.repeat(groups, per_group, axis=0).astype(np.int32)


def run_ulira(
    cfg: StudyConfig, ecfg: EvaluationConfig, blocks: BlockRunner, task: Task, log: Callable[[str], None] = print
) -> EvaluationResult:
    forget = np.asarray(task.train.forget) > 0.5
    candidates = np.flatnonzero(forget)
    retain_rows = np.flatnonzero(~forget)
    if candidates.size % 2:  # halves must be equal: the last candidate is trained on by every model
        retain_rows = np.sort(np.append(retain_rows, candidates[-1]))
        candidates = candidates[:-1]
    if candidates.size < 2:
        raise ValueError(f"U-LiRA needs at least 2 forget rows as candidates, the task has {candidates.size}")
    groups, per_group = ecfg.groups, ecfg.models // ecfg.groups
    masks = candidate_masks(candidates.size, groups, cfg.seed)
    assert cfg.unlearners is not None  # resolved by __post_init__
    stages = ["original", "retrain", *cfg.unlearners]
    # The candidates are the forget rows (an odd one out is a retain row); each shadow
    # trains on its own rows of this one task, so x and y are never copied per shadow.
    marked = np.zeros(task.train.size, np.float32)
    marked[candidates] = 1.0
    shared_task = task.replace(train=task.train.replace(forget=jax.device_put(marked)))
    training_rows = shadow_rows(retain_rows, candidates, masks, per_group)
    description = {
        "protocol": "ulira",
        "groups": groups,
        "in_rows": [[int(i) for i in candidates[m]] for m in masks],
    }
    stats, run_seconds = {}, {}
    original = None
    for stage in stages:
        result = blocks.run(
            f"shadows-{stage}",
            stage,
            shared_task,
            FIRST_SEED,
            ecfg.models,
            original=original if stage not in ("original", "retrain") else None,
            description=description,
            rows=training_rows,
        )
        if stage == "original":
            original = result
        stats[stage] = blocks.predictions(result, task)["train"][:, candidates]
        run_seconds[stage] = result.run
        log(f"U-LiRA: {stage} done ({ecfg.models} shadows)")

    is_in = np.repeat(masks, per_group, axis=0)
    group_of = np.repeat(np.arange(groups), per_group)
    per_side = (groups - 2) // 2 * per_group  # IN (or OUT) shadows fitted per candidate
    shared = per_side < PER_EXAMPLE_VARIANCE_MIN
    metrics, per_example = {}, {}
    summaries = {
        s: attack_summary(leave_group_out_scores(stats[s], is_in, group_of, shared_variance=shared), is_in)
        for s in stages
    }
    chance_max = float(np.nanmax(summaries["retrain"]["per_example_auc"]))
    for stage in stages:
        summary = summaries[stage]
        auc = np.asarray(summary["per_example_auc"], np.float64)
        exposed = np.flatnonzero(auc > chance_max)
        worst = exposed[np.argsort(-auc[exposed])][:10]
        metrics[stage] = {
            "auc": summary["auc"],
            "tpr_at_1pct_fpr": summary["tpr_at_1pct_fpr"],
            "tpr_at_0.1pct_fpr": summary["tpr_at_0.1pct_fpr"],
            "example_auc_median": float(np.nanmedian(auc)),
            "example_auc_max": float(np.nanmax(auc)),
            "exposed_rows": int(exposed.size),
            "exposed_fraction": float(exposed.size / auc.size),
            "run_seconds": run_seconds[stage],
            "most_exposed": [{"row": int(candidates[i]), "auc": float(auc[i])} for i in worst],
        }
        per_example[stage] = {"auc": [float(a) for a in auc]}
    rows = ["retrain", "original", *cfg.unlearners]
    notes = [
        f"{ecfg.models} shadow models per row in {groups} groups of {per_group}; {candidates.size} candidate rows "
        f"(the forget rows), each IN for {ecfg.models // 2} shadows; every shadow unlearns its group's "
        f"{candidates.size // 2} candidates.",
        f"Targets are held out by group: each candidate's IN and OUT Gaussians come from {per_side} shadows each "
        f"({'one variance pooled over candidates' if shared else 'per-candidate variances'}).",
        f"Exposed rows: per-row AUC above the largest the retrain control reached ({chance_max:.3f}).",
    ]
    return EvaluationResult(
        "ulira",
        rows,
        metrics,
        per_example,
        [int(i) for i in candidates],
        dict(blocks.timings),
        markdown_table(rows, metrics, COLUMNS, ROW_COLUMN.header),
        notes=notes,
        columns=[ROW_COLUMN, *COLUMNS],
    )


register_protocol("ulira", run_ulira, SETTINGS, [ROW_COLUMN, *COLUMNS])
