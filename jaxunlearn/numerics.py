"""Numerics modes: ``native`` (XLA's defaults: fastest, bits depend on the CPU) and ``portable``
(XLA:CPU settings that remove the dependence of a study's bits on the CPU's instruction sets
beyond AVX2 and on XLA's platform-specific math). Portable does not make every result
bitwise equal on every CPU: the number of cores XLA:CPU's thread pool has, and for recurrent
models the CPU generation itself, still move the last bits (docs/REPRODUCIBILITY.md says
what holds where, with the measurements).

What moves XLA:CPU's results between CPUs, and what each portable flag removes, is measured
in docs/REPRODUCIBILITY.md. The flags reach XLA through the XLA_FLAGS environment variable,
which the backend reads once, when it starts: choose the mode before the first JAX
computation (the command line does it for you with ``--numerics``)::

    from jaxunlearn import numerics
    numerics.use("portable")        # before any JAX computation in this process

Host-side metrics (errors, W1, the SVC attack) do not depend on the mode: they avoid the
BLAS, whose kernel is picked per CPU (jaxunlearn.metrics.errors).
"""

from __future__ import annotations

import os

__all__ = ["DEFAULT", "MODES", "PORTABLE_XLA_FLAGS", "current", "flags_for", "use"]

MODES = ("native", "portable")
# The command line's default (--numerics): the committed studies are made in it. It cost no
# measurable speed on the CPU (docs/REPRODUCIBILITY.md); the flags do not touch GPU code.
# The Python API leaves XLA_FLAGS as the process has them: call use() to choose.
DEFAULT = "portable"

# Each flag, and what it takes away (measured on an AMD EPYC Zen 4 with AVX-512, jax 0.10.2,
# and under an emulated Zen 3: docs/REPRODUCIBILITY.md):
PORTABLE_XLA_FLAGS: tuple[str, ...] = (
    # generate code for AVX2 at most: XLA otherwise uses every ISA the host has, and a conv
    # net's gradients came out different under AVX-512, AVX2 and SSE4.2
    "--xla_cpu_max_isa=AVX2",
    # XLA's own math without platform-specific variants ("faster code at the expense of
    # consistent results across CPUs", XLA's description); it changed the conv net's bits too
    "--xla_cpu_enable_platform_dependent_math=false",
)


def flags_for(mode: str, existing: str = "") -> str:
    """The XLA_FLAGS string for ``mode``: ``existing`` plus the portable flags it lacks (a flag
    given explicitly in ``existing`` is kept as given); for native, ``existing`` without the
    portable flags (any other flag, explicit ones included, is kept)."""
    if mode not in MODES:
        raise ValueError(f"numerics must be one of {MODES}, got {mode!r}")
    if mode == "native":
        return " ".join(part for part in existing.split() if part not in PORTABLE_XLA_FLAGS)
    given = {part.split("=", 1)[0] for part in existing.split()}
    extra = [flag for flag in PORTABLE_XLA_FLAGS if flag.split("=", 1)[0] not in given]
    return " ".join([existing.strip(), *extra]).strip()


def current() -> str:
    """``portable`` when XLA_FLAGS holds every portable flag with its portable value, else
    ``native``."""
    parts = set(os.environ.get("XLA_FLAGS", "").split())
    return "portable" if all(flag in parts for flag in PORTABLE_XLA_FLAGS) else "native"


def _backend_started() -> bool:
    import sys

    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge  # no public API says whether the backend has started
    except ImportError:  # pragma: no cover - a jax without the module: assume it has
        return True
    check = getattr(xla_bridge, "backends_are_initialized", None)
    return True if check is None else bool(check())


def use(mode: str) -> None:
    """Selects ``mode`` for this process by setting XLA_FLAGS.

    Raises:
        ValueError: an unknown mode.
        RuntimeError: JAX's backend has already started with other numerics (XLA reads its
            flags once): choose the mode at the start of the program, or run
            ``XLA_FLAGS="$(python -m jaxunlearn.numerics portable)" python ...``.
    """
    wanted = flags_for(mode, os.environ.get("XLA_FLAGS", ""))
    if wanted.split() == os.environ.get("XLA_FLAGS", "").split():
        return
    if _backend_started():
        raise RuntimeError(
            f"numerics {mode!r} must be chosen before JAX's first computation: the XLA backend has already "
            f"started with XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}. Call jaxunlearn.numerics.use() at the "
            f'top of the program, or start Python with XLA_FLAGS="{flags_for(mode)}".'
        )
    os.environ["XLA_FLAGS"] = wanted


if __name__ == "__main__":  # python -m jaxunlearn.numerics portable -> the flags, for a shell
    import sys

    print(flags_for(sys.argv[1] if len(sys.argv) > 1 else "portable", os.environ.get("XLA_FLAGS", "")))
