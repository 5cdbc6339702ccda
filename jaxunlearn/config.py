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
        finetune_epochs, gaussian_epochs, proxy_epochs, blindspot_epochs: paper 5, 1, 2, 1 (AgeDB).
        neggrad_epochs: NegGrad+ epochs over all rows (5, as fine-tuning).
        scrub_epochs, scrub_max_epochs: SCRUB's epochs (5) and how many of the first ones
            start with a max pass over the forget rows (1; at most ``scrub_epochs``).
        scrub_forget_batch: rows per step of SCRUB's max passes (None: ``batch_size``, capped
            at the forget-set size, so a forget set under one batch takes one step per pass).
        augment_pad: image augmentation padding (0 = off; paper: 16 for 32x32 images).
        gaussian_stats: label statistics for the Gaussian relabelling: "all" rows (the
            reference) or "retain" rows only.
        unlearners: which registered unlearners to run (retraining always runs).
        hp: float hyperparameters by ``"STAGE.NAME"`` (e.g. ``{"blindspot.beta": 10.0}``),
            the same for every seed; the rest keep their defaults (the paper's values).
        sweep: several values per ``"STAGE.NAME"`` of an unlearner (e.g.
            ``{"blindspot.beta": (0, 10, 50)}``): every combination of a stage's swept
            values becomes a row, all run together on the same seeds.
            Given as a dict or as (key, value) pairs; stored as sorted pairs of floats.
        relearn_lr, relearn_max_epochs, relearn_alpha: the anamnesis index (AIN) settings.
        mia_samples: samples per class for the membership-inference attack (paper: 2000).
        seed_strategy: "auto", "vmap", "map" or "host"; epochs_per_call: None = plan default.
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
    finetune_epochs: int = 5
    gaussian_epochs: int = 1
    proxy_epochs: int = 2
    blindspot_epochs: int = 1
    neggrad_epochs: int = 5
    scrub_epochs: int = 5
    scrub_max_epochs: int = 1
    scrub_forget_batch: int | None = None
    augment_pad: int = 0
    gaussian_stats: str = "all"
    unlearners: tuple[str, ...] = ("finetune", "gaussian", "blindspot")
    hp: tuple[tuple[str, float], ...] = ()
    sweep: tuple[tuple[str, tuple[float, ...]], ...] = ()
    relearn_lr: float = 0.01
    relearn_max_epochs: int = 10
    relearn_alpha: float = 0.05
    mia_samples: int = 2000
    seed_strategy: str = "auto"
    epochs_per_call: int | None = None
    devices: int | None = None
    dtype: str = "float32"

    def __post_init__(self):
        positive = ("seeds", "batch_size", "train_epochs", "finetune_epochs", "gaussian_epochs",
                    "proxy_epochs", "blindspot_epochs", "neggrad_epochs", "scrub_epochs", "scrub_max_epochs",
                    "relearn_max_epochs", "mia_samples")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.scrub_forget_batch is not None and (not isinstance(self.scrub_forget_batch, int)
                                                    or self.scrub_forget_batch < 1):
            raise ValueError(f"scrub_forget_batch must be a positive integer or None (batch_size, capped at the "
                             f"forget rows), got {self.scrub_forget_batch!r}")
        if self.devices is not None and (not isinstance(self.devices, int) or self.devices < 1):
            raise ValueError(f"devices must be a positive integer or None (all devices), got {self.devices!r}")
        if self.scrub_max_epochs > self.scrub_epochs:
            raise ValueError(f"scrub_max_epochs ({self.scrub_max_epochs}) must be <= scrub_epochs "
                             f"({self.scrub_epochs})")
        if self.augment_pad < 0:
            raise ValueError(f"augment_pad must be >= 0, got {self.augment_pad}")
        if self.gaussian_stats not in ("all", "retain"):
            raise ValueError(f"gaussian_stats must be 'all' or 'retain', got {self.gaussian_stats!r}")
        if self.seed_strategy not in ("auto",) + SEED_STRATEGIES:
            raise ValueError(f"seed_strategy must be one of {('auto',) + SEED_STRATEGIES}, got {self.seed_strategy!r}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")
        if not self.relearn_alpha >= 0:
            raise ValueError(f"relearn_alpha must be >= 0, got {self.relearn_alpha}")
        if not self.relearn_lr > 0:
            raise ValueError(f"relearn_lr must be > 0, got {self.relearn_lr}")
        object.__setattr__(self, "hp", tuple(sorted(
            (key, _number("hp", key, value)) for key, value in _pairs("hp", self.hp))))
        object.__setattr__(self, "sweep", tuple(sorted(
            (key, _numbers(key, values)) for key, values in _pairs("sweep", self.sweep))))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["model_kwargs"] = dict(self.model_kwargs)
        out["dataset_kwargs"] = dict(self.dataset_kwargs)
        out["unlearners"] = list(self.unlearners)
        out["hp"] = dict(self.hp)
        out["sweep"] = {key: list(values) for key, values in self.sweep}
        return out


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
