"""The settings of a study, with the paper's values as defaults where they apply."""

from __future__ import annotations

import dataclasses
from typing import Any

from jaxunlearn.seeds import SEED_STRATEGIES


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Static settings of an unlearning study (changing one recompiles).

    Float hyperparameters (learning rates, beta, ...) are set per stage by ``hp`` and
    ``sweep``; their values never recompile anything (``jaxunlearn.hparams``).

    Attributes:
        dataset: a name from ``jaxunlearn.data.DATASETS``; dataset_kwargs: its loader's
            arguments as (name, value) pairs (e.g. ``(("data_dir", "~/agedb"),)``).
        stand_in: a dataset to run instead when ``dataset``'s files are missing
            (``MissingDataError``), e.g. an offline stand-in for the paper's data; the
            output says so. None: missing files are an error.
        forget: a forget-rule string (None = the dataset's default).
        model: a name from ``jaxunlearn.models.MODELS``; model_kwargs: its fields.
        loss: "l1", "mse" or "quantile" (the paper: L1 for AgeDB, MSE for STS-B).
        seeds: number of independent seeds S; seed: the root seed.
        batch_size: rows per step (paper: 256).
        train_epochs: epochs for the original and retrained models (paper: 100).
        augment_pad: image augmentation padding (0 = off; paper: 16 for 32x32 images).
        unlearners: which registered unlearners to run (retraining always runs); None: the
            registry's default ones (the paper's three).
        settings: each unlearner's static settings (its settings dataclass's fields: epochs,
            batch sizes, ...) that differ from their defaults, e.g.
            ``{"NAME": {"epochs": 2}}`` or ``{"NAME.epochs": 2}``; stored as sorted
            (unlearner, ((field, value), ...)) pairs. ``settings_of``/``resolved_settings``
            read them back.
        hp: float hyperparameters by ``"STAGE.NAME"`` (e.g. ``{"original.lr": 0.003}``),
            the same for every seed; the rest keep their defaults (the paper's values).
        sweep: several values per ``"STAGE.NAME"`` of an unlearner (e.g.
            ``{"NAME.lr": (1e-4, 1e-3)}``): every combination of a stage's swept
            values becomes a row, all run together on the same seeds.
            Given as a dict or as (key, value) pairs; stored as sorted pairs of floats.
        trials: explicit points instead of a grid, per unlearner: ``{"NAME": [{"lr": 1e-4,
            "beta": 3.0}, {"lr": 2e-3, "beta": 40.0}]}``; each point is a row run together
            with the others on the same seeds, like a sweep's (equal-budget tuning draws
            them: ``jaxunlearn.tuning``). Stored as (unlearner, (((name, value), ...), ...)).
        relearn_lr, relearn_max_epochs, relearn_alpha: the anamnesis index (AIN) settings.
        mia_samples: samples per class for the membership-inference attack (paper: 2000).
        mia_models: attack only the first this many seeds' models of each row (the
            attack costs 0.05 s of CPU per model on the default study's data, 0.4 s at
            the paper's size, spread over the host's cores; at hundreds of seeds on a
            GPU it can outlast the training: benchmarks/RESULTS.md): their mean is the
            table's "MIA forget", whose header then says "k of S models". None: every
            seed's model.
        mia_units: the attack's loss features: "standardised" (default; scale-free) or
            "raw" (the target's own units, exactly as the reference computes them, for
            comparing with the paper's numbers; ``jaxunlearn.metrics.suite.svc_attack``).
        seed_strategy: "auto", "vmap", "map" or "host".
        epochs_per_call: epochs per compiled call: a positive integer, "all" (a phase's every
            epoch in one call), or None (the plan's choice: one per call for conv nets on
            XLA:CPU, else all). ``LoopPlan.epochs_per_call`` spells "all" as None.
        devices: how many devices the seeds are split across (None = all of the backend's
            devices; under ``jax.distributed``, every process's). See ``jaxunlearn.seeds``.
        dtype: compute dtype of training and unlearning, "float32" or "bfloat16"
            (parameters, optimizer state and losses stay float32). Metrics, including the
            AIN's relearning, always run the models in float32.
    """

    dataset: str = "taylor"
    dataset_kwargs: tuple[tuple[str, Any], ...] = ()
    stand_in: str | None = None
    forget: str | None = None
    model: str = "mlp"
    model_kwargs: tuple[tuple[str, Any], ...] = ()
    loss: str = "l1"
    seeds: int = 8
    seed: int = 0
    batch_size: int = 256
    train_epochs: int = 100
    augment_pad: int = 0
    unlearners: tuple[str, ...] | None = None
    settings: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    hp: tuple[tuple[str, float], ...] = ()
    sweep: tuple[tuple[str, tuple[float, ...]], ...] = ()
    trials: tuple[tuple[str, tuple[tuple[tuple[str, float], ...], ...]], ...] = ()
    relearn_lr: float = 0.01
    relearn_max_epochs: int = 10
    relearn_alpha: float = 0.05
    mia_samples: int = 2000
    mia_models: int | None = None
    mia_units: str = "standardised"
    seed_strategy: str = "auto"
    epochs_per_call: int | str | None = None
    devices: int | None = None
    dtype: str = "float32"

    def __post_init__(self):
        positive = ("seeds", "batch_size", "train_epochs", "relearn_max_epochs", "mia_samples")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.mia_models is not None and (
            isinstance(self.mia_models, bool) or not isinstance(self.mia_models, int) or self.mia_models < 1
        ):
            raise ValueError(f"mia_models must be a positive integer or None (every seed), got {self.mia_models!r}")
        if self.devices is not None and (not isinstance(self.devices, int) or self.devices < 1):
            raise ValueError(f"devices must be a positive integer or None (all devices), got {self.devices!r}")
        if self.epochs_per_call is not None and self.epochs_per_call != "all":
            if isinstance(self.epochs_per_call, bool) or not isinstance(self.epochs_per_call, int):
                raise ValueError(
                    f"epochs_per_call must be a positive integer, 'all' or None (the plan's choice), "
                    f"got {self.epochs_per_call!r}"
                )
            if self.epochs_per_call < 1:
                raise ValueError(f"epochs_per_call must be >= 1, 'all' or None, got {self.epochs_per_call}")
        if self.augment_pad < 0:
            raise ValueError(f"augment_pad must be >= 0, got {self.augment_pad}")
        if self.seed_strategy not in ("auto", *SEED_STRATEGIES):
            raise ValueError(f"seed_strategy must be one of {('auto', *SEED_STRATEGIES)}, got {self.seed_strategy!r}")
        if self.mia_units not in ("standardised", "raw"):
            raise ValueError(f"mia_units must be 'standardised' or 'raw', got {self.mia_units!r}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
        if not self.relearn_alpha >= 0:
            raise ValueError(f"relearn_alpha must be >= 0, got {self.relearn_alpha}")
        if not self.relearn_lr > 0:
            raise ValueError(f"relearn_lr must be > 0, got {self.relearn_lr}")
        object.__setattr__(
            self, "hp", tuple(sorted((key, _number("hp", key, value)) for key, value in _pairs("hp", self.hp)))
        )
        object.__setattr__(
            self, "sweep", tuple(sorted((key, _numbers(key, values)) for key, values in _pairs("sweep", self.sweep)))
        )
        object.__setattr__(self, "trials", _normalise_trials(self.trials))
        from jaxunlearn import unlearn  # the registry (imported here: the unlearners import this module)

        unlearners = unlearn.default_unlearners() if self.unlearners is None else self.unlearners
        if isinstance(unlearners, str) or not all(isinstance(u, str) for u in unlearners):
            raise ValueError(f"unlearners must be a list of names, got {self.unlearners!r}")
        object.__setattr__(self, "unlearners", tuple(unlearners))
        object.__setattr__(self, "settings", _normalise_settings(self.settings))

    def replace(self, **changes: Any) -> StudyConfig:
        """A copy with ``changes``, given in any form the constructor accepts (dicts for
        ``hp``, ``sweep``, ``settings``, ``trials``), normalised and checked again."""
        return dataclasses.replace(self, **changes)

    def settings_of(self, stage: str) -> dict[str, Any]:
        """The settings of ``stage`` given in this config (field -> value; defaults left out)."""
        return dict(dict(self.settings).get(stage, ()))

    def resolved_settings(self, stage: str) -> Any:
        """``stage``'s settings instance: its defaults with this config's values over them."""
        from jaxunlearn import unlearn

        return unlearn.get(stage).resolve_settings(self.settings_of(stage))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model_kwargs"] = dict(self.model_kwargs)
        out["dataset_kwargs"] = dict(self.dataset_kwargs)
        assert self.unlearners is not None  # resolved by __post_init__
        out["unlearners"] = list(self.unlearners)
        out["hp"] = dict(self.hp)
        out["sweep"] = {key: list(values) for key, values in self.sweep}
        out["settings"] = {stage: dict(fields) for stage, fields in self.settings}
        out["trials"] = {stage: [dict(point) for point in points] for stage, points in self.trials}
        return out


def _normalise_settings(entries: Any) -> tuple[tuple[str, tuple[tuple[str, Any], ...]], ...]:
    """{"NAME": {"epochs": 2}}, {"NAME.epochs": 2} or pairs of either -> sorted
    (stage, ((field, value), ...)) pairs, checked against each stage's settings class."""
    from jaxunlearn import unlearn

    items = list(entries.items()) if isinstance(entries, dict) else list(entries)
    merged: dict[str, dict[str, Any]] = {}
    for item in items:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
            raise ValueError(f"settings must map unlearner names to tables of field = value, got {entries!r}")
        key, value = item
        if "." in key:
            stage, _, field = key.partition(".")
            fields = {field: value}
        elif isinstance(value, dict):
            stage, fields = key, value
        elif isinstance(value, (tuple, list)) and all(isinstance(p, (tuple, list)) and len(p) == 2 for p in value):
            stage, fields = key, dict(value)
        else:
            raise ValueError(
                f"settings {key!r}: give a table of field = value (e.g. {{'max_epochs': 2}}) or a "
                f"'{key}.FIELD' key, got {value!r}"
            )
        merged.setdefault(stage, {}).update(fields)
    out = []
    for stage, fields in sorted(merged.items()):
        unlearner = unlearn.get(stage)
        unlearner.resolve_settings(fields)  # raises ValueError naming the stage and field
        hashable = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
        out.append((stage, tuple(sorted(hashable.items()))))
    return tuple(out)


def _normalise_trials(entries: Any) -> tuple[tuple[str, tuple[tuple[tuple[str, float], ...], ...]], ...]:
    """{"NAME": [{"lr": 1e-3}, ...]} or its pairs -> sorted (stage, (((name, value), ...), ...))."""
    out = []
    for stage, points in _pairs("trials", entries):
        if isinstance(points, dict) or not isinstance(points, (tuple, list)) or not points:
            raise ValueError(
                f"trials {stage}: give a non-empty list of points ({{name: value}} tables), got {points!r}"
            )
        normalised = []
        for point in points:
            pairs = _pairs(f"trials {stage}", point)
            if not pairs:
                raise ValueError(f"trials {stage}: a point sets no hyperparameter")
            normalised.append(tuple(sorted((name, _number("trials", f"{stage}.{name}", v)) for name, v in pairs)))
        out.append((stage, tuple(normalised)))
    return tuple(sorted(out))


def _pairs(field: str, entries: Any) -> list[tuple[str, Any]]:
    """A dict or a sequence of (key, value) pairs -> list of pairs with string keys."""
    items = list(entries.items()) if isinstance(entries, dict) else list(entries)
    if not all(isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str) for item in items):
        raise ValueError(f"{field} must map 'STAGE.NAME' keys to values, got {entries!r}")
    return [(key, value) for key, value in items]


def _number(field: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field} {key}: values must be numbers, got {value!r}")
    return float(value)


def _numbers(key: str, values: Any) -> tuple[float, ...]:
    if isinstance(values, (int, float)):
        values = (values,)
    if not isinstance(values, (tuple, list)) or not values:
        raise ValueError(f"sweep {key}: give a non-empty list of values, got {values!r}")
    return tuple(_number("sweep", key, v) for v in values)


def config_reference() -> str:
    """docs/CONFIG.md: every ``StudyConfig`` field with its type and default, then the
    class's own description of each (its docstring), so the page cannot drift from the code
    (``tests/test_config_reference.py`` checks it)."""
    import inspect
    import textwrap

    doc = inspect.getdoc(StudyConfig) or ""
    intro, _, attributes = doc.partition("Attributes:")
    lines = [
        "# StudyConfig: every setting of a study",
        "",
        "Generated from `jaxunlearn.config.StudyConfig` (regenerate with `JAXUNLEARN_WRITE_DOCS=1 python -m pytest "
        "tests/test_config_reference.py`). The command line sets the same fields through its options and config "
        "files (docs/USAGE.md); Python passes them to `StudyConfig(...)`, and `cfg.replace(field=value)` changes one.",
        "",
        intro.strip(),
        "",
        "| field | type | default |",
        "|---|---|---|",
    ]
    for field in dataclasses.fields(StudyConfig):
        kind = str(field.type).replace("|", "or")
        lines.append(f"| `{field.name}` | `{kind}` | `{field.default!r}` |")
    lines += ["", "## What each field means", "", "```text", textwrap.dedent(attributes).strip("\n"), "```", ""]
    return "\n".join(lines)
