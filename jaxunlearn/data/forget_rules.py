"""Rules that divide every split into forget and retain rows.

A rule maps one split's raw (unstandardised) targets to a boolean forget mask [N]. The
same rule is applied to train, validation and test, so test-forget rows are "of the same
kind" as the training rows the model must forget (e.g. the paper's AgeDB rule: age <= 30).

Rules can be written as short strings (used by the CLI and configs):

    "label<=30"        forget rows whose target is <= 30 (also <, >=, >)
    "label:10:20"      forget rows whose target lies in [10, 20]
    "quantile>=0.8"    forget rows whose target is >= the 0.8 quantile of TRAIN targets
    "random:0.1"       forget a random 10% of rows of each split (fixed data seed)
    "random:0.1@3"     the same with draw 3 (another fixed random set)
    "position:0.4:0.5" forget each split's rows from 40% to 50% of the way through, in the
                       split's order: a time window for a series split chronologically
    "feature[1]>0"     forget rows whose raw input feature 1 is > 0 (also <, <=, >=; a
                       subpopulation such as one category of a tabular column)
    "feature[0]:quantile>=0.8"  the same against a quantile of the TRAINING rows' feature

Rules on inputs (``Feature``) read each split's raw inputs ``[N, F]`` (before any
standardisation); the others read the targets only.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Callable, Mapping

import numpy as np

SPLITS = ("train", "val", "test")
_COMPARE: dict[str, Callable] = {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}


@dataclasses.dataclass(frozen=True)
class LabelRange:
    """Forget rows whose raw target lies in [low, high] (either bound may be None)."""

    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True

    def __post_init__(self):
        if self.low is None and self.high is None:
            raise ValueError("LabelRange needs at least one of low / high")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"LabelRange low={self.low} is above high={self.high}")

    def masks(self, targets: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for name, y in targets.items():
            y = np.asarray(y).reshape(-1)
            keep = np.ones(y.shape, bool)
            if self.low is not None:
                keep &= (y >= self.low) if self.low_inclusive else (y > self.low)
            if self.high is not None:
                keep &= (y <= self.high) if self.high_inclusive else (y < self.high)
            out[name] = keep
        return out


@dataclasses.dataclass(frozen=True)
class LabelQuantile:
    """Forget rows beyond a quantile of the TRAINING targets, e.g. the top 20% (q=0.8, '>=')."""

    op: str
    q: float

    def __post_init__(self):
        if self.op not in _COMPARE:
            raise ValueError(f"LabelQuantile op must be one of {sorted(_COMPARE)}, got {self.op!r}")
        if not 0.0 < self.q < 1.0:
            raise ValueError(f"LabelQuantile q must lie strictly between 0 and 1, got {self.q}")

    def masks(self, targets: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        threshold = float(np.quantile(np.asarray(targets["train"]).reshape(-1), self.q))
        return {name: _COMPARE[self.op](np.asarray(y).reshape(-1), threshold) for name, y in targets.items()}


@dataclasses.dataclass(frozen=True)
class RandomFraction:
    """Forget a random fraction of each split's rows, at least one (fixed ``seed``, the
    draw: the same rows for every model seed; another ``seed`` draws another set)."""

    fraction: float
    seed: int = 0

    def __post_init__(self):
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"RandomFraction fraction must lie strictly between 0 and 1, got {self.fraction}")

    def masks(self, targets: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for i, (name, y) in enumerate(sorted(targets.items())):
            n = np.asarray(y).reshape(-1).shape[0]
            rng = np.random.default_rng([self.seed, i])
            mask = np.zeros(n, bool)
            mask[rng.choice(n, size=max(1, round(self.fraction * n)), replace=False)] = True
            out[name] = mask
        return out


@dataclasses.dataclass(frozen=True)
class Position:
    """Forget each split's rows from fraction ``low`` to ``high`` of the way through it, in
    the split's own order (rows ``floor(low N)`` to ``floor(high N) - 1``): a time window for
    a series split chronologically, a block of groups when rows are sorted by group."""

    low: float
    high: float

    def __post_init__(self):
        if not 0.0 <= self.low < self.high <= 1.0:
            raise ValueError(f"Position needs 0 <= low < high <= 1, got low={self.low}, high={self.high}")

    def masks(self, targets: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for name, y in targets.items():
            n = np.asarray(y).reshape(-1).shape[0]
            mask = np.zeros(n, bool)
            mask[int(np.floor(self.low * n)) : int(np.floor(self.high * n))] = True
            out[name] = mask
        return out


@dataclasses.dataclass(frozen=True)
class Feature:
    """Forget rows by one raw input feature: ``x[:, column] op value`` (``quantile``: value is
    a quantile in (0, 1) of the TRAINING rows' feature). Inputs must be tabular, [N, F]."""

    column: int
    op: str
    value: float
    quantile: bool = False

    def __post_init__(self):
        if self.op not in _COMPARE:
            raise ValueError(f"Feature op must be one of {sorted(_COMPARE)}, got {self.op!r}")
        if self.column < 0:
            raise ValueError(f"Feature column must be >= 0, got {self.column}")
        if self.quantile and not 0.0 < self.value < 1.0:
            raise ValueError(f"Feature quantile must lie strictly between 0 and 1, got {self.value}")

    def masks(self, targets: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        columns = {}
        for name in targets:
            x = np.asarray(inputs[name])
            if x.ndim != 2:
                raise ValueError(f"a feature rule needs tabular inputs [N, F]; split {name!r} has shape {x.shape}")
            if self.column >= x.shape[1]:
                raise ValueError(
                    f"feature[{self.column}]: the inputs have {x.shape[1]} features (0 to {x.shape[1] - 1})"
                )
            columns[name] = x[:, self.column]
        threshold = float(np.quantile(columns["train"], self.value)) if self.quantile else self.value
        return {name: _COMPARE[self.op](column, threshold) for name, column in columns.items()}


@dataclasses.dataclass(frozen=True)
class Indices:
    """Forget explicit row indices per split: {"train": [3, 17, ...], "val": [...], "test": [...]}."""

    rows: Mapping[str, tuple[int, ...]]

    def masks(self, targets: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for name, y in targets.items():
            n = np.asarray(y).reshape(-1).shape[0]
            idx = np.asarray(self.rows.get(name, ()), dtype=np.int64).reshape(-1)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(
                    f"Indices for split {name!r} must lie in [0, {n}); got min {idx.min()}, max {idx.max()}"
                )
            if np.unique(idx).size != idx.size:
                raise ValueError(f"Indices for split {name!r} contain duplicates")
            mask = np.zeros(n, bool)
            mask[idx] = True
            out[name] = mask
        return out


@dataclasses.dataclass(frozen=True)
class Mask:
    """Forget rows given by explicit boolean masks per split (e.g. an attribute column)."""

    per_split: Mapping[str, np.ndarray]

    def masks(self, targets: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = {}
        for name, y in targets.items():
            n = np.asarray(y).reshape(-1).shape[0]
            if name not in self.per_split:
                raise ValueError(f"Mask rule has no mask for split {name!r}")
            mask = np.asarray(self.per_split[name])
            if mask.shape != (n,) or mask.dtype != bool:
                raise ValueError(
                    f"Mask for split {name!r} must be a bool array of shape ({n},), got {mask.dtype} {mask.shape}"
                )
            out[name] = mask
        return out


ForgetRule = LabelRange | LabelQuantile | RandomFraction | Position | Feature | Indices | Mask

_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"


def parse_rule(spec: str) -> ForgetRule:
    """Parses a rule string (see the module docstring) into a rule object."""
    text = spec.strip().replace(" ", "")
    if m := re.fullmatch(r"label(<=|<|>=|>)" + _NUM, text):
        op, value = m.group(1), float(m.group(2))
        if op.startswith("<"):
            return LabelRange(high=value, high_inclusive=op == "<=")
        return LabelRange(low=value, low_inclusive=op == ">=")
    if m := re.fullmatch(r"label:" + _NUM + ":" + _NUM, text):
        return LabelRange(low=float(m.group(1)), high=float(m.group(2)))
    if m := re.fullmatch(r"quantile(<=|<|>=|>)" + _NUM, text):
        return LabelQuantile(op=m.group(1), q=float(m.group(2)))
    if m := re.fullmatch(r"random:" + _NUM + r"(?:@(\d+))?", text):
        return RandomFraction(fraction=float(m.group(1)), seed=int(m.group(2) or 0))
    if m := re.fullmatch(r"position:" + _NUM + ":" + _NUM, text):
        return Position(low=float(m.group(1)), high=float(m.group(2)))
    if m := re.fullmatch(r"feature\[(\d+)\](:quantile)?(<=|<|>=|>)" + _NUM, text):
        return Feature(column=int(m.group(1)), op=m.group(3), value=float(m.group(4)), quantile=bool(m.group(2)))
    raise ValueError(
        f"unknown forget rule {spec!r}; accepted forms: 'label<=30', 'label>35000', 'label:10:20', "
        "'quantile>=0.8', 'random:0.1', 'random:0.1@3', 'position:0.4:0.5', 'feature[1]>0', "
        "'feature[0]:quantile>=0.8'"
    )


def apply_rule(
    rule: ForgetRule, targets: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Applies ``rule`` to each split's raw targets [N] (and raw inputs [N, ...], which a
    ``Feature`` rule reads) and checks the result is usable.

    Raises:
        ValueError: if the training forget set is empty or covers every training row, or a
            rule on inputs is given none.
    """
    if isinstance(rule, Feature):
        if inputs is None:
            raise ValueError(f"forget rule {rule} reads the inputs, but none were given")
        masks = rule.masks(targets, inputs)
    else:
        masks = rule.masks(targets)
    n_train, n_forget = masks["train"].size, int(masks["train"].sum())
    train = np.asarray(targets["train"])
    span = (
        f"training labels lie in [{train.min():.4g}, {train.max():.4g}]; choose a rule that keeps some rows "
        "on each side"
    )
    if n_forget == 0:
        raise ValueError(f"forget rule {rule} selects no training rows: the forget set is empty ({span})")
    if n_forget == n_train:
        raise ValueError(f"forget rule {rule} selects all {n_train} training rows: nothing would be retained ({span})")
    return masks
