"""Equal-budget tuning: every unlearner gets the same number of trials, judged against retraining.

Each unlearner declares where its hyperparameters and epochs may lie (``Unlearner.search``,
``Range``). ``tune`` draws ``trials`` points from those ranges (log-uniform or uniform as
declared; values rounded to 3 significant digits), runs every point of one epochs setting
as rows of ONE study (``StudyConfig.trials``: the float values never recompile anything,
and all points share the seeds' keys, the original models and the retrained reference),
and scores each point by how close it comes to retraining:

    objective = sqrt(gap_retain^2 + gap_forget^2 + gap_val^2)

    gap_part = | mean over seeds of the point's MAE on ``part``
                 - mean over seeds of the retrained models' MAE on ``part`` |

in standardised target units (MAE / the training targets' std, so tasks are comparable),
on the TRAINING retain rows, the TRAINING forget rows and every VALIDATION row. Test rows
are never read. The gaps are absolute: for a label region the retrained model's forget
error is much larger than the original's, and a point that overshoots it is as far from
retraining as one that falls short. This is Deep Unlearn's objective (the norm of the gaps
to retraining) for regression, without its membership-attack term: the attack trains on
test rows, and the per-example tests of forgetting are in the final scores instead.

Epoch settings (``Range.integer``) are capped so unlearning costs at most a fifth of the
original's training (``epoch_cap``), and every distinct epochs value is its own study
(its own compiled programs); the original and retrained models are trained once and
reused by every group through the checkpoint folder.

Selection never leaks into a report: tuning runs its own seeds (root seed
``cfg.seed + TUNING_SEED_OFFSET``) and, for a random scenario, its own forget draw
(``TUNING_DRAW``); ``jaxunlearn.leaderboard`` scores the chosen values on fresh ones.

>>> result = tune(StudyConfig(unlearners=(NAME,), seeds=4), trials=16)       # doctest: +SKIP
>>> result.chosen[NAME].hp                                                     # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jaxunlearn import unlearn
from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task
from jaxunlearn.unlearn.registry import Range

COST_CAP = 0.2  # unlearning epochs at most this fraction of the original's training epochs
TUNING_SEED_OFFSET = 100_000  # tuning's root seed: the study's plus this (fresh seeds for scores)
TUNING_DRAW = 1  # the random scenarios' forget draw for tuning (scores use draw 0)
GAP_PARTS = ("retain", "forget", "val")  # what the objective's gaps are measured on
MAX_DRAWS = 1000  # attempts per trial to draw a point unlike the others


@dataclasses.dataclass(frozen=True)
class Trial:
    """One drawn point: float hyperparameters and integer settings of one unlearner."""

    hp: dict[str, float]
    settings: dict[str, int]

    def key(self) -> tuple:
        return tuple(sorted(self.hp.items())), tuple(sorted(self.settings.items()))


@dataclasses.dataclass
class TrialResult:
    """How one trial did.

    Attributes:
        stage: the unlearner; row: its row in the tuning study; hp, settings: the point.
        objective: the norm of ``gaps`` (inf when every seed diverged).
        gaps: {"retain"|"forget"|"val": |mean MAE - retrain's mean MAE|} standardised.
        cost: the trial's run seconds over the retrained models' (compile apart).
        diverged: seeds whose training hit NaN/inf (excluded from the means).
    """

    stage: str
    row: str
    hp: dict[str, float]
    settings: dict[str, int]
    objective: float
    gaps: dict[str, float]
    cost: float
    diverged: int = 0


@dataclasses.dataclass
class TuningResult:
    """Every trial of every unlearner, the chosen point of each, and each one's front.

    Attributes:
        config: the tuning study's settings (its seeds and forget rule), as a dict.
        trials: {unlearner: [TrialResult]} in the order drawn.
        chosen: {unlearner: the trial with the lowest objective}.
        defaults_only: unlearners that declare no search space (scored at their defaults).
        reference: {"original": objective of the untouched original}: doing nothing, for scale.
        compile_seconds, wall_seconds: of the whole tuning.
    """

    config: dict[str, Any]
    trials: dict[str, list[TrialResult]]
    chosen: dict[str, TrialResult]
    defaults_only: list[str]
    reference: dict[str, float]
    compile_seconds: float = 0.0
    wall_seconds: float = 0.0

    def front(self, stage: str) -> list[TrialResult]:
        """``stage``'s trials that no other trial beats on both cost and objective, by cost."""
        return pareto_front(self.trials.get(stage, []))

    def tuned_values(self) -> dict[str, Any]:
        """{"hp": {"STAGE.NAME": value}, "settings": {STAGE: {field: value}}} of the chosen points."""
        hp = {f"{s}.{k}": v for s, t in self.chosen.items() for k, v in t.hp.items()}
        settings = {s: dict(t.settings) for s, t in self.chosen.items() if t.settings}
        return {"hp": hp, "settings": settings}

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "trials": {s: [dataclasses.asdict(t) for t in ts] for s, ts in self.trials.items()},
            "chosen": {s: dataclasses.asdict(t) for s, t in self.chosen.items()},
            "fronts": {s: [t.row for t in self.front(s)] for s in self.trials},
            "defaults_only": self.defaults_only,
            "reference": self.reference,
            "compile_seconds": self.compile_seconds,
            "wall_seconds": self.wall_seconds,
        }


