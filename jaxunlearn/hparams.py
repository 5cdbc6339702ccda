"""Per-stage float hyperparameters of a study: fixed overrides and sweeps.

A key names a stage and one of its float hyperparameters, e.g. ``"STAGE.lr"`` or
``"original.lr"`` (``jaxunlearn list`` prints them with their defaults; the registry,
``jaxunlearn.unlearn.registry``, holds each stage's names, defaults and bounds).
``StudyConfig.hp`` sets one value for every seed. ``StudyConfig.sweep`` lists several
values of an unlearner's keys; the study then runs every combination (the grid of that
unlearner's swept keys) on the same seeds, as rows such as ``STAGE[beta=10,lr=0.001]``.
The values of one unlearner run together (``PipelineRunner.run_values``): each value
occupies S seed slots of the hyperparameter arrays, so no value recompiles anything; a
phase that reads no swept value (``Phase.reads_hp``) runs once per seed for all of them;
and every row shares the seeds' keys, the original models and the retrained reference
(paired comparisons).

    >>> cfg = StudyConfig(unlearners=(name,), sweep={f"{name}.lr": (1e-4, 1e-3)})  # doctest: +SKIP
    >>> [v.row for v in stage_variants(cfg, name)]                                   # doctest: +SKIP
    ['NAME[lr=0.0001]', 'NAME[lr=0.001]']
"""

from __future__ import annotations

import dataclasses
import itertools
import math

from jaxunlearn import unlearn
from jaxunlearn.config import StudyConfig


@dataclasses.dataclass(frozen=True)
class Variant:
    """One row of a study: a stage run with one set of hyperparameters.

    Attributes:
        row: the row's name: the stage's name, or ``stage[name=value,...]`` for a swept row.
        stage: the registered stage it runs.
        hp: the float hyperparameters the row sets (fixed and swept); the others keep the
            pipeline's defaults. ``resolved_hp`` fills those in.
    """

    row: str
    stage: str
    hp: dict[str, float]

    def resolved_hp(self) -> dict[str, float]:
        """Every float hyperparameter of the stage: the registry's defaults, then ``hp``."""
        return {**unlearn.get(self.stage).hp, **self.hp}


def format_value(value: float) -> str:
    """A hyperparameter value as it appears in row names: ``0.001``, ``1e-05``, ``10``."""
    return f"{value:g}"


def split_key(key: str) -> tuple[str, str]:
    """``"STAGE.NAME"`` -> ("STAGE", "NAME").

    Raises:
        ValueError: not ``STAGE.NAME``, or no such stage or hyperparameter (the message
            lists what exists).
    """
    stage, dot, name = key.partition(".")
    if not dot or not stage or not name or "." in name:
        raise ValueError(
            f"hyperparameter key {key!r} must look like STAGE.NAME, e.g. 'original.lr'; known keys: {known_keys()}"
        )
    stages = unlearn.names(reference=True)
    if stage not in stages:
        raise ValueError(f"hyperparameter key {key!r}: unknown stage {stage!r}; stages: {sorted(stages)}")
    defaults = unlearn.get(stage).hp
    if name not in defaults:
        raise ValueError(
            f"hyperparameter key {key!r}: {stage} has no hyperparameter {name!r}; it has {sorted(defaults)}"
        )
    return stage, name


def known_keys() -> list[str]:
    return [f"{u.name}.{name}" for u in unlearn.all_stages() for name in u.hp]


