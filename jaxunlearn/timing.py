"""Wall-clock timing that separates XLA compilation from execution.

JAX reports every trace, lowering and backend compilation through ``jax.monitoring``; one
process-wide listener accumulates those durations, and ``Stopwatch`` reads the difference
over a block. ``run`` = wall - compile.
"""

from __future__ import annotations

import time

import jax

_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_compile_seconds = [0.0]
_registered = [False]


def _listener(event: str, duration_secs: float, **kwargs: str | int) -> None:
    if event in _COMPILE_EVENTS:
        _compile_seconds[0] += duration_secs


def _ensure_listener() -> None:
    if not _registered[0]:
        jax.monitoring.register_event_duration_secs_listener(_listener)
        _registered[0] = True


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.wall``, ``sw.compile``, ``sw.run`` (seconds).

    The block must end with its results ready (``jax.block_until_ready``).
    """

    def __enter__(self) -> Stopwatch:
        _ensure_listener()
        self._c0 = _compile_seconds[0]
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._t0
        self.compile = min(_compile_seconds[0] - self._c0, self.wall)
        self.run = self.wall - self.compile
