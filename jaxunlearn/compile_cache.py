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
    return folder
