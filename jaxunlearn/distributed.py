"""One study across several processes (hosts), with JAX's multi-controller runtime.

Every process runs the same program (``jaxunlearn run --distributed`` on each host). After
``initialize``, ``jax.devices()`` lists every process's devices; the seed mesh
(``jaxunlearn.seeds``) spans them, each process computes the seeds its devices own, and
results are gathered to every process (``seeds.to_host``) for the metrics. Only the main
process (index 0) prints and writes files.

    $ jaxunlearn run --distributed ...          # SLURM, Open MPI, Kubernetes, Cloud TPU
    $ jaxunlearn run --coordinator host0:1234 --num-processes 2 --process-id 0 ...

Checkpoints need a file system that every process sees: all processes write their blocks
through orbax and the main process commits the stage.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None) -> None:
    """Joins the run: ``jax.distributed.initialize`` with the given settings, the rest
    detected from the cluster environment. Must run before anything uses a JAX backend.

    CPU processes exchange results through gloo (the GPU and TPU backends have their own).
    """
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)


def is_main_process() -> bool:
    """True on the process that prints and writes the study's outputs (index 0)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Waits until every process reaches the barrier called ``name`` (no-op alone)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def same_on_every_process(values: np.ndarray) -> np.ndarray:
    """The main process's ``values`` (an int64 array), given to every process."""
    if jax.process_count() == 1:
        return values
    return np.asarray(multihost_utils.broadcast_one_to_all(values))