def epoch_cap(train_epochs: int) -> int:
    """The largest unlearning epochs a trial may draw: ceil(COST_CAP x training epochs), >= 1."""
    return max(1, math.ceil(COST_CAP * train_epochs - 1e-9))


def _round(value: float) -> float:
    return float(f"{value:.3g}")


def _draw(rng: np.random.Generator, rng_spec: Range, cap: int) -> float | int:
    high = float(cap if rng_spec.high is None else rng_spec.high)
    if rng_spec.integer:
        low, high = int(rng_spec.low), int(min(high, cap))
        if high <= low:
            return low
        if rng_spec.log:  # integers log-uniform: each of [low, high] with weight log((k+1)/k)
            return min(high, int(np.floor(np.exp(rng.uniform(np.log(low), np.log(high + 1))))))
        return int(rng.integers(low, high + 1))
    if rng_spec.log:
        return _round(float(np.exp(rng.uniform(np.log(rng_spec.low), np.log(high)))))
    return _round(float(rng.uniform(rng_spec.low, high)))


def draw_trials(stage: str, trials: int, train_epochs: int, seed: int = 0) -> list[Trial]:
    """``trials`` distinct points from ``stage``'s search space (``Unlearner.search``).

    The draws depend on (seed, stage) only, so adding an unlearner changes no other's.
    An unlearner without a search space gets one trial: its defaults. When the space holds
    fewer distinct points than ``trials`` (only small integer ranges), it gets them all.

    Raises:
        ValueError: ``trials`` < 1.
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"the trial budget must be a positive integer, got {trials!r}")
    unlearner = unlearn.get(stage)
    if not unlearner.search:
        return [Trial({}, {})]
    cap = epoch_cap(train_epochs)
    rng = np.random.default_rng([seed, zlib.crc32(stage.encode())])
    out: dict[tuple, Trial] = {}
    for _ in range(trials * MAX_DRAWS):
        if len(out) == trials:
            break
        point = {name: _draw(rng, spec, cap) for name, spec in unlearner.search.items()}
        trial = Trial(
            {k: float(v) for k, v in point.items() if k in unlearner.hp},
            {k: int(v) for k, v in point.items() if k not in unlearner.hp},
        )
        out.setdefault(trial.key(), trial)
    return list(out.values())


def mae_parts(preds: dict[str, np.ndarray], task: Task) -> dict[str, np.ndarray]:
    """Per-seed MAE [S] (standardised units) on the training retain and forget rows and
    every validation row; ``preds``: {"train"|"val": [S, N]} standardised."""
    out = {}
    train_y = np.asarray(task.train.y, np.float64)[:, 0]
    forget = np.asarray(task.train.forget) > 0.5
    err = np.abs(preds["train"] - train_y[None, :])
    out["retain"] = err[:, ~forget].mean(axis=1)
    out["forget"] = err[:, forget].mean(axis=1)
    val_y = np.asarray(task.val.y, np.float64)[:, 0]
    out["val"] = np.abs(preds["val"] - val_y[None, :]).mean(axis=1)
    return out


def objective(parts: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> tuple[float, dict[str, float]]:
    """(norm of the gaps, the gaps): see the module docstring; NaN seeds are left out."""
    gaps = {}
    for part in GAP_PARTS:
        ours, theirs = parts[part][np.isfinite(parts[part])], reference[part][np.isfinite(reference[part])]
        gaps[part] = float(abs(ours.mean() - theirs.mean())) if ours.size and theirs.size else math.inf
    return float(math.sqrt(sum(g * g for g in gaps.values()))), gaps


def pareto_front(trials: list[TrialResult]) -> list[TrialResult]:
    """The trials no other trial beats on both cost and objective (ties kept), by cost."""
    front = [
        t
        for t in trials
        if not any(
            (o.cost <= t.cost and o.objective < t.objective) or (o.cost < t.cost and o.objective <= t.objective)
            for o in trials
        )
    ]
    return sorted(front, key=lambda t: (t.cost, t.objective))


def tuning_config(cfg: StudyConfig, seeds: int | None = None, forget: str | None = None) -> StudyConfig:
    """The study that tuning runs for ``cfg``: its own root seed (``TUNING_SEED_OFFSET``),
    ``seeds`` seeds (default cfg's) and ``forget`` (default cfg's rule), no sweeps."""
    return dataclasses.replace(
        cfg,
        seed=cfg.seed + TUNING_SEED_OFFSET,
        seeds=cfg.seeds if seeds is None else seeds,
        forget=cfg.forget if forget is None else forget,
        sweep=(),
        trials=(),
    )


def tune(
    cfg: StudyConfig,
    trials: int = 64,
    task: Task | None = None,
    model: Any = None,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    draw_seed: int = 0,
) -> TuningResult:
    """Tunes each of ``cfg.unlearners`` with the same budget of ``trials`` points.

    Args:
        cfg: the TUNING study (its seeds and forget rule: ``tuning_config`` makes one from
            a study's settings); its ``hp`` and ``settings`` fix what is not searched.
        trials: points per unlearner (the budget; equal for all).
        task, model: a prepared task and a user's model, as ``run_study`` takes them.
        checkpoint_dir: where the original and retrained models are kept between the
            groups (and for later tunings; the trials' models are never saved); None: a
            temporary folder.
        draw_seed: seeds the points' draws.

    Returns:
        A ``TuningResult``; ``tuned_values()`` is what ``run --tuned`` applies.

    Raises:
        ValueError: a budget below 1 or a bad configuration, before anything compiles.
    """
    from jaxunlearn.study import predict_rows, train_study, validate_config
    from jaxunlearn.timing import Stopwatch

    assert cfg.unlearners is not None  # resolved by __post_init__
    validate_config(cfg, own_model=model is not None)
    drawn = {stage: draw_trials(stage, trials, cfg.train_epochs, draw_seed) for stage in cfg.unlearners}
    with tempfile.TemporaryDirectory(prefix="jaxunlearn-tune-") as scratch, Stopwatch() as total:
        folder = Path(scratch if checkpoint_dir is None else checkpoint_dir)
        results: dict[str, list[TrialResult]] = {}
        reference: dict[str, float] = {}
        compile_s = 0.0
        for stage, points in drawn.items():
            groups: dict[tuple, list[Trial]] = {}
            for point in points:
                groups.setdefault(tuple(sorted(point.settings.items())), []).append(point)
            log(f"tuning {stage}: {len(points)} trial(s) in {len(groups)} run(s) (one per epochs setting)")
            by_key: dict[tuple, TrialResult] = {}
            for settings_key, group in groups.items():
                settings = {s: dict(f) for s, f in cfg.settings}
                settings.setdefault(stage, {}).update(dict(settings_key))
                with_hp = [p for p in group if p.hp]
                group_cfg = cfg.replace(
                    unlearners=(stage,),
                    settings=settings,
                    trials=((stage, [p.hp for p in with_hp]),) if with_hp else (),
                )
                trained = train_study(group_cfg, progress, log, task, folder, False, model, save_unlearned=False)
                compile_s += sum(s.compile for r, s in trained.stages.items() if r not in trained.loaded)
                preds = predict_rows(trained.stages, trained.task, trained.metric_model, trained.plan, ("train", "val"))
                retrain_parts = mae_parts(preds["retrain"], trained.task)
                reference["original"] = objective(mae_parts(preds["original"], trained.task), retrain_parts)[0]
                retrain_run = max(trained.stages["retrain"].run, 1e-9)
                unlearner_rows = [r for r in trained.stages if r not in unlearn.reference_stages()]
                for point, row in zip(group if with_hp else group[:1], unlearner_rows, strict=True):
                    stage_result = trained.stages[row]
                    diverged = len(stage_result.divergence(row))
                    parts = mae_parts(preds[row], trained.task)
                    for event in stage_result.divergence(row):
                        for part in parts.values():
                            part[event["seed"]] = np.nan
                    score, gaps = objective(parts, retrain_parts)
                    by_key[point.key()] = TrialResult(
                        stage, row, point.hp, point.settings, score, gaps, stage_result.run / retrain_run, diverged
                    )
            results[stage] = [by_key[p.key()] for p in points]
    chosen = {s: min(ts, key=lambda t: (t.objective, t.cost)) for s, ts in results.items()}
    for stage, best in chosen.items():
        log(f"tuning {stage}: chosen {best.row} (objective {best.objective:.4g}; cost {best.cost:.3g} x retraining)")
    return TuningResult(
        config=cfg.to_dict(),
        trials=results,
        chosen=chosen,
        defaults_only=[s for s in cfg.unlearners if not unlearn.get(s).search],
        reference=reference,
        compile_seconds=compile_s,
        wall_seconds=total.wall,
    )


# ---------------------------------------------------------------- tuned-values files
TUNED_FOR = ("dataset", "dataset_kwargs", "model", "model_kwargs", "loss", "train_epochs", "batch_size")


def tuned_for(cfg: StudyConfig, scenario: str | None) -> dict[str, Any]:
    """What a tuned-values file was tuned for: the task's settings and the scenario."""
    data = cfg.to_dict()
    return {**{k: data[k] for k in TUNED_FOR}, "scenario": scenario}


def write_tuned(path: str | os.PathLike, result: TuningResult, cfg: StudyConfig, scenario: str | None) -> Path:
    """Writes the chosen values as a JSON file that ``run``/``evaluate --tuned`` accept."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"tuned_for": tuned_for(cfg, scenario), **result.tuned_values(), "defaults_only": result.defaults_only}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def apply_tuned(cfg: StudyConfig, path: str | os.PathLike, scenario: str | None = None) -> StudyConfig:
    """``cfg`` with the tuned values of ``path`` (``write_tuned``) for its unlearners.

    Raises:
        ValueError: the file is unreadable, or was tuned for another task or scenario
            (the message names what differs); values given in ``cfg`` itself win.
    """
    try:
        data = json.loads(Path(path).expanduser().read_text())
        made_for = data["tuned_for"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"--tuned {path}: not a tuned-values file ({err})") from err
    here = json.loads(json.dumps(tuned_for(cfg, scenario), default=str))
    differ = [k for k in TUNED_FOR if made_for.get(k) != here[k]]
    if scenario is not None and made_for.get("scenario") != scenario:
        differ.append("scenario")
    if differ:
        detail = "; ".join(f"{k}: {made_for.get(k)!r} there, {here.get(k)!r} here" for k in differ)
        raise ValueError(f"--tuned {path}: tuned for another task ({detail})")
    assert cfg.unlearners is not None  # resolved by __post_init__
    hp = {k: v for k, v in data.get("hp", {}).items() if k.partition(".")[0] in cfg.unlearners}
    hp.update(dict(cfg.hp))
    settings = {s: dict(f) for s, f in data.get("settings", {}).items() if s in cfg.unlearners}
    for stage, fields in cfg.settings:
        settings.setdefault(stage, {}).update(dict(fields))
    swept = {key for key, _ in cfg.sweep}
    hp = {k: v for k, v in hp.items() if k not in swept}
    return cfg.replace(hp=hp, settings=settings)
