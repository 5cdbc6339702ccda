"""A pipeline of training phases, the unit every trainer and unlearner is built from.

Each phase has a ``start`` (build the phase's initial state and per-seed extras from the
original model, the task and earlier phases) and a ``Fit`` (the compiled loop). A pipeline
is a pure single-seed function ``pipeline.run(key, original, task, hp) -> (state, history)``
and can equally be driven over S seeds from the host (``jaxunlearn.runner``); both derive
the same keys, so seed i of a multi-seed run equals a single run with key i.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

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
        start: builds the phase's initial state (see ``Start``); fit: its compiled loop.
        reads_hp: the float hyperparameters the phase reads, when declared (None: any).
            A sweep whose swept values this phase never reads runs it once per seed
            instead of once per value (``PipelineRunner.run_values``); a conformance test
            checks each declaration.
    """

    name: str
    start: Start
    fit: Fit
    reads_hp: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """A named sequence of phases with its default float hyperparameters.

    Attributes:
        name: e.g. "blindspot".
        phases: run in order; the last phase's state is the result.
        default_hp: float hyperparameters (learning rates, beta, ...) as a dict.
        needs_original: False for pipelines that start from scratch (original, retrain).
    """

    name: str
    phases: tuple[Phase, ...]
    default_hp: dict[str, float]
    needs_original: bool = True

    def hp(self, **overrides: float) -> dict[str, jax.Array]:
        unknown = sorted(set(overrides) - set(self.default_hp))
        if unknown:
            raise ValueError(f"{self.name}: unknown hyperparameter(s) {unknown}; known: {sorted(self.default_hp)}")
        return {k: jnp.asarray(overrides.get(k, v), jnp.float32) for k, v in self.default_hp.items()}

    def run(self, key: jax.Array, original: TrainState | None, task: Task, hp: dict):
        """The whole pipeline for one seed, in one trace. Returns (state, history of the last phase)."""
        earlier: list[TrainState] = []
        history = None
        for i, phase in enumerate(self.phases):
            k_start, k_fit = phase_keys(key, i)
            state, aux = phase.start(k_start, original, task, hp, tuple(earlier))
            state, history = phase.fit.run(k_fit, state, task, hp, aux)
            earlier.append(state)
        return earlier[-1], history


def phase_keys(key: jax.Array, index: int) -> tuple[jax.Array, jax.Array]:
    """(start key, fit key) of phase ``index``: folded from the pipeline key, never reused."""
    k_start, k_fit = jax.random.split(jax.random.fold_in(key, index))
    return k_start, k_fit


def fresh_start(model: ModelFns, lr_key: str = "lr") -> Start:
    """Start from a freshly initialised model (retraining, the blindspot proxy)."""

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
