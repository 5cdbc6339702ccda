"""Pieces shared by the JAX suite and the PyTorch reference: the record format, the JSONL
file, and run metadata. Imports neither JAX nor PyTorch (the reference must not start a
JAX client on the GPU it measures)."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

SCHEMA = "jaxunlearn-bench/1"

FORGET_QUANTILE = 0.3  # forget rows with a label at or below this training quantile
FORGET_QUANTILE_RULE = f"quantile<={FORGET_QUANTILE}"  # a label range, as the paper's (AgeDB: age <= 30)


@dataclasses.dataclass(frozen=True)
class Workload:
    """A model on synthetic data of a paper-like shape (speed only; the target is a random
    linear map of the inputs, so quality metrics are comparable across runs and dtypes).
    ``rows`` training rows plus rows/8 validation and rows/8 test rows."""

    name: str
    model: str
    model_kwargs: tuple[tuple[str, Any], ...]
    rows: int
    feature_shape: tuple[int, ...]
    batch_size: int
    full_size: bool  # a GPU-sized workload (the targets apply), not a CPU smoke-test one

    @property
    def extra_rows(self) -> int:
        return max(self.rows // 8, 16)


WORKLOADS = {
    w.name: w
    for w in (
        Workload("allcnn", "allcnn", (), 12288, (32, 32, 3), 256, True),  # AgeDB-sized images
        Workload("resnet18", "resnet18", (), 12288, (32, 32, 3), 256, True),
        Workload("lstm", "lstm", (), 12288, (2, 10, 300), 256, True),  # STS-B pairs, GloVe-300d
        # The same LSTM with its input projection hoisted out of the time loop (A/B of hoist_input).
        Workload("lstm-hoisted", "lstm", (("hoist_input", True),), 12288, (2, 10, 300), 256, True),
        Workload("mlp", "mlp", (), 12288, (96,), 256, True),  # tabular (Taylor windows)
        # CPU-sized A/B probes: the full models' shapes on fewer rows (and a narrower AllCNN).
        Workload("allcnn-cpu", "allcnn", (("width", 16),), 1024, (32, 32, 3), 128, False),
        Workload("mlp-cpu", "mlp", (), 2048, (96,), 256, False),  # the Taylor task's size
        Workload("lstm-cpu", "lstm", (), 1024, (2, 10, 300), 256, False),
        Workload("lstm-cpu-hoisted", "lstm", (("hoist_input", True),), 1024, (2, 10, 300), 256, False),
        Workload("allcnn-quick", "allcnn", (("width", 4),), 128, (8, 8, 3), 64, False),
        Workload("resnet18-quick", "resnet18", (("width", 2),), 128, (8, 8, 3), 64, False),
        Workload("lstm-quick", "lstm", (("hidden", 8),), 192, (2, 4, 8), 64, False),
        Workload("mlp-quick", "mlp", (("hidden", (32, 32)),), 384, (16,), 64, False),
    )
}

# Fields every record carries (measurement, skipped or error).
ID_FIELDS = (
    "schema",
    "kind",
    "framework",
    "workload",
    "model",
    "phase",
    "dtype",
    "seeds",
    "strategy",
    "batch_size",
    "device",
    "backend",
    "versions",
    "git_commit",
    "date_utc",
)
# Fields every measurement record carries in addition.
MEASUREMENT_FIELDS = (
    "compile_s",
    "epoch_s_median",
    "epoch_s_all",
    "per_seed_epoch_s",
    "samples_per_s",
    "seed_epochs_per_s",
    "flops_per_seed_epoch",
    "achieved_tflops",
    "peak_bytes_in_use",
    "memory_note",
    "rows_per_epoch",
    "quality",
    "paper_epochs",
    "phase_s_projected",
)


def git_commit(root: str | None = None) -> str | None:
    """The checkout's HEAD commit (with "+dirty" when tracked files changed), or None."""
    root = root or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], check=False, cwd=root, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            check=False,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def now_utc() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def run_info(framework: str, device: str, backend: str, versions: dict[str, str]) -> dict[str, Any]:
    """Metadata stamped on every record of one run."""
    return {
        "schema": SCHEMA,
        "framework": framework,
        "device": device,
        "backend": backend,
        "versions": {"python": sys.version.split()[0], **versions},
        "platform": platform.platform(),
        "git_commit": git_commit(),
        "date_utc": now_utc(),
    }


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf floats become None, tuples lists, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def append_record(path: str, record: dict[str, Any]) -> None:
    """Appends one JSON line and flushes it (a killed run keeps every finished record)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as sink:
        sink.write(json.dumps(_clean(record)) + "\n")
        sink.flush()


def read_records(paths: Iterable[str]) -> list[dict[str, Any]]:
    """Every record of the given JSONL files that follows this suite's schema."""
    out = []
    for path in paths:
        with open(path) as src:
            for line in src:
                line = line.strip()
                if line:
                    rec = json.loads(line)
                    if rec.get("schema") == SCHEMA:
                        out.append(rec)
    return out


def summary_stats(values: list[float]) -> dict[str, Any]:
    """{"mean", "std" (sample, 0 for one value), "per_seed"} of finite-or-not values."""
    n = len(values)
    mean = sum(values) / n if n else float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return {"mean": mean, "std": math.sqrt(var), "per_seed": list(values)}


class CompileCounter:
    """Counts, from ``jax.monitoring``, the programs JAX builds: ``traces`` (jaxprs traced),
    ``programs`` (backend-compile events, which a persistent-cache hit reports too) and
    ``cache_hits``; ``xla_compiles()`` is the programs XLA really compiled. Registered once;
    read differences around the code measured (``snapshot``)."""

    def __init__(self) -> None:
        import jax

        self.counts = {"traces": 0, "programs": 0, "cache_hits": 0}

        def on_duration(event: str, duration: float, **kw: Any) -> None:
            if event == "/jax/core/compile/jaxpr_trace_duration":
                self.counts["traces"] += 1
            elif event == "/jax/core/compile/backend_compile_duration":
                self.counts["programs"] += 1

        def on_event(event: str, **kw: Any) -> None:
            if event == "/jax/compilation_cache/cache_hits":
                self.counts["cache_hits"] += 1

        jax.monitoring.register_event_duration_secs_listener(on_duration)
        jax.monitoring.register_event_listener(on_event)

    def snapshot(self) -> dict[str, int]:
        return dict(self.counts)

    def since(self, before: dict[str, int]) -> dict[str, int]:
        """Counts since ``before`` (a ``snapshot``), with ``xla_compiles``."""
        out = {k: v - before[k] for k, v in self.counts.items()}
        out["xla_compiles"] = out["programs"] - out["cache_hits"]
        return out
