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

``devices`` splits the seed axis across that many devices (a 1-D mesh with axis
``"seeds"``, via ``jax.shard_map``): every device runs its block of S/devices seeds under
the strategy above, with the dataset replicated; no collective runs, the seeds being
independent. The seed count must be a multiple of ``devices`` (``devices_for`` picks the
most devices that divide it). Under "host" each seed runs exactly its one-device program,
so results are bitwise those of ``devices=1``; under "map"/"vmap" a program over S/devices
seeds may be fused differently, so results agree to float rounding (which training can
amplify, as it does between strategies on one device).
Under ``jax.distributed`` the mesh spans every process's devices.

``epochs_per_call`` sets how many epochs one compiled call runs (None = all, the whole
stage in one program); ``unroll`` unrolls the scan over batches (XLA:CPU needs it for
conv nets). ``auto_plan`` picks these per model family and backend, on all its devices.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

SEED_STRATEGIES = ("vmap", "map", "host")
SEED_AXIS = "seeds"
# Seed slots per compiled program under the CPU's "map" plan (``LoopPlan.map_block``):
# benchmarks/RESULTS.md measures the compiles it saves and what the block calls cost.
CPU_MAP_BLOCK = 4


@dataclasses.dataclass(frozen=True)
class LoopPlan:
    """How a stage is executed (static; changing it recompiles).

    Attributes:
        seed_strategy: "vmap", "map" or "host" (see module docstring).
        map_batch_size: with "map", run this many seeds vmapped per map step (None = 1).
        map_block: with "map" on one device, compile each program for this many seed
            slots and run a call over more slots block by block (the last block padded
            with copies of its last slot, dropped): every call of S >= ``map_block`` slots
            then runs one program, whatever S (a tuning group of 28 slots, a score of 8,
            a study of 10), so those programs are compiled once and loaded from the compile
            cache afterwards. Seeds run in sequence under "map" anyway, so a block costs what
            its slots cost; results are bitwise those of one call over all S (a scan over 2 or
            more seeds rounds as a longer one does). None: one program per slot count.
        epochs_per_call: at most this many epochs per compiled call (None = all epochs
            in one call). A phase of E epochs runs ``calls_of(E)`` epochs per call: the
            largest divisor of E up to this, so every call of a phase is one program.
        unroll: unroll factor of the scan over batches (True = fully unrolled).
        rows_as_data: a phase's row-set size (its retain or forget rows) is read when the
            program runs, so every forget set of a task shares the phase's programs (the
            original and the retrained model's among them): the steps run in a loop whose
            trip count is data, over an index matrix sized for every used row. The steps and
            their shuffles are bit for bit those of a program compiled for the count
            (``train.loop.prefix_permutation``). Only with ``unroll`` 1: an unrolled loop
            needs its trip count when it compiles, so ``unroll`` > 1 or True compiles the
            counts in (``counts_in_program``), as False does.
        eval_chunk: rows per forward pass when predicting a whole split.
        devices: split the seed axis across the first ``devices`` devices (1 = the
            default device only).
    """

    seed_strategy: str = "map"
    map_batch_size: int | None = None
    map_block: int | None = None
    epochs_per_call: int | None = None
    unroll: int | bool = 1
    rows_as_data: bool = True
    eval_chunk: int = 1024
    devices: int = 1

    @property
    def counts_in_program(self) -> bool:
        """Whether a phase's row-set sizes are compiled into its programs (``rows_as_data``)."""
        return not self.rows_as_data or self.unroll is True or self.unroll > 1

    def calls_of(self, epochs: int) -> int:
        """Epochs per call for a phase of ``epochs`` epochs: all of them when
        ``epochs_per_call`` is None, else the largest divisor of ``epochs`` that is at most
        ``epochs_per_call`` (so no call runs fewer epochs than the others, which would
        compile a second program)."""
        if self.epochs_per_call is None or self.epochs_per_call >= epochs:
            return epochs
        return max(d for d in range(1, self.epochs_per_call + 1) if epochs % d == 0)

    def __post_init__(self):
        if self.seed_strategy not in SEED_STRATEGIES:
            raise ValueError(f"seed_strategy must be one of {SEED_STRATEGIES}, got {self.seed_strategy!r}")
        if self.epochs_per_call is not None and self.epochs_per_call < 1:
            raise ValueError(f"epochs_per_call must be >= 1 or None, got {self.epochs_per_call}")
        if self.map_batch_size is not None and self.map_batch_size < 1:
            raise ValueError(f"map_batch_size must be >= 1 or None, got {self.map_batch_size}")
        if self.map_block is not None and (isinstance(self.map_block, bool) or self.map_block < 2):
            raise ValueError(
                f"map_block must be >= 2 or None, got {self.map_block!r} (a one-slot scan may round "
                "differently from a longer one)"
            )
        if self.eval_chunk < 1:
            raise ValueError(f"eval_chunk must be >= 1, got {self.eval_chunk}")
        if not isinstance(self.devices, int) or self.devices < 1:
            raise ValueError(f"devices must be a positive integer, got {self.devices!r}")


