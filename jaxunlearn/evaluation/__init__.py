"""Many-model, per-example evaluations of unlearning (docs/EVALUATION.md).

    >>> from jaxunlearn.config import StudyConfig
    >>> from jaxunlearn.evaluation import EvaluationConfig, run_evaluation
    >>> result, run = run_evaluation(StudyConfig(),             # the default unlearners
    ...                              EvaluationConfig("neurips23", models=256))   # doctest: +SKIP
    >>> print(result.table)                                                   # doctest: +SKIP

Protocols (``PROTOCOLS``): "neurips23", the NeurIPS 2023 challenge's per-example epsilon
score (``jaxunlearn.evaluation.neurips23``), and "ulira", the per-example likelihood-ratio
attack on unlearned shadow models (``jaxunlearn.evaluation.ulira``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import jax

from jaxunlearn.checkpoints import data_fingerprint
from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task
from jaxunlearn.evaluation import neurips23, ulira  # noqa: F401 (they register their protocols)
from jaxunlearn.evaluation.blocks import BlockRunner, BlockStore
from jaxunlearn.evaluation.protocol import PROTOCOLS, EvaluationConfig, EvaluationResult, Protocol, register_protocol


def check_evaluation(cfg: StudyConfig, ecfg: EvaluationConfig) -> None:
    """Settings an evaluation refuses before any work."""
    if cfg.sweep:
        raise ValueError(
            "an evaluation takes one value per hyperparameter (--hp), not a sweep; evaluate each value on its own"
        )


def run_evaluation(
    cfg: StudyConfig,
    ecfg: EvaluationConfig,
    task: Task | None = None,
    model: Any = None,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    compile_cache: bool = True,
    protocol: Protocol | None = None,
) -> tuple[EvaluationResult, dict[str, Any]]:
    """Runs the protocol ``ecfg.protocol`` on the study ``cfg`` describes (dataset, model,
    unlearners and their settings; ``cfg.seeds`` is unused: ``ecfg.models`` counts).

    Args:
        task, model: your own task and model, as for ``jaxunlearn.study.run_study``.
        checkpoint_dir: save every finished block of models there; resume: reuse them
            (a killed evaluation loses at most the block that was running).
        compile_cache: keep compiled programs in the persistent XLA cache, as ``run_study``.
        protocol: run this instead of ``ecfg.protocol``'s registered function, for a protocol
            that needs more than the task (``jaxunlearn.sequential.evaluate_sequential``).

    Returns:
        (the result, a description of the run: dataset, task, plan, model).
    """
    from jaxunlearn.compile_cache import enable as enable_compile_cache
    from jaxunlearn.study import prepare_study, resolve_plan

    check_evaluation(cfg, ecfg)
    if compile_cache:
        enable_compile_cache()
    if resume and checkpoint_dir is None:
        raise ValueError("resume needs a checkpoint directory (--checkpoint-dir)")
    cfg, task, model_fns, _, dataset_used = prepare_study(cfg, task, model, log)
    # Each block splits its seeds over the most of these devices that divide its chunk.
    plan = dataclasses.replace(
        resolve_plan(dataclasses.replace(cfg, seeds=1), model_fns.family), devices=cfg.devices or jax.device_count()
    )
    store = None
    if checkpoint_dir is not None:
        store = BlockStore(checkpoint_dir, cfg, data_fingerprint(task))
        if not store.begin(resume) and resume:
            log(f"resume: no evaluation in {checkpoint_dir} yet; starting from the beginning")
    log(f"task: {task.name} | {task.describe()['train']} train rows")
    log(
        f"protocol {ecfg.protocol}: {ecfg.models} models per row | model {cfg.model} ({model_fns.family}) | plan {plan}"
    )
    blocks = BlockRunner(cfg, model_fns, plan, store, resume, ecfg.chunk, ecfg.memory_limit, log, progress)
    result = (protocol or PROTOCOLS[ecfg.protocol])(cfg, ecfg, blocks, task, log)
    run = {
        "dataset": dataset_used,
        "task": task.describe(),
        "plan": dataclasses.asdict(plan),
        "chunks": dict(blocks.chunks),
    }
    return result, run


__all__ = [
    "PROTOCOLS",
    "EvaluationConfig",
    "EvaluationResult",
    "check_evaluation",
    "register_protocol",
    "run_evaluation",
]