def _check_value(field: str, key: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{field} {key}: values must be finite, got {value}")
    stage, _, name = key.partition(".")
    if name.endswith("lr") and value <= 0:
        raise ValueError(f"{field} {key}: a learning rate must be > 0, got {format_value(value)}")
    low, high = unlearn.get(stage).hp_bounds.get(name, (-math.inf, math.inf))
    if not low <= value <= high:
        raise ValueError(
            f"{field} {key}: must lie in [{format_value(low)}, {format_value(high)}], got {format_value(value)}"
        )


def check_hyperparameters(cfg: StudyConfig) -> None:
    """Rejects unknown keys, bad values and sweeps that cannot run, before anything compiles.

    Raises:
        ValueError: naming the key and what is accepted.
    """
    assert cfg.unlearners is not None  # resolved by __post_init__
    running = set(unlearn.reference_stages()) | set(cfg.unlearners)
    # (an --hp entry is one value, a --sweep entry several: checked alike)
    for field, entries in (("hp", tuple((key, (value,)) for key, value in cfg.hp)), ("sweep", cfg.sweep)):
        for key, values in entries:
            stage, _ = split_key(key)
            if stage not in running:
                raise ValueError(
                    f"{field} {key}: {stage} is not among the unlearners this study runs "
                    f"{list(cfg.unlearners)}; add it to --unlearners"
                )
            for value in values:
                _check_value(field, key, value)
    for key, values in cfg.sweep:
        stage, _ = split_key(key)
        if stage in unlearn.reference_stages():
            raise ValueError(
                f"sweep {key}: the {stage} model cannot be swept, since every row is measured "
                f"against one original and one retrained model; set it with --hp {key}=VALUE, "
                f"or run one study per value"
            )
        if len(set(values)) != len(values):
            raise ValueError(f"sweep {key}: values must differ, got {[format_value(v) for v in values]}")
    both = sorted(set(dict(cfg.hp)) & set(dict(cfg.sweep)))
    if both:
        raise ValueError(f"{both[0]} is given both a fixed value (hp) and swept values (sweep); keep one")
    swept_stages = {split_key(key)[0] for key, _ in cfg.sweep}
    for stage, points in cfg.trials:
        if stage not in cfg.unlearners:
            raise ValueError(
                f"trials {stage}: not among the unlearners this study runs {list(cfg.unlearners)} (the reference "
                f"stages cannot be tried: every row is measured against one original and one retrained model)"
            )
        if stage in swept_stages:
            raise ValueError(
                f"trials {stage}: {stage} is also swept; give its values as a sweep or as trials, not both"
            )
        for point in points:
            for name, value in point:
                key = f"{stage}.{name}"
                split_key(key)
                if key in dict(cfg.hp):
                    raise ValueError(f"trials {key}: also given a fixed value (hp); keep one")
                _check_value("trials", key, value)
        rows = [v.row for v in stage_variants(cfg, stage)]
        if len(set(rows)) != len(rows):
            raise ValueError(f"trials {stage}: points must differ (as printed to 6 digits), got rows {rows}")


def stage_variants(cfg: StudyConfig, stage: str) -> list[Variant]:
    """The rows ``stage`` contributes: one per point of its trials (``StudyConfig.trials``),
    else one without a sweep, else one per combination of its swept values (the first key
    varies slowest), in the order the values were given."""
    fixed = {split_key(k)[1]: v for k, v in cfg.hp if split_key(k)[0] == stage}
    swept = [(split_key(k)[1], values) for k, values in cfg.sweep if split_key(k)[0] == stage]
    points = dict(cfg.trials).get(stage)
    if points is not None:
        return [
            Variant(f"{stage}[{','.join(f'{n}={format_value(v)}' for n, v in p)}]", stage, dict(fixed, **dict(p)))
            for p in points
        ]
    if not swept:
        return [Variant(stage, stage, fixed)]
    names = [name for name, _ in swept]
    rows = []
    for combo in itertools.product(*(values for _, values in swept)):
        label = ",".join(f"{n}={format_value(v)}" for n, v in zip(names, combo, strict=True))
        rows.append(Variant(f"{stage}[{label}]", stage, dict(fixed, **dict(zip(names, combo, strict=True)))))
    return rows


def study_variants(cfg: StudyConfig) -> list[Variant]:
    """Every row of the study in table order: original, retrain, then the unlearners' rows
    (in the registry's order: the built-ins' table order, then users' in registration order)."""
    assert cfg.unlearners is not None  # resolved by __post_init__
    running = set(unlearn.reference_stages()) | set(cfg.unlearners)
    return [v for stage in unlearn.names(reference=True) if stage in running for v in stage_variants(cfg, stage)]
