"""How many models fit one device: memory budgets and compiled programs' footprints.

A stage over S seeds is one compiled program per phase step (``jaxunlearn.runner``).
XLA reports, for a compiled program, the bytes of its arguments, outputs and temporaries
(``Compiled.memory_analysis()``) without running it. ``chunk_size`` uses that to choose the
largest number of seeds per call whose program fits a byte budget, so a stage of any
size runs in chunks instead of failing with an out-of-memory error.

Budgets: ``device_budget`` is what the first device can still hold (an accelerator's
``memory_stats``; on the CPU, the host's available memory), times a safety fraction.
``JAXUNLEARN_MEMORY_LIMIT`` (or an explicit limit, e.g. "2GB") overrides it: a small
forced limit is how chunking is tested on a CPU.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import jax

MEMORY_LIMIT_ENV = "JAXUNLEARN_MEMORY_LIMIT"
# Fraction of a device's free memory a program may plan to use: XLA's own estimates omit
# allocator fragmentation and the buffers other stages still hold.
SAFETY_FRACTION = 0.8
_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kb": 2**10,
    "kib": 2**10,
    "m": 2**20,
    "mb": 2**20,
    "mib": 2**20,
    "g": 2**30,
    "gb": 2**30,
    "gib": 2**30,
    "t": 2**40,
    "tb": 2**40,
    "tib": 2**40,
}


def parse_bytes(text: str | int) -> int:
    """ "512MB", "2 GiB", "1e9", 4096 -> bytes (binary units: 1 GB = 2**30 bytes)."""
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9.eE+]+)\s*([a-zA-Z]*)\s*", str(text))
        if not match or match.group(2).lower() not in _UNITS:
            raise ValueError(f"a memory size looks like 512MB, 2GiB or a number of bytes, got {text!r}")
        try:
            value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
        except ValueError as err:
            raise ValueError(f"a memory size looks like 512MB, 2GiB or a number of bytes, got {text!r}") from err
    if value < 1:
        raise ValueError(f"a memory size must be positive, got {text!r}")
    return value


def _host_available_bytes() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def device_budget(limit: str | int | None = None, device: jax.Device | None = None) -> int:
    """Bytes one program may plan to use on ``device`` (default: the first device).

    ``limit`` (or the ``JAXUNLEARN_MEMORY_LIMIT`` environment variable) is used as given;
    otherwise the device's free memory (``memory_stats``: bytes_limit - bytes_in_use; on
    a CPU, the host's available memory) times ``SAFETY_FRACTION``.
    """
    limit = limit if limit is not None else os.environ.get(MEMORY_LIMIT_ENV) or None
    if limit is not None:
        return parse_bytes(limit)
    device = device or jax.devices()[0]
    stats = None
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 (some backends do not implement it)
        stats = None
    if stats and "bytes_limit" in stats:
        free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    else:
        free = _host_available_bytes()
    return int(free * SAFETY_FRACTION)


def compiled_bytes(compiled: jax.stages.Compiled) -> int | None:
    """Peak bytes XLA plans for one call of ``compiled``: arguments + outputs (less the
    buffers they share) + temporaries + generated code. None when the backend reports
    nothing."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 (backends without a memory analysis raise various errors)
        return None
    if m is None:
        return None
    used = (
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        - m.alias_size_in_bytes
        + m.temp_size_in_bytes
        + getattr(m, "generated_code_size_in_bytes", 0)
    )
    return int(used)


def chunk_size(count: int, bytes_for: Callable[[int], int | None], budget: int) -> tuple[int, int | None]:
    """The largest number of seeds per call, at most ``count``, whose programs fit ``budget``.

    Args:
        count: the seeds the stage must run.
        bytes_for: seeds per call -> the peak bytes of the stage's largest program at that
            size (compiling, not running, it), or None when unknown.
        budget: bytes available.

    Returns:
        (seeds per call, the planned peak bytes at that size or None if unknown). The full
        count is tried first (no extra compile when it fits); otherwise the size follows
        from the linear fit between 1 seed and ``count`` seeds, checked, and halved until it
        fits. One seed is returned even when it does not fit (nothing smaller exists); the
        run may then fail, and the caller says so.
    """
    full = bytes_for(count)
    if full is None or full <= budget or count == 1:
        return count, full
    one = bytes_for(1)
    if one is None:
        return count, full
    if one > budget:
        return 1, one
    per_seed = max((full - one) / (count - 1), 1.0)
    size = max(1, min(count - 1, int((budget - one) / per_seed) + 1))
    while size > 1:
        planned = bytes_for(size)
        if planned is None or planned <= budget:
            return size, planned
        size //= 2
    return 1, one


def format_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
