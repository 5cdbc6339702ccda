"""What a result's last bits depend on: the CPU, its instruction sets, the BLAS kernel, XLA's
settings and threads, and every package version.

Two runs of the same code and seed give bitwise identical numbers only when all of these
agree (docs/REPRODUCIBILITY.md): numpy/scipy's BLAS picks its kernel by the CPU and each
kernel sums in its own order; XLA:CPU generates code for the host CPU's instruction sets
and splits work over a thread pool sized by the cores the process may use. ``/proc/cpuinfo``'s
model name alone cannot tell two CPU generations apart ("AMD EPYC" on both Zen 3 and Zen 4
here), so the family/model numbers and the ISA flags are recorded too.

Host-side and cheap: no JAX import (the thread count is the one XLA:CPU sizes its pool by).
"""

from __future__ import annotations

import importlib.metadata as _md
import os
import platform
from pathlib import Path
from typing import Any

__all__ = [
    "ISA_FLAGS",
    "blas_description",
    "cpu_description",
    "machine_description",
    "machine_differences",
    "package_versions",
    "xla_description",
]

# The instruction-set extensions that change which kernels XLA:CPU and the BLAS run (x86-64
# names as in /proc/cpuinfo; "asimd"/"sve" for aarch64).
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512dq",
    "avx512bw",
    "avx512vl",
    "avx512cd",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "asimd",
    "sve",
)

# The cpuinfo fields that identify a CPU beyond its model name.
_CPUINFO_FIELDS = {
    "vendor_id": "vendor",
    "model name": "model_name",
    "cpu family": "family",
    "model": "model",
    "stepping": "stepping",
    "CPU implementer": "implementer",
    "CPU part": "part",
}


def _first_cpuinfo_block(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def cpu_description(cpuinfo: str | None = None) -> dict[str, Any]:
    """The host CPU: ``arch``, ``vendor``, ``model_name``, ``family``, ``model``, ``stepping``
    (x86) or ``implementer``/``part`` (ARM), and ``isa``, the sorted :data:`ISA_FLAGS` it has.

    Args:
        cpuinfo: the text of /proc/cpuinfo (read from the machine when None; outside Linux
            only ``arch`` and ``model_name`` from :mod:`platform`).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    block = _first_cpuinfo_block(cpuinfo)
    out: dict[str, Any] = {"arch": platform.machine()}
    for key, name in _CPUINFO_FIELDS.items():
        if key in block:
            out[name] = block[key]
    out.setdefault("model_name", platform.processor() or platform.machine())
    flags = set((block.get("flags") or block.get("Features") or "").split())
    out["isa"] = [flag for flag in ISA_FLAGS if flag in flags]
    return out


def blas_description() -> list[dict[str, Any]]:
    """The BLAS libraries numpy and scipy loaded, as threadpoolctl reports them: ``library``
    (e.g. "openblas"), ``version``, ``kernel`` (the CPU kernel it chose, e.g. "Haswell",
    "SkylakeX"), ``threading`` and ``threads``. Empty when threadpoolctl is not installed."""
    try:
        import numpy  # noqa: F401  (loads numpy's BLAS)
        import scipy.linalg  # noqa: F401  (loads scipy's, which may be another copy)
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    out = []
    for lib in threadpool_info():
        if lib.get("user_api") != "blas":
            continue
        out.append(
            {
                "library": lib.get("internal_api"),
                "version": lib.get("version"),
                "kernel": lib.get("architecture"),
                "threading": lib.get("threading_layer"),
                "threads": lib.get("num_threads"),
                "file": Path(lib.get("filepath", "")).name,
            }
        )
    return sorted(out, key=lambda d: d["file"])


def cpu_cores() -> int:
    """The cores this process may run on: XLA:CPU sizes its thread pool by them, and the way
    it splits work between threads changes the float rounding (a study run on 1 core differs
    from the same study on 2)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def xla_description() -> dict[str, Any]:
    """XLA's settings that move CPU results: ``flags`` (the XLA_FLAGS environment variable, as
    the backend read it at start-up if it has started) and ``cpu_threads`` (the size of XLA:CPU's
    intra-op thread pool: the cores this process may use)."""
    return {"flags": os.environ.get("XLA_FLAGS", ""), "cpu_threads": cpu_cores()}


def package_versions() -> dict[str, str]:
    """Every installed distribution's version, by lower-case name (sorted)."""
    versions = {}
    for dist in _md.distributions():
        name = dist.name  # None for a broken install
        if name:
            versions[name.lower()] = dist.version
    return dict(sorted(versions.items()))


def machine_description() -> dict[str, Any]:
    """Everything above in one JSON-ready dict: ``cpu``, ``blas``, ``xla``, ``packages``."""
    return {
        "cpu": cpu_description(),
        "blas": blas_description(),
        "xla": xla_description(),
        "packages": package_versions(),
    }


def machine_differences(recorded: dict[str, Any], here: dict[str, Any]) -> list[str]:
    """What differs between two :func:`machine_description` records among what moves the
    last bits of a result (CPU identity and ISA, BLAS kernels, XLA flags and threads, package
    versions of the packages both have), one line each; an empty list when they match. A record without a field (an
    older result) counts as differing in it: it cannot show that the machines agree."""
    diffs = []
    for key in ("vendor", "family", "model", "stepping", "implementer", "part", "arch", "isa"):
        a, b = recorded.get("cpu", {}).get(key), here.get("cpu", {}).get(key)
        if a != b:
            diffs.append(f"cpu {key}: {a!r} recorded, {b!r} here")
    kernels = [
        sorted((d.get("library"), d.get("kernel"), d.get("version")) for d in m.get("blas") or [])
        if "blas" in m
        else None
        for m in (recorded, here)
    ]
    if kernels[0] != kernels[1]:
        diffs.append(f"BLAS (library, kernel, version): {kernels[0]} recorded, {kernels[1]} here")
    for key in ("flags", "cpu_threads"):
        a, b = recorded.get("xla", {}).get(key), here.get("xla", {}).get(key)
        if a != b:
            diffs.append(f"XLA {key}: {a!r} recorded, {b!r} here")
    pa, pb = recorded.get("packages"), here.get("packages", {})
    if pa is None:
        diffs.append("package versions: not recorded")
    else:
        # A package only one side has (pytest in a test run, say) computes nothing either ran.
        changed = sorted(name for name in set(pa) & set(pb) if pa[name] != pb[name])
        if changed:
            shown = ", ".join(f"{n} {pa[n]} -> {pb[n]}" for n in changed[:8])
            diffs.append(f"package versions: {len(changed)} differ ({shown}{', ...' if len(changed) > 8 else ''})")
    return diffs
