"""A pipeline of training phases, the unit every trainer and unlearner is built from.

Each phase has a ``start`` (build the phase's initial state and per-seed extras from the
original model, the task and earlier phases) and a ``Fit`` (the compiled loop). A pipeline
is a pure single-seed function ``pipeline.run(key, original, task, hp) -> (state, history)``
and can equally be driven over S seeds from the host (``jaxunlearn.runner``); both derive
the same keys, so seed i of a multi-seed run is a single run with key i: bitwise under the
sequential seed strategies on the CPU, and to rounding otherwise (vmap batches the matrix
products; per-epoch programs fuse differently from one program: the conformance tests measure
6e-8 on the CPU).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxunlearn.data.arrays import Task
from jaxunlearn.train.loop import Fit
from jaxunlearn.train.state import ModelFns, TrainState, new_optimizer_state

# start(key, original, task, hp, earlier_states) -> (initial TrainState, aux)
Start = Callable[[jax.Array, Any, Task, dict, tuple], tuple[TrainState, Any]]


@dataclasses.dataclass(frozen=True)
class Phase:
    """One training phase of a pipeline.

    Attributes:
        name: e.g. "proxy".
        start: builds the phase's initial state (see ``Start``); fit: its compiled loop, a
            ``Fit`` or a ``OneShot`` (same methods: ``cfg.epochs``, ``init_carry``,
            ``run_epochs``, ``finish``, ``run``; ``donates_carry``: True when ``run_epochs``
            returns its carry in the same structure, which the runner then donates).
        reads_hp: the float hyperparameters the phase reads, when declared (None: any).
            A sweep whose swept values this phase never reads runs it once per seed
            instead of once per value (``PipelineRunner.run_values``); a conformance test
            checks each declaration.
        start_reads_forget_count: the start's traced code holds the task's number of forget
            training rows (Blindspot's proxy outputs, computed over exactly those rows)
            while the fit's does not: a pipeline built for another count may run this
            phase's epochs on this one's compiled programs, never its start
            (``programs.epochless_key``).
    """

    name: str
    start: Start
    fit: Fit | OneShot
    reads_hp: tuple[str, ...] | None = None
    start_reads_forget_count: bool = False


@dataclasses.dataclass(frozen=True)
class Shards:
    """A stage whose model, per seed, is an ensemble of ``count`` members trained on
    disjoint shards of the training rows (the SISA unlearner), run by
    ``jaxunlearn.shards.run_sharded`` instead of the plain runner.

    Attributes:
        count: shards S (members per seed); slices: R incremental slices per shard;
        aggregate: how members' predictions combine ("mean" or "median");
        slice_length: L rows per slice (a shard's row list is R * L long, holes included);
        stages: R pipelines, stage r training on slices 1..r (stage 0 from scratch, the
            others from the previous stage's states).
    """

    count: int
    slices: int
    aggregate: str
    slice_length: int
    stages: tuple[Pipeline, ...]


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """A named sequence of phases with its default float hyperparameters.

    Attributes:
        name: the stage's registered name.
        phases: run in order; the last phase's state is the result.
        default_hp: float hyperparameters (learning rates, beta, ...) as a dict; None: the
            registered unlearner's (``Unlearner.build`` fills them in).
        needs_original: False for pipelines that start from scratch (original, retrain).
        layout: ``Task.layout()`` of the task it was built for (``Unlearner.build`` fills it
            in unless the factory did): the runner refuses a task with another layout,
            since the phases read the row-set sizes at build time and the rows themselves
            at run time.
        shards: None, or how the stage's ensemble of shard models runs (``Shards``).
        layout_of: how ``layout`` is read off a task (``Unlearner.layout_of``): None for
            ``Task.layout()``, every forget-row count included; else a function that leaves
            the counts out (all of them, or all but a class of the forget count), and a
            task's row sets are then checked against each phase's batch size when it is
            called (``check_task``).
        sees_forget: False for a pipeline whose phases get the task without its forget rows
            (``Task.without_forget``; ``task_for``): the original model trains on the retain
            rows of that task, i.e. on every row, with the retrained model's phase, so the
            two run one compiled program.
    """

    name: str
    phases: tuple[Phase, ...]
    default_hp: dict[str, float] | None = None
    needs_original: bool = True
    layout: tuple | None = None
    shards: Shards | None = None
    layout_of: Callable[[Task], tuple] | None = None
    sees_forget: bool = True

    def task_for(self, task: Task) -> Task:
        """The task the phases get: ``task`` (or it without forget rows: ``sees_forget``)
        without its name. The name is a static field that names the forget rule, so
        keeping it would trace every program again for each forget set."""
        return (task if self.sees_forget else task.without_forget()).replace(name="task")

    def check_task(self, task: Task) -> None:
        """Raises ValueError if ``task`` has another layout than the pipeline was built for,
        or (a layout without counts) a row set that a phase cannot train on."""
        layout = (self.layout_of or type(task).layout)(task)
        if self.layout is not None and layout != self.layout:
            raise ValueError(
                f"{self.name}: built for a task with layout {self.layout} (input shape; rows and forget rows "
                f"per split), called with {layout}: build the stage for this task"
            )
        if self.layout_of is not None:
            for phase in self.phases:
                if isinstance(phase.fit, Fit):
                    phase.fit.check_rows(task)

    def hp(self, **overrides: float) -> dict[str, jax.Array]:
        default_hp = self.default_hp
        assert default_hp is not None, f"{self.name}: no default hyperparameters (Unlearner.build fills them in)"
        unknown = sorted(set(overrides) - set(default_hp))
        if unknown:
            raise ValueError(f"{self.name}: unknown hyperparameter(s) {unknown}; known: {sorted(default_hp)}")
        return {k: jnp.asarray(overrides.get(k, v), jnp.float32) for k, v in default_hp.items()}

    def run(self, key: jax.Array, original: TrainState | None, task: Task, hp: dict):
        """The whole pipeline for one seed, in one trace. Returns (state, history of the last phase)."""
        earlier: list[TrainState] = []
        history = None
        task = self.task_for(task)
        for i, phase in enumerate(self.phases):
            k_start, k_fit = phase_keys(key, i)
            state, aux = phase.start(k_start, original, task, hp, tuple(earlier))
            state, history = phase.fit.run(k_fit, state, task, hp, aux)
            earlier.append(state)
        return earlier[-1], history


@dataclasses.dataclass(frozen=True)
class OneShotConfig:
    """The settings the runner reads of a phase's loop: a one-shot phase is one "epoch"."""

    epochs: int = 1


# compute(key, state, task, hp, aux) -> (result pytree, history {name: scalar}, with "diverged_at")
Compute = Callable[[jax.Array, Any, Task, dict, Any], tuple[Any, dict[str, jax.Array]]]


class OneShot:
    """A phase computed in one pass, with no optimizer steps (e.g. SSD's parameter
    importances, then its dampening), in the interface of ``Fit`` that ``Pipeline.run`` and
    the runner drive: ``init_carry`` -> ``run_epochs`` (one "epoch") -> ``finish``, or ``run``.

    Args:
        compute: see ``Compute``. Its history holds scalars; "diverged_at" is -1, or 0 when
            the result is not finite (``compute`` decides what it returns then). The result
            of a phase that is not the pipeline's last may be any pytree (the next phase's
            ``start`` reads it from ``earlier``); the last phase's must be a TrainState.
    """

    cfg = OneShotConfig()
    donates_carry = False  # run_epochs turns its carry into the result (another structure)

    def __init__(self, compute: Compute):
        self.compute = compute

    def init_carry(self, key: jax.Array, state: Any, hp: dict) -> dict:
        del hp  # ``compute`` receives hp in run_epochs
        return {"key": key, "state": state}

    def run_epochs(self, carry: dict, epochs: jax.Array, task: Task, hp: dict, aux: Any):
        """Computes the result; returns ({"result": ...}, history of [1] arrays)."""
        if epochs.shape != (1,):
            raise ValueError(f"a one-shot phase runs as one epoch, got epochs of shape {epochs.shape}")
        result, history = self.compute(carry["key"], carry["state"], task, hp, aux)
        if "diverged_at" not in history:
            raise ValueError("a one-shot phase's history must hold 'diverged_at'")
        history = dict(history, diverged_at=jnp.asarray(history["diverged_at"], jnp.int32))
        return {"result": result}, jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], history)

    def finish(self, carry: dict) -> Any:
        return carry["result"]

    def run(self, key: jax.Array, state: Any, task: Task, hp: dict, aux: Any = None):
        """The phase for one seed: (result, history [1])."""
        carry, history = self.run_epochs(self.init_carry(key, state, hp), jnp.zeros((1,), jnp.int32), task, hp, aux)
        return self.finish(carry), history


def phase_keys(key: jax.Array, index: int) -> tuple[jax.Array, jax.Array]:
    """(start key, fit key) of phase ``index``: folded from the pipeline key, never reused."""
    k_start, k_fit = jax.random.split(jax.random.fold_in(key, index))
    return k_start, k_fit


def fresh_start(model: ModelFns, lr_key: str = "lr") -> Start:
    """Start from a freshly initialised model (retraining, a proxy model)."""

    def start(key, original, task, hp, earlier):
        return model.fresh_state(key, hp[lr_key]), None

    return start


def from_original(lr_key: str = "lr") -> Start:
    """Start from the original model's weights with a new Adam state."""

    def start(key, original, task, hp, earlier):
        if original is None:
            raise ValueError("this unlearner starts from the original model, but none was given")
        return new_optimizer_state(original, hp[lr_key]), None

    return start
