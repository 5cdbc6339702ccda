"""Driving a pipeline over S seeds from the host, with progress and timing.

The per-seed functions of each phase (start + loop initialisation, a chunk of epochs) are
wrapped by a ``SeedExecutor`` under the ``LoopPlan``; with ``epochs_per_call=None`` a phase
is one compiled call over all seeds and epochs. Keys are derived exactly as in
``Pipeline.run``, so the results match single-seed runs.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm  # text bars: tqdm.auto needs ipywidgets in notebooks

from jaxunlearn.data.arrays import Task, check_train_rows
from jaxunlearn.seeds import LoopPlan, SeedExecutor, abstract_seeds, num_seeds, place_seeds, take_seeds, to_host
from jaxunlearn.timing import Stopwatch
from jaxunlearn.train.state import TrainState, finished
from jaxunlearn.unlearn.base import Phase, Pipeline, phase_keys


@dataclasses.dataclass
class StageResult:
    """Output of one pipeline over S seeds.

    Attributes:
        state: TrainState with a leading seed axis [S, ...] on every leaf.
        history: the last phase's per-epoch history, {name: [S, epochs]} numpy arrays.
        wall, compile, run: seconds for all S seeds together (run = wall - compile).
        diverged_at: [S, phases] int, -1 where the phase stayed finite for that seed, else
            the step of the phase at which its loss or parameters first became NaN/inf
            (that seed's state then stays at its last finite value).
        phase_names: the pipeline's phase names, in order.
        members: models per seed: 1, or a sharded stage's S shard models per seed (slot
            k * S + s holds seed k's shard s: ``jaxunlearn.shards``); the history and
            ``diverged_at`` are then per seed.
        aggregate: how a sharded stage's members' predictions combine ("mean", "median").
    """

    state: TrainState
    history: dict[str, np.ndarray]
    wall: float
    compile: float
    run: float
    diverged_at: np.ndarray | None = None
    phase_names: tuple[str, ...] = ()
    members: int = 1
    aggregate: str = "mean"

    def divergence(self, stage: str) -> list[dict]:
        """One record {seed, stage, phase, step} per seed that diverged (its first phase)."""
        if self.diverged_at is None:
            return []
        events = []
        for seed, row in enumerate(np.asarray(self.diverged_at)):
            hit = np.flatnonzero(row >= 0)
            if hit.size:
                p = int(hit[0])
                events.append({"seed": seed, "stage": stage, "phase": self.phase_names[p], "step": int(row[p])})
        return events

    def split(self, parts: int, plan: LoopPlan) -> list[StageResult]:
        """``parts`` results of S seeds each from one result over ``parts`` x S seed slots
        (slot i*S + s holds seed s of part i), each laid out as ``plan`` keeps seeds. The
        time is shared equally, since the parts ran together."""
        total = num_seeds(self.state)
        seeds = total // parts
        on_host = take_seeds(self.state, np.arange(total))  # one transfer, then sliced on the host
        out = []
        for i in range(parts):
            slots = np.arange(i * seeds, (i + 1) * seeds)
            out.append(
                StageResult(
                    state=place_seeds(take_seeds(on_host, slots), plan),
                    history={k: v[slots] for k, v in self.history.items()},
                    wall=self.wall / parts,
                    compile=self.compile / parts,
                    run=self.run / parts,
                    diverged_at=None if self.diverged_at is None else self.diverged_at[slots],
                    phase_names=self.phase_names,
                )
            )
        return out


def broadcast_hp(hp: dict[str, Any], seeds: int) -> dict[str, jax.Array]:
    """Scalars -> [S] arrays; [S] arrays pass through (a sweep puts one value per seed slot)."""
    out = {}
    for k, v in hp.items():
        v = jnp.asarray(v, jnp.float32)
        if v.ndim == 0:
            v = jnp.full((seeds,), v)
        if v.shape != (seeds,):
            raise ValueError(f"hyperparameter {k!r} must be a scalar or have shape ({seeds},), got {v.shape}")
        out[k] = v
    return out


class _PhaseDriver:
    """Runs one phase over the seeds. ``shared_epochs``: the executor of the phase's epoch
    loop, from an earlier phase of the same ``Fit`` (SCRUB repeats its passes), so the loop
    compiles once. ``programs``: the same phase of another pipeline, whose compiled programs
    this one runs (its epoch loop only with ``own_start``: the phase's start reads the
    forget count, and the other pipeline was built for another)."""

    def __init__(
        self,
        phase: Phase,
        index: int,
        plan: LoopPlan,
        shared_epochs: SeedExecutor | None = None,
        programs: _PhaseDriver | None = None,
        own_start: bool = False,
    ):
        self.phase, self.plan = phase, plan
        self.begin: SeedExecutor
        self.epochs: SeedExecutor
        if programs is not None and not own_start:
            self.begin, self.epochs = programs.begin, programs.epochs  # another pipeline's phase
            return

        def begin(key, original, hp, earlier, rows, task):
            task = task.with_train_rows(rows)
            k_start, k_fit = phase_keys(key, index)
            state, aux = phase.start(k_start, original, task, hp, earlier)
            # A copy: the carry is donated to the epoch loop, and a state taken unchanged from
            # ``original`` or ``earlier`` would otherwise be those arrays themselves.
            return jax.tree_util.tree_map(jnp.copy, phase.fit.init_carry(k_fit, state, hp)), aux

        def epochs(carry, hp, aux, rows, epoch_ids, task):
            return phase.fit.run_epochs(carry, epoch_ids, task.with_train_rows(rows), hp, aux)

        label = re.sub(r"\W", "_", phase.name)
        begin.__name__, epochs.__name__ = f"{label}_begin", f"{label}_epochs"  # names in compile logs and profiles
        self.begin = SeedExecutor(begin, plan, n_per_seed=5)
        if programs is not None:  # only the start is this pipeline's own
            self.epochs = programs.epochs
            return
        # A Fit's carry is donated: one copy of the models and their Adam moments per call, not two.
        donate = 1 if getattr(phase.fit, "donates_carry", False) else 0
        self.epochs = shared_epochs or SeedExecutor(epochs, plan, n_per_seed=4, donate=donate)

    def __call__(self, keys, original, hp, earlier, rows, task, bar) -> tuple[TrainState, dict]:
        total = self.phase.fit.cfg.epochs
        per_call = self.plan.calls_of(total)
        carry, aux = self.begin((keys, original, hp, earlier, rows), (task,))
        chunks = []
        for first in range(0, total, per_call):
            ids = jnp.arange(first, min(first + per_call, total), dtype=jnp.int32)
            carry, hist = self.epochs((carry, hp, aux, rows), (ids, task))
            chunks.append(hist)
            if bar is not None:
                jax.block_until_ready(carry)
                bar.update(int(ids.shape[0]))
        history = {k: np.concatenate([to_host(c[k]) for c in chunks], axis=1) for k in chunks[0]}
        return self.phase.fit.finish(carry), history


class PipelineRunner:
    """Runs ``pipeline`` over stacked keys [S]; compiled programs are reused across calls.

    ``programs``: a runner whose compiled programs this pipeline's phases run as they are:
    a pipeline that differs from its pipeline only in its phases' epoch counts, when no
    traced function reads them, or in the forget count, when only phase starts that say so
    (``Phase.start_reads_forget_count``) read it (``jaxunlearn.programs.epochless_key`` says
    when); each phase then runs its own number of epochs with the other runner's programs,
    and such a start its own.
    """

    def __init__(self, pipeline: Pipeline, plan: LoopPlan, programs: PipelineRunner | None = None):
        self.pipeline, self.plan = pipeline, plan
        if programs is not None and (programs.plan != plan or len(programs.drivers) != len(pipeline.phases)):
            raise ValueError(f"{pipeline.name}: the programs given are another plan's or another pipeline's")
        self.drivers: list[_PhaseDriver] = []
        by_fit: dict[int, SeedExecutor] = {}
        other_counts = programs is not None and programs.pipeline.layout != pipeline.layout
        for i, phase in enumerate(pipeline.phases):
            donor = None if programs is None else programs.drivers[i]
            own_start = other_counts and phase.start_reads_forget_count
            driver = _PhaseDriver(phase, i, plan, by_fit.get(id(phase.fit)), donor, own_start)
            by_fit.setdefault(id(phase.fit), driver.epochs)
            self.drivers.append(driver)

    def __call__(
        self,
        keys: jax.Array,
        original: TrainState | None,
        task: Task,
        hp: dict | None = None,
        progress: bool = True,
        rows: Any = None,
    ) -> StageResult:
        """The pipeline over the seeds ``keys`` [S].

        Args:
            original: the original models' states [S, ...], or None for a pipeline that
                starts from scratch.
            hp: float hyperparameters that differ from the pipeline's defaults (scalars or [S]).
            rows: None (every seed uses the task's training rows), or int [S, M]: seed s
                trains on ``task.train.x[rows[s]]`` in that order, its forget rows being the
                ones marked in the task (``Split.rows``); one program serves every row set
                with the layout the pipeline was built for (U-LiRA's shadows, SISA's shards).
        """
        task = self.pipeline.task_for(task)
        rows = self.check(task, rows, int(keys.shape[0]))
        seeds = int(keys.shape[0])
        # The pipeline's defaults for the hyperparameters ``hp`` leaves out (an unknown one is
        # a ValueError here, not a KeyError inside the trace).
        hp = broadcast_hp(self.pipeline.hp(**(hp or {})), seeds)
        if self.pipeline.needs_original and original is None:
            raise ValueError(f"{self.pipeline.name} needs the original model's states")
        bar = self._bar(f"x{seeds} seeds", progress)
        earlier: list[TrainState] = []
        with Stopwatch() as sw:
            history, diverged = self._run_phases(self.drivers, keys, original, task, hp, rows, earlier, bar)
            jax.block_until_ready(earlier[-1])
        bar.close()
        return self._result(earlier[-1], history, diverged, sw)

    def check(self, task: Task, rows: Any, seeds: int) -> jax.Array | None:
        """Raises ValueError unless ``task`` (restricted to each seed's ``rows``) has the
        layout the pipeline was built for; returns ``rows`` as int32 on the device."""
        if rows is None:
            self.pipeline.check_task(task)
            return None
        host = check_train_rows(task, rows)
        if host.shape[0] != seeds:
            raise ValueError(f"training rows are given for {host.shape[0]} models, the call runs {seeds} seeds")
        self.pipeline.check_task(task.with_train_rows(host[0]))
        return rows if isinstance(rows, jax.Array) and rows.dtype == jnp.int32 else jnp.asarray(host)

    def planned_bytes(
        self, seeds: int, original: TrainState | None, task: Task, hp: dict | None = None, rows: Any = None
    ) -> int | None:
        """Peak bytes XLA plans for the largest of this pipeline's programs when a call runs
        ``seeds`` seeds (on each device, its share), from the compiled programs' memory
        analyses: compiles, runs nothing (``jaxunlearn.memory``). None when the backend
        reports no memory analysis.

        Args:
            seeds: seeds per call; original: the original model's states (any seed count:
                only their shapes are read), or None; task: the task; hp: float
                hyperparameters that differ from the pipeline's defaults; rows: per-seed
                training rows [any, M] (only their shape is read), or None.
        """
        per_device = -(-seeds // self.plan.devices)
        keys = jax.eval_shape(lambda: jax.random.split(jax.random.key(0), per_device))
        hp = abstract_seeds(broadcast_hp(self.pipeline.hp(**(hp or {})), 1), per_device)
        original = None if original is None else abstract_seeds(original, per_device)
        rows = None if rows is None else jax.ShapeDtypeStruct((per_device, np.shape(rows)[1]), jnp.int32)
        earlier: list[Any] = []
        peak: int | None = 0
        for driver in self.drivers:
            used_begin, (carry, aux) = driver.begin.planned((keys, original, hp, tuple(earlier), rows), (task,))
            per_call = self.plan.calls_of(driver.phase.fit.cfg.epochs)
            ids = jax.ShapeDtypeStruct((per_call,), jnp.int32)
            used_epochs, (carry, _) = driver.epochs.planned((carry, hp, aux, rows), (ids, task))
            earlier.append(jax.eval_shape(jax.vmap(driver.phase.fit.finish), carry))
            for used in (used_begin, used_epochs):
                peak = None if used is None or peak is None else max(peak, used)
        return peak

    def _bar(self, what: str, progress: bool) -> tqdm:
        total_epochs = sum(p.fit.cfg.epochs for p in self.pipeline.phases)
        return tqdm(
            total=total_epochs, desc=f"{self.pipeline.name} {what}", unit="epoch", leave=False, disable=not progress
        )

    @staticmethod
    def _run_phases(drivers, keys, original, task, hp, rows, earlier: list, bar) -> tuple[dict, list[np.ndarray]]:
        """Runs ``drivers`` in order, appending each phase's state to ``earlier``.
        Returns (the last phase's history, each phase's divergence step per seed [S])."""
        history, diverged = {}, []
        for driver in drivers:
            state, history = driver(keys, original, hp, tuple(earlier), rows, task, bar)
            earlier.append(state)
            diverged.append(history["diverged_at"][:, -1])
        return history, diverged

    def _result(self, state, history, diverged: list[np.ndarray], sw: Stopwatch) -> StageResult:
        return StageResult(
            finished(state),  # the optimizer state is dropped (and so freed) here
            history,
            sw.wall,
            sw.compile,
            sw.run,
            diverged_at=np.stack(diverged, axis=1).astype(np.int64),
            phase_names=tuple(p.name for p in self.pipeline.phases),
        )

    def run_values(
        self,
        keys: jax.Array,
        original: TrainState | None,
        task: Task,
        hps: list[dict],
        progress: bool = True,
        share_phases: bool = True,
        rows: Any = None,
    ) -> list[StageResult]:
        """The pipeline for each set of hyperparameter overrides in ``hps`` (the pipeline's
        defaults fill in the rest) on the same seeds ``keys`` [S], in one call per phase
        over V x S seed slots (value i in slots i*S ... i*S+S-1), so a sweep compiles once.

        With ``share_phases``, leading phases that read none of the swept hyperparameters
        (``Phase.reads_hp``; e.g. Blindspot's proxy when only ``beta`` or ``lr`` is swept)
        run once over the S seeds, and their states are copied to every value's slots.
        ``rows``: per-seed training rows [S, M] or None, as for ``__call__``.

        Returns one StageResult of S seeds per value, in order. Slot i*S + s computes what
        seed s computes alone with ``hps[i]``: bitwise under "map" and "host", to float
        rounding under "vmap" (a wider batch may be fused differently)."""
        hps = [self.pipeline.hp(**h) for h in hps]  # unknown names raise here
        if len(hps) == 1:
            return [self(keys, original, task, hp=hps[0], progress=progress, rows=rows)]
        task = self.pipeline.task_for(task)
        rows = self.check(task, rows, int(keys.shape[0]))
        if self.pipeline.needs_original and original is None:
            raise ValueError(f"{self.pipeline.name} needs the original model's states")
        seeds, values = int(keys.shape[0]), len(hps)
        per_value = [broadcast_hp(h, seeds) for h in hps]
        swept = {k for k in per_value[0] if any(not np.array_equal(h[k], per_value[0][k]) for h in per_value)}
        shared = 0
        for phase in self.pipeline.phases[:-1] if share_phases else ():
            if phase.reads_hp is None or swept & set(phase.reads_hp):
                break
            shared += 1
        slots = np.arange(values * seeds) % seeds
        wide_hp = {k: jnp.concatenate([h[k] for h in per_value]) for k in per_value[0]}
        bar = self._bar(f"x{values} values x{seeds} seeds", progress)
        earlier: list[TrainState] = []
        with Stopwatch() as sw:
            _, diverged = self._run_phases(
                self.drivers[:shared], keys, original, task, per_value[0], rows, earlier, bar
            )
            earlier = [take_seeds(state, slots) for state in earlier]
            diverged = [d[slots] for d in diverged]
            history, more = self._run_phases(
                self.drivers[shared:],
                take_seeds(keys, slots),
                None if original is None else take_seeds(original, slots),
                task,
                wide_hp,
                None if rows is None else take_seeds(rows, slots),
                earlier,
                bar,
            )
            jax.block_until_ready(earlier[-1])
        bar.close()
        return self._result(earlier[-1], history, diverged + more, sw).split(values, self.plan)


def concat_results(parts: list[StageResult], plan: LoopPlan) -> StageResult:
    """One StageResult holding the seeds of ``parts`` in order (times add up)."""
    if len(parts) == 1:
        return parts[0]
    host = [take_seeds(p.state, np.arange(num_seeds(p.state))) for p in parts]
    return StageResult(
        state=place_seeds(jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *host), plan),
        history={k: np.concatenate([p.history[k] for p in parts]) for k in parts[0].history},
        wall=sum(p.wall for p in parts),
        compile=sum(p.compile for p in parts),
        run=sum(p.run for p in parts),
        diverged_at=np.concatenate([p.diverged_at for p in parts]),
        phase_names=parts[0].phase_names,
    )


def first_seeds(result: StageResult, count: int, plan: LoopPlan) -> StageResult:
    """The first ``count`` seeds of ``result``."""
    if num_seeds(result.state) == count:
        return result
    slots = np.arange(count)
    return dataclasses.replace(
        result,
        state=place_seeds(take_seeds(result.state, slots), plan),
        history={k: v[slots] for k, v in result.history.items()},
        diverged_at=None if result.diverged_at is None else result.diverged_at[slots],
    )


def run_in_chunks(
    runner: PipelineRunner,
    keys: jax.Array,
    original: TrainState | None,
    task: Task,
    hps: list[dict],
    chunk: int,
    progress: bool = True,
    saved: Callable[[int, int], list[StageResult] | None] | None = None,
    save: Callable[[int, int, list[StageResult]], None] | None = None,
    rows: Any = None,
) -> list[StageResult]:
    """``runner.run_values`` over the seeds ``keys`` [S] in calls of ``chunk`` seeds each:
    the same results, seed for seed, as one call over all S, in less memory ("host":
    bitwise; "map": bitwise for chunks of 2 or more seeds, while a one-seed chunk, a loop of
    one step, may be fused differently and round differently; "vmap": to float rounding).
    The last call is padded to ``chunk`` seeds with copies of the last seed (dropped), so
    one compiled program serves every call.

    Args:
        original: the original states: one seed (every seed starts from it) or S seeds.
        hps: as for ``run_values``.
        saved: ``saved(start, stop)``: the results (one per ``hps`` entry) of seeds
            ``start .. stop - 1`` saved by an earlier run, or None to compute them; asked
            before each call when there are several.
        save: ``save(start, stop, results)``: called after each call when there are several
            (e.g. to checkpoint it, so a kill loses at most one call).
        rows: per-seed training rows [S, M], or None (``PipelineRunner.__call__``).
    """
    seeds = int(keys.shape[0])
    if original is not None and num_seeds(original) == 1 and seeds > 1:  # every seed starts from the one
        original = take_seeds(original, np.zeros(seeds, np.int64))
    if chunk >= seeds:
        return runner.run_values(keys, original, task, hps, progress=progress, rows=rows)
    parts: list[list[StageResult]] = []
    for start in range(0, seeds, chunk):
        stop = min(start + chunk, seeds)
        loaded = saved(start, stop) if saved is not None else None
        if loaded is not None:
            parts.append(loaded)
            continue
        slots = np.minimum(np.arange(start, start + chunk), seeds - 1)
        starts = None if original is None else take_seeds(original, slots)
        results = runner.run_values(
            take_seeds(keys, slots),
            starts,
            task,
            hps,
            progress=progress,
            rows=None if rows is None else take_seeds(rows, slots),
        )
        parts.append([first_seeds(r, stop - start, runner.plan) for r in results])
        if save is not None:
            save(start, stop, parts[-1])
    return [concat_results([p[i] for p in parts], runner.plan) for i in range(len(hps))]


def seeds_per_call(
    runner: PipelineRunner,
    seeds: int,
    values: int,
    original: TrainState | None,
    task: Task,
    hp: dict | None = None,
    limit: str | int | None = None,
    rows: Any = None,
) -> tuple[int, int | None]:
    """The most of ``seeds`` seeds (a multiple of the plan's devices) whose call over
    ``values`` hyperparameter values fits the device's memory, from the compiled programs'
    memory analyses (``jaxunlearn.memory``); (seeds per call, planned peak bytes).

    On the CPU without a limit (``limit`` or ``JAXUNLEARN_MEMORY_LIMIT``) nothing is
    planned: host memory is rarely the bound, and planning would compile programs
    twice on several devices."""
    import os

    from jaxunlearn.memory import MEMORY_LIMIT_ENV, chunk_size, device_budget

    if limit is None and not os.environ.get(MEMORY_LIMIT_ENV) and jax.default_backend() == "cpu":
        return seeds, None
    devices = runner.plan.devices
    budget = device_budget(limit)
    size, planned = chunk_size(
        seeds // devices, lambda n: runner.planned_bytes(n * devices * values, original, task, hp, rows), budget
    )
    return size * devices, planned
