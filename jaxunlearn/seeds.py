"""Running a per-seed function over S seeds: the execution plan and the executor.

Every stage of a study is written for ONE seed (a pure function of a key and arrays). How
the seed axis executes is a separate, measured choice (see ../shared/PERF_FACTS.md and
benchmarks/):

- ``vmap``: one batched program. Wins for dense and recurrent models on GPUs (matmuls
  become batched matmuls), but turns convolutions into slow grouped convolutions.
- ``map``: ``lax.map`` over seeds inside one program: sequential cost, bitwise equal to
  running each seed alone. ``map_batch_size=k`` vmaps k seeds at a time (chunked).
- ``host``: a Python loop over seeds, each calling the same compiled program. Needed on
  XLA:CPU for conv nets, where any while loop (``lax.map``/``lax.scan``) around a conv
  step makes it 10-50x slower.

``epochs_per_call`` sets how many epochs one compiled call runs (None = all, the whole
stage in one program); ``unroll`` unrolls the scan over batches (XLA:CPU needs it for
conv nets). ``auto_plan`` picks all three per model family and backend.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

SEED_STRATEGIES = ("vmap", "map", "host")


@dataclasses.dataclass(frozen=True)
class LoopPlan:
    """How a stage is executed (static; changing it recompiles).

    Attributes:
        seed_strategy: "vmap", "map" or "host" (see module docstring).
        map_batch_size: with "map", run this many seeds vmapped per map step (None = 1).
        epochs_per_call: epochs per compiled call (None = all epochs in one call).
        unroll: unroll factor of the scan over batches (True = fully unrolled).
        eval_chunk: rows per forward pass when predicting a whole split.
    """

    seed_strategy: str = "map"
    map_batch_size: int | None = None
    epochs_per_call: int | None = None
    unroll: int | bool = 1
    eval_chunk: int = 1024

    def __post_init__(self):
        if self.seed_strategy not in SEED_STRATEGIES:
            raise ValueError(f"seed_strategy must be one of {SEED_STRATEGIES}, got {self.seed_strategy!r}")
        if self.epochs_per_call is not None and self.epochs_per_call < 1:
            raise ValueError(f"epochs_per_call must be >= 1 or None, got {self.epochs_per_call}")
        if self.map_batch_size is not None and self.map_batch_size < 1:
            raise ValueError(f"map_batch_size must be >= 1 or None, got {self.map_batch_size}")
        if self.eval_chunk < 1:
            raise ValueError(f"eval_chunk must be >= 1, got {self.eval_chunk}")


def auto_plan(family: str, backend: str | None = None) -> LoopPlan:
    """The default plan for a model family ("conv", "dense", "recurrent") on a backend.

    Chosen from measurements (PERF_FACTS.md and benchmarks/RESULTS.md):
    - GPU/TPU, conv: sequential seeds in one program (vmap of convs is 2-18x slower).
    - GPU/TPU, dense/recurrent: vmap (4-10x the throughput of sequential seeds).
    - CPU, conv: host loop over seeds and epochs, batches unrolled (while loops around
      conv steps are 10-50x slower on XLA:CPU; vmap of convs 4x slower).
    - CPU, dense/recurrent: sequential seeds in one program (vmap gains nothing on two
      cores); epochs driven from the host so progress can be shown.
    """
    backend = backend or jax.default_backend()
    if backend == "cpu":
        if family == "conv":
            return LoopPlan(seed_strategy="host", epochs_per_call=1, unroll=True, eval_chunk=256)
        return LoopPlan(seed_strategy="map", epochs_per_call=1)
    if family == "conv":
        return LoopPlan(seed_strategy="map")
    return LoopPlan(seed_strategy="vmap")


def tree_index(tree: Any, i: int) -> Any:
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def tree_stack(trees: Sequence[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def num_seeds(tree: Any) -> int:
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        raise ValueError("per-seed arguments hold no arrays: cannot tell the number of seeds")
    return int(leaves[0].shape[0])


class SeedExecutor:
    """Applies ``fn(*per_seed, *shared)`` to stacked per-seed arguments under a plan.

    ``fn`` is a single-seed function; ``per_seed`` arguments carry a leading seed axis
    [S, ...]; ``shared`` arguments (the dataset) are the same for every seed and are never
    copied per seed. The compiled program is built once and reused across calls.

    Example:
        >>> run = SeedExecutor(lambda k, x: jax.random.normal(k) + x, LoopPlan("vmap"), 1)
        >>> run((jax.random.split(jax.random.key(0), 4),), (jnp.ones(()),)).shape
        (4,)
    """

    def __init__(self, fn: Callable, plan: LoopPlan, n_per_seed: int, static_argnums: tuple[int, ...] = ()):
        self.fn, self.plan, self.n_per_seed = fn, plan, n_per_seed
        if plan.seed_strategy == "host":
            self._single = jax.jit(fn)
            self._compiled = None
        elif plan.seed_strategy == "vmap":
            axes = (0,) * n_per_seed
            self._compiled = jax.jit(
                lambda per_seed, shared: jax.vmap(lambda *p: fn(*p, *shared), in_axes=axes)(*per_seed)
            )
        else:
            self._compiled = jax.jit(
                lambda per_seed, shared: jax.lax.map(
                    lambda p: fn(*p, *shared), per_seed, batch_size=plan.map_batch_size
                )
            )

    def __call__(self, per_seed: tuple, shared: tuple = ()) -> Any:
        if len(per_seed) != self.n_per_seed:
            raise ValueError(f"expected {self.n_per_seed} per-seed arguments, got {len(per_seed)}")
        if self._compiled is not None:
            return self._compiled(tuple(per_seed), tuple(shared))
        outs = [self._single(*tree_index(per_seed, i), *shared) for i in range(num_seeds(per_seed))]
        return tree_stack(outs)
