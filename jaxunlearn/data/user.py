"""A user's own arrays as a study's task.

>>> task = task_from_arrays(train=(x_tr, y_tr), val=(x_va, y_va), test=(x_te, y_te),
...                         forget="quantile>=0.9")              # doctest: +SKIP
>>> run_study(cfg, task=task)                                     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from jaxunlearn.data.arrays import Task
from jaxunlearn.data.forget_rules import SPLITS, ForgetRule, Mask
from jaxunlearn.data.sources import RawData, build_task


def task_from_arrays(
    train: tuple,
    val: tuple,
    test: tuple,
    forget: str | ForgetRule | Mapping[str, np.ndarray],
    name: str = "user arrays",
    per_feature_inputs: bool = True,
    target_units: str = "",
) -> Task:
    """Builds a task from host arrays: validated, forget rule applied, standardised with
    the training split's statistics (as every built-in dataset).

    Args:
        train, val, test: (x [N, ...], y [N] or [N, 1]) per split, in the target's units.
        forget: which rows to forget: a rule string (``"label>=30"``, ``"quantile>=0.9"``,
            ``"random:0.1"``, ...), a rule object (``Indices``, ``Mask``, ...), or boolean
            masks {"train": [N_train], "val": [N_val], "test": [N_test]}.
        name: a description for the output.
        per_feature_inputs: standardise each input feature on its own (tabular data), or
            with one mean and std (images, time-series windows).
        target_units: the unit errors are reported in.

    Returns:
        A Task on the default device.

    Raises:
        ValueError: shapes, dtypes, NaN/inf, or a forget rule that leaves nothing to
            forget or nothing to retain (naming the split and field).
    """
    splits = {"train": train, "val": val, "test": test}
    for split, pair in splits.items():
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ValueError(f"{split} must be a pair (x, y) of arrays, got {type(pair).__name__}")
    if isinstance(forget, Mapping):
        missing = [s for s in SPLITS if s not in forget]
        if missing:
            raise ValueError(f"forget masks are missing split(s) {missing}; give a bool mask per split {list(SPLITS)}")
        forget = Mask({s: np.asarray(forget[s]) for s in SPLITS})
    raw = RawData(
        {s: (np.asarray(x), np.asarray(y)) for s, (x, y) in splits.items()},
        forget,
        name,
        per_feature_inputs=per_feature_inputs,
        target_units=target_units,
    )
    return build_task(raw)
