"""The persistent XLA compile cache that studies and evaluations turn on by default.

XLA compiles dominate a small study's time on the CPU; with the cache on disk, a program
compiled once (by any earlier run with the same code, shapes, flags and jax version) is
loaded instead. The command line, ``run_study`` and ``run_evaluation`` all call
:func:`enable` (the last two unless ``compile_cache=False``).

Where: ``JAXUNLEARN_CACHE_DIR`` if set (``off`` disables), else a folder the process already
gave ``jax.config.jax_compilation_cache_dir`` (kept as it is), else
``~/.cache/jaxunlearn/xla``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "default_dir", "enable"]

CACHE_ENV = "JAXUNLEARN_CACHE_DIR"


def default_dir() -> Path:
    """``~/.cache/jaxunlearn/xla``."""
    return Path.home() / ".cache" / "jaxunlearn" / "xla"


def enable() -> str | None:
    """Turns the persistent compile cache on (see the module's docstring for where).

    Returns:
        The cache folder in use, or None when it is off (``JAXUNLEARN_CACHE_DIR=off`` and no
        folder set by the process itself).
    """
    import jax

    chosen = os.environ.get(CACHE_ENV)
    current = getattr(jax.config, "jax_compilation_cache_dir")  # noqa: B009 (jax types no such attribute)
    if chosen == "off":
        return current or None
    if chosen is None and current:
        return current
    folder = chosen or str(default_dir())
    if folder != current:
        jax.config.update("jax_compilation_cache_dir", folder)
        keep_small_programs()
    return folder


# JAX's default: only programs that took at least this long to compile are written.
_JAX_MIN_COMPILE_SECONDS = 1.0


def keep_small_programs() -> None:
    """Writes every program to the cache, not only those that took 1 s or more to compile
    (JAX's default), unless the process chose its own threshold (in ``jax.config`` or
    JAX's environment variable ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``). A study's programs mostly
    compile in 0.1-1 s each, and together they were most of a repeated study's compile time:
    the default study's repeat spent 5.7 s compiling 16 such programs again (2 seeds, the
    2-core CPU), 0.7 s loading them once they were kept."""
    import jax

    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" in os.environ:
        return
    threshold = getattr(jax.config, "jax_persistent_cache_min_compile_time_secs")  # noqa: B009 (untyped in jax)
    if threshold == _JAX_MIN_COMPILE_SECONDS:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
