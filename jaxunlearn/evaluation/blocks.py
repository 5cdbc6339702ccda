"""Blocks of models for the many-model evaluations: one stage over a range of seeds, in
chunks that fit the device, checkpointed as a whole, with their predictions.

A block is named (e.g. ``retrain-floor`` or ``g03-NAME``) and runs a registered stage's
pipeline for seeds ``first .. first + count - 1`` of that stage's key stream
(``jaxunlearn.study.seed_keys``). It runs as few compiled calls as memory allows: the
chunk size comes from the compiled programs' memory analysis before anything runs
(``jaxunlearn.memory``); the last chunk is padded, so every chunk reuses one program
(``jaxunlearn.runner.run_in_chunks``). A finished block is saved (orbax)
under a key that holds everything it depends on, and so is each chunk of a block that runs
in several (``checkpoints.StageParts``), so a killed evaluation loses at most the chunk that
was running.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxunlearn import programs
from jaxunlearn.checkpoints import CHUNK_MARK, PART_MARK, CheckpointStore, RowParts, StageParts, training_settings
from jaxunlearn.config import StudyConfig
from jaxunlearn.data.arrays import Task, check_train_rows
from jaxunlearn.hparams import stage_variants
from jaxunlearn.memory import chunk_size, device_budget, format_bytes
from jaxunlearn.runner import PipelineRunner, StageResult, run_in_chunks
from jaxunlearn.seeds import LoopPlan, SeedExecutor, devices_for, num_seeds, take_seeds, to_host
from jaxunlearn.shards import aggregate_predictions, run_sharded
from jaxunlearn.timing import Stopwatch
from jaxunlearn.train.loop import predict
from jaxunlearn.train.state import ModelFns


class BlockStore(CheckpointStore):
    """A ``CheckpointStore`` whose rows are blocks: each block's key adds its description
    (protocol, stage, first seed, count, the rows it trained on) to the stage's settings
    (and a plug-in's code identity)."""

    def __init__(self, root: str | os.PathLike, cfg: StudyConfig, fingerprint: str):
        super().__init__(root, cfg, fingerprint)
        self.blocks: dict[str, dict[str, Any]] = {}

    def declare(self, name: str, stage: str, description: dict[str, Any]) -> None:
        self.blocks[name] = {"stage": stage, **description}

    def settings(self, row: str) -> dict[str, Any]:
        row, mark, seeds = row.partition(CHUNK_MARK)  # a part of a block: its seeds too
        row, step, part = row.partition(PART_MARK)  # a sharded block's program: its name too
        if row not in self.blocks:
            raise ValueError(f"no block {row!r} was declared in this evaluation")
        block = self.blocks[row]
        (variant,) = stage_variants(self.cfg, block["stage"])
        return {
            "settings": training_settings(self.cfg, block["stage"]),
            "hp": variant.resolved_hp(),
            **self.stage_code(block["stage"]),
            "block": block,
            **({"part": part} if step else {}),
            **({"seeds": seeds} if mark else {}),
        }


class BlockRunner:
    """Runs, checkpoints and predicts blocks of models of one study configuration.

    Args:
        cfg: the study's settings (``cfg.seed`` roots every key; ``cfg.seeds`` is unused).
        model: the model's functions; plan: how seeds execute (its ``devices`` is reset
            per chunk to the most devices that divide it).
        store: where finished blocks are saved, or None; resume: reuse saved blocks.
        chunk: seeds per compiled call; None: the most that fit ``memory_limit``.
        memory_limit: bytes (or "2GB") a call may plan to use; None: the device's free
            memory (``jaxunlearn.memory.device_budget``).
        log: one-line messages; progress: progress bars.
    """

    def __init__(
        self,
        cfg: StudyConfig,
        model: ModelFns,
        plan: LoopPlan,
        store: BlockStore | None = None,
        resume: bool = False,
        chunk: int | None = None,
        memory_limit: str | int | None = None,
        log: Callable[[str], None] = print,
        progress: bool = True,
    ):
        self.cfg, self.model, self.plan, self.store, self.resume = cfg, model, plan, store, resume
        self.chunk, self.memory_limit, self.log, self.progress = chunk, memory_limit, log, progress
        self.runners: dict[tuple[str, int, tuple], PipelineRunner] = {}
        self.chunks: dict[str, int] = {}
        self.planning: dict[str, float] = {}  # seconds spent compiling to size a stage's chunks
        self.timings: dict[str, dict[str, float]] = {}
        self._predictor: dict[int, SeedExecutor] = {}

    def _plan(self, seeds: int) -> LoopPlan:
        return dataclasses.replace(self.plan, devices=devices_for(seeds, self.plan.devices))

    def runner(self, stage: str, task: Task, seeds: int, rows: np.ndarray | None = None) -> PipelineRunner:
        """The stage's runner for chunks of ``seeds`` seeds, built once per stage and chunk
        size, for ``task`` restricted to one model's ``rows`` (any: they all have the same
        sizes), and per task layout (``Task.layout``: shapes and row-set sizes; sequential
        requests give one stage tasks of several); which rows are forget rows may differ."""
        seen = task if rows is None else task.with_train_rows(rows[0])
        key = (stage, seeds, seen.layout())
        if key not in self.runners:
            plan = self._plan(seeds)
            from jaxunlearn.study import build_stage  # the study module imports this one's users

            # one pipeline and runner per settings, model, layout and plan in the process
            self.runners[key] = programs.runner(build_stage(stage, self.cfg, seen, self.model, plan), plan)
        return self.runners[key]

    def shards(self, stage: str, task: Task, rows: np.ndarray | None = None) -> Any:
        """The stage's ``Pipeline.shards`` (SISA's ensembles) for ``task`` with the models'
        ``rows`` [count, M] (None: all its rows), or None for a plain stage."""
        return self.runner(stage, task, 1, rows).pipeline.shards

    def chunk_for(
        self, stage: str, task: Task, count: int, original: StageResult | None, rows: np.ndarray | None = None
    ) -> int:
        """Seeds per call for a block of ``count`` seeds of ``stage`` (decided once per stage),
        whose models train on ``rows`` [count, M] of ``task`` (None: all its rows)."""
        if self.chunk is not None:
            self.chunks.setdefault(stage, min(self.chunk, count))
            return min(self.chunk, count)
        if stage in self.chunks:
            return min(self.chunks[stage], count)
        (variant,) = stage_variants(self.cfg, stage)
        budget = device_budget(self.memory_limit)
        state = None if original is None else original.state
        with Stopwatch() as sw:  # compiles the programs the run then reuses: their compile time
            size, planned = chunk_size(
                count,
                lambda n: self.runner(stage, task, n, rows).planned_bytes(n, state, task, variant.hp, rows),
                budget,
            )
        self.planning[stage] = sw.wall
        if size < count:
            self.log(
                f"{stage}: {count} models need more than the {format_bytes(budget)} available; running "
                f"{size} per call ({format_bytes(planned)} planned per call)"
            )
        self.chunks[stage] = size
        return size

    def run(
        self,
        name: str,
        stage: str,
        task: Task,
        first: int,
        count: int,
        original: StageResult | None = None,
        description: dict[str, Any] | None = None,
        rows: np.ndarray | None = None,
    ) -> StageResult:
        """Block ``name``: ``stage`` over seeds ``first .. first + count - 1``.

        Args:
            original: the original model(s) the stage starts from: one seed (every model
                starts from it) or ``count`` seeds (model i from original i); None for
                stages trained from scratch.
            description: what else the block depends on (e.g. the rows it trained on), for
                its checkpoint key.
            rows: None (every model trains on the task's rows), or int [count, M]: model
                i's training rows (``Split.rows``); every model's must hold as many forget
                rows, so one program serves them all.
        """
        from jaxunlearn.study import abstract_states, seed_keys

        if rows is not None:
            rows = check_train_rows(task, rows)
            if rows.shape[0] != count:
                raise ValueError(f"{name}: training rows are given for {rows.shape[0]} models, the block has {count}")
        shards = self.shards(stage, task, rows)
        models = count * (1 if shards is None else shards.count)
        if self.store is not None:
            self.store.declare(name, stage, {"first": first, "count": count, **(description or {})})
            restored = self.store.load(name, abstract_states(self.model, models)) if self.resume else None
            if restored is not None:
                self.log(f"{name}: loaded from {self.store.path(name)}")
                self.timings[name] = {
                    "wall": restored.wall,
                    "compile": restored.compile,
                    "run": restored.run,
                    "models": count,
                    "loaded": True,
                }
                return restored
        (variant,) = stage_variants(self.cfg, stage)
        if shards is not None:  # its programs' runs are saved as parts until the block is saved whole
            programs = RowParts(self.store, name, self.resume, lambda n: abstract_states(self.model, n), self.log)
            result = self._finish(
                name, count, self._run_sharded(stage, shards, task, first, count, variant.hp, rows, programs), None
            )
            programs.discard()
            return result
        chunk = self.chunk_for(stage, task, count, original, rows)
        runner = self.runner(stage, task, chunk, rows)
        keys = seed_keys(self.cfg.seed, count, stage, first=first)
        parts = StageParts(
            self.store, name, [name], self.resume, lambda n: abstract_states(self.model, n), count, self.log
        )
        (result,) = run_in_chunks(
            runner,
            keys,
            None if original is None else original.state,
            task,
            [variant.hp],
            chunk,
            progress=self.progress,
            saved=parts.load,
            save=parts.save,
            rows=rows,
        )
        planning = self.planning.pop(stage, 0.0)  # sizing the chunks compiled the programs this block reused
        result = dataclasses.replace(result, wall=result.wall + planning, compile=result.compile + planning)
        result = self._finish(name, count, result, chunk)
        parts.discard()
        return result

    def _finish(self, name: str, count: int, result: StageResult, chunk: int | None) -> StageResult:
        """Records the block's times, says them, and saves it."""
        self.timings[name] = {
            "wall": result.wall,
            "compile": result.compile,
            "run": result.run,
            "models": count,
            "loaded": False,
            **({"chunk": chunk} if chunk is not None else {}),
        }
        self.log(
            f"{name}: {count} models in {result.wall:.1f} s ({result.compile:.1f} s compiling, "
            f"{count / max(result.run, 1e-9):.1f} models/s after compiling)"
        )
        if self.store is not None:
            self.store.save(name, result)
        return result

    def _run_sharded(
        self, stage: str, spec: Any, task: Task, first: int, count: int, hp: dict, rows: Any, parts: RowParts
    ) -> StageResult:
        """A sharded stage's block (SISA): ``count`` ensembles of ``spec.count`` shard
        models, each sharding the task's rows or its own ``rows``, trained then unlearned
        (``jaxunlearn.shards``); each of its programs runs in calls of at most ``chunk``
        models and is saved as a part of the block."""
        from jaxunlearn.study import seed_keys

        def run(pipeline, keys, original, on, train_rows, part) -> StageResult:
            models = int(keys.shape[0])
            runners: dict[int, PipelineRunner] = {}

            def runner(n: int) -> PipelineRunner:  # one per call size: planning compiles what the run reuses
                return runners.setdefault(n, programs.runner(pipeline, self._plan(n)))

            def compute(label: str) -> StageResult:
                if self.chunk is not None:
                    chunk = min(self.chunk, models)
                else:  # the most models per call that fit the device (``chunk_for``)
                    budget = device_budget(self.memory_limit)
                    chunk, planned = chunk_size(
                        models, lambda n: runner(n).planned_bytes(n, original, on, hp, train_rows), budget
                    )
                    if chunk < models:
                        self.log(
                            f"{label}: {models} shard models per call need more than {format_bytes(budget)}; "
                            f"running {chunk} per call ({format_bytes(planned)} planned)"
                        )
                (result,) = run_in_chunks(
                    runner(chunk), keys, original, on, [hp], chunk, progress=self.progress, rows=train_rows
                )
                return result

            return parts.run(part, models, compute)

        keys = seed_keys(self.cfg.seed, count * spec.count, stage, first=first * spec.count)
        result, _ = run_sharded(
            spec, task, count, self.cfg.seed, keys, run, self._plan(1), self.log, first=first, rows=rows
        )
        return result

    def predictions(self, result: StageResult, task: Task) -> dict[str, np.ndarray]:
        """{"train"|"test": [S, N]} predictions of the block's models, standardised units,
        float64, computed in the chunks the block ran in."""
        seeds = num_seeds(result.state)
        chunk = min(seeds, max(self.chunks.values(), default=seeds) if self.chunk is None else self.chunk)
        if chunk not in self._predictor:
            plan = self._plan(chunk)

            def split_preds(state, task):
                return {
                    s: predict(self.model, state.params, state.batch_stats, getattr(task, s).x, plan)[:, 0]
                    for s in ("train", "test")
                }

            self._predictor[chunk] = programs.reuse(
                ("evaluation_predictions", id(self.model), plan),
                lambda: SeedExecutor(split_preds, plan, n_per_seed=1),
                keep=(self.model,),
            )
        run = self._predictor[chunk]
        out: dict[str, list[np.ndarray]] = {"train": [], "test": []}
        for start in range(0, seeds, chunk):
            slots = np.minimum(np.arange(start, start + chunk), seeds - 1)
            preds = run((take_seeds(result.state, slots),), (task,))
            for split in out:
                out[split].append(to_host(preds[split])[: min(chunk, seeds - start)].astype(np.float64))
        return {  # a sharded block's members are aggregated per model
            split: aggregate_predictions(np.concatenate(parts), result.members, result.aggregate)
            for split, parts in out.items()
        }