def auto_plan(family: str, backend: str | None = None) -> LoopPlan:
    """The default plan for a model family ("conv", "dense", "recurrent") on a backend.

    Chosen from measurements (PERF_FACTS.md and benchmarks/RESULTS.md):
    - GPU/TPU, conv: sequential seeds in one program (vmap of convs is 2-18x slower; on an
      H200 AllCNN, 2.4x in fp32 and 1.8x in bf16 per seed, while "map" costs one seed's time).
    - GPU/TPU, dense/recurrent: vmap (3-13x the throughput of sequential seeds on an H200).
    - CPU, conv: host loop over seeds and epochs, batches unrolled (while loops around
      conv steps are 10-50x slower on XLA:CPU; vmap of convs 4x slower).
    - CPU, dense/recurrent: sequential seeds in one program (vmap gains nothing on two
      cores); epochs driven from the host so progress can be shown; programs compiled for
      blocks of ``CPU_MAP_BLOCK`` seed slots, so calls of any larger slot count share them.

    Every plan spreads the seeds over all of the backend's devices (``devices``).
    """
    backend = backend or jax.default_backend()
    try:
        devices = jax.device_count(backend)
    except RuntimeError:  # a plan for a backend this process has not initialised
        devices = 1
    if backend == "cpu":
        if family == "conv":
            return LoopPlan(seed_strategy="host", epochs_per_call=1, unroll=True, eval_chunk=256, devices=devices)
        return LoopPlan(seed_strategy="map", epochs_per_call=1, map_block=CPU_MAP_BLOCK, devices=devices)
    if family == "conv":
        return LoopPlan(seed_strategy="map", devices=devices)
    return LoopPlan(seed_strategy="vmap", devices=devices)


