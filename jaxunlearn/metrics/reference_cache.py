"""Reusing the original and retrained models' metrics when the same models are measured again.

The metrics of the ``original`` and ``retrain`` rows (errors, W1, the membership attack,
relearning steps, AIN, validation gap) depend only on those two rows' models, the task and
the metric settings. A benchmark measures the same two rows in every cell of a (task,
scenario), and the membership attack (one SVC per model) and relearning are most of the
metrics' time; ``ReferenceMetrics`` keeps their per-seed values in the checkpoint folder
and hands them back when the same models are measured again.

The key is a SHA-256 over what the values are a function of: every seed's predictions of
both rows on the training, validation and test rows (float32 bytes), the task's arrays
(``checkpoints.data_fingerprint``), the metric settings, the seed count, and the source of
the code that measures (``METRIC_CODE``). Equal predictions of two models with different
weights could only differ in relearning steps; the key also holds the rows' checkpoint
identity where the caller knows it, so that cannot happen silently.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxunlearn.checkpoints import code_fingerprint
from jaxunlearn.report import atomic_write_text, jsonable

REFERENCE_ROWS = ("original", "retrain")
# The package's modules whose code computes a study's metrics (paths in jaxunlearn/).
METRIC_CODE = ("metrics", "study.py", "train", "seeds.py", "runner.py", "models", "data")
# StudyConfig fields the metrics read.
METRIC_SETTINGS = (
    "batch_size",
    "loss",
    "dtype",
    "seed",
    "seeds",
    "mia_samples",
    "mia_models",
    "mia_units",
    "relearn_lr",
    "relearn_max_epochs",
    "relearn_alpha",
)


def reference_key(
    predictions: Mapping[str, Mapping[str, np.ndarray]], data: str, settings: Mapping[str, Any], models: str = ""
) -> str:
    """The cache key (see the module docstring).

    Args:
        predictions: {"original"|"retrain": {split: [S, N]}} standardised predictions.
        data: ``checkpoints.data_fingerprint`` of the task; settings: the metric settings;
        models: the rows' checkpoint identity where known (e.g. their checkpoint folders).
    """
    digest = hashlib.sha256()
    for row in REFERENCE_ROWS:
        for split in sorted(predictions[row]):
            values = np.ascontiguousarray(np.asarray(predictions[row][split], np.float32))
            digest.update(f"{row}/{split}{values.shape}".encode() + values.tobytes())
    blob = {"data": data, "settings": dict(settings), "code": code_fingerprint(METRIC_CODE), "models": models}
    digest.update(json.dumps(blob, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:24]


class ReferenceMetrics:
    """The original and retrained rows' per-seed metrics kept in ``folder`` (the checkpoint
    folder: a file beside the stage folders, ``reference-metrics-KEY.json``) by key."""

    def __init__(self, folder: str | Path, key: str):
        self.path = Path(folder) / f"reference-metrics-{key}.json"

    def load(self) -> dict[str, dict[str, np.ndarray]] | None:
        """{row: {metric: [S]}} saved under this key, or None (never saved, or unreadable)."""
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(saved, dict) or set(saved) != set(REFERENCE_ROWS):
            return None
        return {
            row: {k: np.array([math.nan if v is None else v for v in vals], np.float64) for k, vals in m.items()}
            for row, m in saved.items()
        }

    def save(self, per_seed: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Keeps the reference rows of ``per_seed`` (atomically; NaN as null)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = {row: {k: np.asarray(v, np.float64) for k, v in per_seed[row].items()} for row in REFERENCE_ROWS}
        atomic_write_text(self.path, json.dumps(jsonable(rows), allow_nan=False) + "\n")
