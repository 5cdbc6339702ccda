"""An optional TensorBoard export of a study's learning curves and final metrics.

Off by default (``jaxunlearn run --tensorboard``, ``StudyResult.write(out, tensorboard=True)``);
it needs tensorboardX (``pip install 'jaxunlearn[tensorboard]'``), a maintained event-file
writer that does not need TensorFlow. It writes one TensorBoard run per study row and seed,
``OUT/tensorboard/ROW/seedK``, holding:

- ``loss/train`` and ``loss/val`` at every epoch of the row's last phase (steps 1..E; a
  stage that does not validate has no ``loss/val``): ``StudyResult.curves``;
- ``metrics/KEY`` for every per-seed metric of that model (``jaxunlearn.metrics.suite.METRICS``
  names them), at the last epoch's step.

    >>> result.write("out/", tensorboard=True)        # doctest: +SKIP
    $ tensorboard --logdir out/tensorboard
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from jaxunlearn.extras import require
from jaxunlearn.metrics.suite import METRICS, PER_STAGE

if TYPE_CHECKING:
    from jaxunlearn.study import StudyResult

FOLDER = "tensorboard"
# curves key -> scalar tag
CURVE_TAGS = {"train_loss": "loss/train", "val_loss": "loss/val"}


def check_tensorboard_available() -> None:
    """Raises ``MissingExtraError`` naming the install command unless tensorboardX is installed."""
    require("tensorboard", "the TensorBoard export (--tensorboard)", "tensorboardX")


def run_folder(out: Path, row: str, seed: int) -> Path:
    """The run folder of one row's seed: ``OUT/tensorboard/ROW/seedK`` ('/' in a row name as '_')."""
    return out / FOLDER / row.replace(os.sep, "_") / f"seed{seed}"


def write_tensorboard(result: StudyResult, out: str | os.PathLike) -> Path:
    """Writes the study's curves and metrics as TensorBoard event files under ``out/tensorboard``,
    replacing an earlier export there (so a rerun's events never mix with a stale one's).

    Returns:
        The ``tensorboard`` folder.
    """
    check_tensorboard_available()
    from tensorboardX import SummaryWriter

    root = Path(out) / FOLDER
    if root.exists():
        shutil.rmtree(root)
    for row in result.rows:
        curves = {k: np.asarray(v, np.float64) for k, v in result.curves.get(row, {}).items() if k in CURVE_TAGS}
        seeds = result.config.seeds
        for seed in range(seeds):
            with SummaryWriter(logdir=str(run_folder(Path(out), row, seed))) as writer:
                last = 0
                for key, values in curves.items():
                    for epoch, value in enumerate(values[seed], start=1):
                        if math.isfinite(value):
                            writer.add_scalar(CURVE_TAGS[key], value, epoch)
                            last = max(last, epoch)
                for metric, values in result.per_seed.get(row, {}).items():
                    info = METRICS.get(metric)
                    value = float(np.asarray(values, np.float64)[0 if info and info.per == PER_STAGE else seed])
                    if math.isfinite(value):
                        writer.add_scalar(f"metrics/{metric}", value, last)
    return root