def tree_index(tree: Any, i: int) -> Any:
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def tree_stack(trees: Sequence[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


def abstract_seeds(tree: Any, seeds: int | None) -> Any:
    """``jax.ShapeDtypeStruct`` leaves of ``tree`` with the leading seed axis set to
    ``seeds`` (None: removed, one seed's shapes)."""

    def one(a):
        shape = tuple(a.shape[1:]) if seeds is None else (seeds, *a.shape[1:])
        return jax.ShapeDtypeStruct(shape, a.dtype)

    return jax.tree_util.tree_map(one, tree)


def tree_bytes(tree: Any) -> int:
    """Bytes of every array leaf of ``tree`` (concrete or abstract)."""
    return int(
        sum(
            np.prod(a.shape, dtype=np.int64) * np.dtype(a.dtype).itemsize
            for a in jax.tree_util.tree_leaves(tree)
            if not jnp.issubdtype(a.dtype, jax.dtypes.prng_key)
        )
        + sum(
            np.prod(a.shape, dtype=np.int64) * 8
            for a in jax.tree_util.tree_leaves(tree)
            if jnp.issubdtype(a.dtype, jax.dtypes.prng_key)
        )
    )


def num_seeds(tree: Any) -> int:
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        raise ValueError("per-seed arguments hold no arrays: cannot tell the number of seeds")
    return int(leaves[0].shape[0])


def seed_mesh(devices: int) -> jax.sharding.Mesh:
    """A 1-D mesh with axis ``"seeds"`` over the first ``devices`` of ``jax.devices()``.

    Raises:
        ValueError: fewer devices exist (the message lists them).
    """
    available = jax.devices()
    if devices > len(available):
        raise ValueError(
            f"the plan splits seeds across {devices} devices, but only {len(available)} exist: "
            f"{[str(d) for d in available]}"
        )
    return jax.make_mesh(
        (devices,), (SEED_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=available[:devices]
    )


def devices_for(seeds: int, available: int | None = None) -> int:
    """The most devices, at most ``available`` (default: all), that split ``seeds`` evenly."""
    available = jax.device_count() if available is None else available
    return max(d for d in range(1, min(seeds, available) + 1) if seeds % d == 0)


def to_host(x: Any) -> np.ndarray:
    """``x`` as one NumPy array, on every process: an array split across processes (under
    ``jax.distributed``) is gathered from all of them, so all must call this together."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def _to_sharding(leaf: Any, sharding: NamedSharding) -> jax.Array:
    if isinstance(leaf, jax.Array) and leaf.sharding.is_equivalent_to(sharding, leaf.ndim):
        return leaf
    if sharding.is_fully_addressable:
        return jax.device_put(leaf, sharding)
    # across processes: every process holds the same value and keeps the blocks it owns
    if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        data = _to_sharding(jax.random.key_data(leaf), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
    host = to_host(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def to_global(tree: Any, sharding: NamedSharding) -> Any:
    """Every leaf of ``tree`` laid out as ``sharding`` (no copy where it already is). With
    several processes, each passes the same values and keeps the blocks it owns."""
    return jax.tree_util.tree_map(lambda leaf: _to_sharding(leaf, sharding), tree)


def take_seeds(tree: Any, slots: np.ndarray) -> Any:
    """Seed slots ``slots`` [T] of every leaf [S, ...] -> [T, ...]: on the device for a leaf
    held by one accelerator (no host round trip), with NumPy for a leaf held by one CPU
    device (the host is that device: no gather program is compiled for each leaf shape and
    slot count), on the host for a leaf split across devices (so no cross-device program
    runs) or already on the host. Typed PRNG keys stay keys. The result is placed by
    ``place_seeds`` or by the ``SeedExecutor`` it is passed to."""
    slots = np.asarray(slots)
    on_device = None

    def take(leaf):
        nonlocal on_device
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(
                jnp.asarray(take(jax.random.key_data(leaf))), impl=jax.random.key_impl(leaf)
            )
        if isinstance(leaf, jax.Array) and len(leaf.sharding.device_set) == 1:
            device: Any = next(iter(leaf.sharding.device_set))
            if device.platform == "cpu":
                picked = np.asarray(leaf)[slots]
                return jnp.asarray(picked) if device == jax.devices("cpu")[0] else jax.device_put(picked, device)
            if on_device is None:
                on_device = jnp.asarray(slots)
            return leaf[on_device]
        return to_host(leaf)[slots]

    return jax.tree_util.tree_map(take, tree)


def place_seeds(tree: Any, plan: LoopPlan) -> Any:
    """Leaves [S, ...] on the devices as the plan keeps per-seed values: split along the
    seed axis over its mesh, or on the default device."""
    if plan.devices == 1:
        return jax.device_put(tree)
    return to_global(tree, NamedSharding(seed_mesh(plan.devices), PartitionSpec(SEED_AXIS)))


def seed_split(abstract: Any, plan: LoopPlan) -> Any:
    """``jax.ShapeDtypeStruct`` leaves [S, ...] given the plan's seed-axis split (a restore
    target: each device reads only its seeds); unchanged for one device."""
    if plan.devices == 1:
        return abstract
    split = NamedSharding(seed_mesh(plan.devices), PartitionSpec(SEED_AXIS))
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=split), abstract)


def replicate(tree: Any, plan: LoopPlan) -> Any:
    """``tree`` with a copy on every device of the plan's mesh (unchanged for one device)."""
    if plan.devices == 1:
        return tree
    return to_global(tree, NamedSharding(seed_mesh(plan.devices), PartitionSpec()))


def _over_local_seeds(fn: Callable, plan: LoopPlan) -> Callable:
    """``(per_seed [s, ...], shared) -> out [s, ...]``: ``fn`` over the seeds a program holds
    ("vmap" batches them, "map" runs them in sequence)."""
    if plan.seed_strategy == "vmap":

        def over_seeds(per_seed, shared):
            return jax.vmap(lambda *p: fn(*p, *shared))(*per_seed)
    else:

        def over_seeds(per_seed, shared):
            return jax.lax.map(lambda p: fn(*p, *shared), per_seed, batch_size=plan.map_batch_size)

    # Named after ``fn``, so compile logs, profiles and XLA dumps say which program it is.
    over_seeds.__name__ = over_seeds.__qualname__ = f"{getattr(fn, '__name__', 'fn')}_{plan.seed_strategy}"
    return over_seeds


def _map_in_place(fn: Callable, donated: tuple, kept: tuple, shared: tuple) -> Any:
    """``fn`` over the seeds in sequence (as "map"), writing each seed's first ``len(donated)``
    outputs over its donated inputs, so a donated carry exists once. (``lax.map`` stacks its
    outputs into new buffers, so the carry would exist twice however it is donated.)

    ``fn``'s output is a tuple whose first ``len(donated)`` elements have the donated
    arguments' structure, shapes and dtypes; the rest are stacked, as ``lax.map`` stacks them.
    """
    k = len(donated)

    def body(carried, inputs):
        i, kept_i = inputs
        mine = tree_index(carried, i)
        out = fn(*mine, *kept_i, *shared)
        message = "a donated argument must come back as the same leading output (structure, shapes, dtypes)"
        try:
            same = isinstance(out, tuple) and all(
                jax.tree_util.tree_leaves(
                    jax.tree_util.tree_map(lambda o, m: (o.shape, o.dtype) == (m.shape, m.dtype), tuple(out[:k]), mine)
                )
            )
        except ValueError as err:  # another tree structure
            raise ValueError(message) from err
        if not same:
            raise ValueError(message)
        put = functools.partial(jax.lax.dynamic_update_index_in_dim, index=i, axis=0)
        return jax.tree_util.tree_map(put, carried, tuple(out[:k])), tuple(out[k:])

    carried, stacked = jax.lax.scan(body, donated, (jnp.arange(num_seeds(donated)), kept))
    return (*carried, *stacked)


def _leaf_to_host(leaf: Any) -> tuple[np.ndarray, Any]:
    """(the leaf's values as NumPy, its PRNG key implementation or None)."""
    if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return to_host(jax.random.key_data(leaf)), jax.random.key_impl(leaf)
    return to_host(leaf), None


def _leaf_from_host(values: Any, impl: Any) -> Any:
    return values if impl is None else jax.random.wrap_key_data(values, impl=impl)


def split_blocks(tree: Any, block: int) -> list[Any]:
    """Leaves [S, ...] -> ceil(S / block) trees of leaves [block, ...], slots in order, the
    last padded with copies of slot S - 1 (``take_seeds``: through host memory on the CPU,
    where ``map_block`` is used): no program is compiled for any S, and every block's arrays are
    placed alike, so the block's program is the same compiled one for every call."""
    seeds = num_seeds(tree)
    return [
        take_seeds(tree, np.minimum(np.arange(start, start + block), seeds - 1)) for start in range(0, seeds, block)
    ]


def merge_blocks(blocks: list[Any], seeds: int) -> Any:
    """The inverse of ``split_blocks``: leaves [S, ...] (on the default device) from the
    blocks' [block, ...]."""
    leaves = [jax.tree_util.tree_flatten(b)[0] for b in blocks]
    treedef = jax.tree_util.tree_structure(blocks[0])
    merged = []
    for parts in zip(*leaves, strict=True):
        host = [_leaf_to_host(p) for p in parts]
        values = np.concatenate([v for v, _ in host])[:seeds]
        merged.append(_leaf_from_host(jnp.asarray(values), host[0][1]))
    return jax.tree_util.tree_unflatten(treedef, merged)


def _local_blocks(tree: Any) -> dict[Any, Any]:
    """{device: ``tree`` with each leaf's block on that device}, for this process's devices."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    by_device: dict[Any, list] = {}
    for leaf in leaves:
        for shard in leaf.addressable_shards:
            by_device.setdefault(shard.device, []).append(shard.data)
    return {device: jax.tree_util.tree_unflatten(treedef, parts) for device, parts in by_device.items()}


class SeedExecutor:
    """Applies ``fn(*per_seed, *shared)`` to stacked per-seed arguments under a plan.

    ``fn`` is a single-seed function; ``per_seed`` arguments carry a leading seed axis
    [S, ...]; ``shared`` arguments (the dataset) are the same for every seed and are never
    copied per seed (with ``plan.devices > 1``, one replica per device). The compiled
    program is built once and reused across calls. Outputs carry the seed axis [S, ...].

    With a mesh (``plan.devices > 1``) device d holds seeds [d*S/D, (d+1)*S/D): S must be a
    multiple of D. No cross-device collective is ever run (XLA:CPU's host-device
    collectives can deadlock, and none is needed). "vmap" and "map" run one ``shard_map``
    program; "host" dispatches the single-seed program to the device that holds each seed
    (asynchronously, so the devices run at once): every seed runs exactly the program it
    runs on one device, so "host" results are bitwise those of ``devices=1``.

    ``donate``: the first this many per-seed arguments are donated to the call (their
    buffers may hold its outputs, e.g. an epoch loop's carry), so they exist once, not twice,
    while it runs; the caller must not read them afterwards, nor pass arrays another value
    still holds (a jitted function may return an unchanged input as it is: copy such a carry
    first, as ``runner._PhaseDriver``'s begin does).

    Example:
        >>> run = SeedExecutor(lambda k, x: jax.random.normal(k) + x, LoopPlan("vmap"), 1)
        >>> run((jax.random.split(jax.random.key(0), 4),), (jnp.ones(()),)).shape
        (4,)
    """

    def __init__(self, fn: Callable, plan: LoopPlan, n_per_seed: int, donate: int = 0):
        if not 0 <= donate <= n_per_seed:
            raise ValueError(f"donate must be between 0 and n_per_seed={n_per_seed}, got {donate}")
        self.fn, self.plan, self.n_per_seed, self.donate = fn, plan, n_per_seed, donate
        self.host = plan.seed_strategy == "host"
        self.mesh = seed_mesh(plan.devices) if plan.devices > 1 else None
        # "map" on one device: programs of ``map_block`` slots, called block by block
        self.block = plan.map_block if plan.seed_strategy == "map" and self.mesh is None else None
        if self.host:  # the single-seed program itself, once per seed (on the seed's device)
            self._program = jax.jit(fn, donate_argnums=tuple(range(donate)))
            return
        over_seeds = _over_local_seeds(fn, plan)
        in_place = donate and plan.seed_strategy == "map" and plan.map_batch_size is None

        def program(donated, kept, shared):  # the donated per-seed arguments come apart
            if in_place:
                return _map_in_place(fn, donated, kept, shared)
            return over_seeds(donated + kept, shared)

        program.__name__ = program.__qualname__ = over_seeds.__name__
        self._local = jax.jit(program, donate_argnums=(0,) if donate else ())
        if self.mesh is None:
            self._program = self._local
        else:
            split = PartitionSpec(SEED_AXIS)
            self._program = jax.jit(
                jax.shard_map(
                    program, mesh=self.mesh, in_specs=(split, split, PartitionSpec()), out_specs=split, check_vma=False
                ),
                donate_argnums=(0,) if donate else (),
            )

    def place_shared(self, shared: tuple) -> tuple:
        """Shared arguments replicated on every device of the mesh (no copy where they
        already are; unchanged without a mesh)."""
        return tuple(replicate(tuple(shared), self.plan))

    def place_per_seed(self, per_seed: tuple) -> tuple:
        """Per-seed arguments split over the mesh's devices along the seed axis (no copy
        where they already are; unchanged without a mesh).

        Raises:
            ValueError: the seed count is not a multiple of the number of devices.
        """
        if self.mesh is None:
            return tuple(per_seed)
        seeds = num_seeds(per_seed)
        if seeds % self.plan.devices:
            raise ValueError(
                f"{seeds} seeds cannot be split evenly across {self.plan.devices} devices: use a "
                f"seed count that is a multiple of {self.plan.devices}, or fewer devices"
            )
        return to_global(tuple(per_seed), NamedSharding(self.mesh, PartitionSpec(SEED_AXIS)))

    def lower(self, per_seed: tuple, shared: tuple = ()) -> jax.stages.Lowered:
        """The compiled program lowered for these arguments (for "host": seed 0's), for
        XLA's cost and memory analyses; compiling it again hits the in-memory cache."""
        per_seed, shared = tuple(per_seed), tuple(shared)
        if self.host:
            return self._program.lower(*tree_index(per_seed, 0), *shared)
        if self.block is not None and self._blocks(per_seed) > 1:  # the program every block runs
            per_seed = split_blocks(per_seed, self.block)[0]
        return self._program.lower(*self._split(self.place_per_seed(per_seed)), self.place_shared(shared))

    def _blocks(self, per_seed: tuple) -> int:
        """How many blocks a call over ``per_seed``'s slots runs (1: one call, no blocks)."""
        if self.block is None:
            return 1
        seeds = num_seeds(per_seed)
        return 1 if seeds <= self.block else -(-seeds // self.block)

    def _split(self, per_seed: tuple) -> tuple[tuple, tuple]:
        """(donated, kept) per-seed arguments: the first ``donate`` of them, the rest."""
        return tuple(per_seed[: self.donate]), tuple(per_seed[self.donate :])

    def planned(self, per_seed: tuple, shared: tuple = ()) -> tuple[int | None, Any]:
        """(peak bytes XLA plans for one device's call, the outputs' abstract values) for
        abstract per-seed arguments ``per_seed`` (``jax.ShapeDtypeStruct`` leaves [S, ...],
        S the seeds one device holds). Compiles, never runs: on one device the program is
        the one ``__call__`` then reuses; on a mesh, the per-device program's equal."""
        from jaxunlearn.memory import compiled_bytes

        per_seed, shared = tuple(per_seed), tuple(shared)
        if self.host:  # one seed's program at a time; the S outputs are kept
            one = abstract_seeds(per_seed, None)
            out = jax.eval_shape(self._program, *one, *shared)
            used = compiled_bytes(self._program.lower(*one, *shared).compile())
            seeds = num_seeds(per_seed)
            stacked = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct((seeds, *a.shape), a.dtype), out)
            return (None if used is None else used + (seeds - 1) * tree_bytes(out)), stacked
        blocks = self._blocks(per_seed)
        if blocks > 1:  # one block's program; every block's outputs are kept until merged
            seeds = num_seeds(per_seed)
            block = abstract_seeds(per_seed, self.block)
            used, out = self.planned(block, shared)
            stacked = abstract_seeds(out, seeds)
            return (None if used is None else used + (blocks - 1) * tree_bytes(out)), stacked
        out = jax.eval_shape(self._local, *self._split(per_seed), shared)
        return compiled_bytes(self._local.lower(*self._split(per_seed), shared).compile()), out

    def __call__(self, per_seed: tuple, shared: tuple = ()) -> Any:
        if len(per_seed) != self.n_per_seed:
            raise ValueError(f"expected {self.n_per_seed} per-seed arguments, got {len(per_seed)}")
        per_seed, shared = tuple(per_seed), tuple(shared)
        if self._blocks(per_seed) > 1:
            return self._by_blocks(per_seed, shared)
        if not self.host:
            return self._program(*self._split(self.place_per_seed(per_seed)), self.place_shared(shared))
        if self.mesh is None:
            return tree_stack([self._program(*tree_index(per_seed, i), *shared) for i in range(num_seeds(per_seed))])
        return self._host_on_mesh(per_seed, shared)

    def _by_blocks(self, per_seed: tuple, shared: tuple) -> Any:
        """The call over S slots as ceil(S / block) calls of the block's program (the last
        block padded with copies of the last slot); outputs [S, ...] as one call gives."""
        assert self.block is not None  # only a blocked executor comes here
        seeds = num_seeds(per_seed)
        blocks = split_blocks(per_seed, self.block)
        # The donated arguments now live on in their blocks (donated in turn): free them, as
        # donating them to one call would (the caller may not read them again).
        for leaf in jax.tree_util.tree_leaves(per_seed[: self.donate]):
            if isinstance(leaf, jax.Array):
                leaf.delete()
        del per_seed
        outs = [self._program(*self._split(block), shared) for block in blocks]
        return merge_blocks(outs, seeds)

    def _host_on_mesh(self, per_seed: tuple, shared: tuple) -> Any:
        """Each seed's single-seed call on the device that holds it; the outputs are put
        together, block by block, into arrays split over the mesh (nothing moves)."""
        assert self.mesh is not None  # __call__ comes here only with a mesh
        seeds = num_seeds(per_seed)
        blocks = _local_blocks(self.place_per_seed(per_seed))
        shared_on = _local_blocks(self.place_shared(shared)) if jax.tree_util.tree_leaves(shared) else {}
        devices = [d for d in self.mesh.devices.flat if d in blocks]
        outs: dict[Any, list] = {d: [] for d in devices}
        for j in range(seeds // self.plan.devices):  # round j: every device's j-th seed, dispatched async
            for d in devices:
                outs[d].append(self._program(*tree_index(blocks[d], j), *shared_on.get(d, shared)))
        split = NamedSharding(self.mesh, PartitionSpec(SEED_AXIS))
        return jax.tree_util.tree_map(
            lambda *parts: jax.make_array_from_single_device_arrays((seeds, *parts[0].shape[1:]), split, list(parts)),
            *[tree_stack(outs[d]) for d in devices],
        )
