"""Test-wide settings.

- Rank promotion raises, so a [B] vs [B, 1] mix-up fails loudly.
- A persistent XLA compilation cache (under .pytest_cache/) lets identical programs built
  by different tests, and by reruns, skip recompiling: XLA compiles dominate test time
  on two CPU cores. Every program is cached, however quick its compile.
- XLA:CPU compiles with LLVM's optimisation level 0 (``XLA_FLAGS``, inherited by the
  processes tests start): the tests' programs are tiny, so compiling them is most of the
  suite's time, and O0 cut it by ~40% (a small CLI study: 22 s of XLA compile -> 13 s, wall
  30 s -> 20 s). Results are compared within the tests' own runs; the one test that
  compares with committed results (test_reproduce.py) runs its study with the default.
"""
import os
from pathlib import Path

import pytest

TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):  # a level given explicitly wins
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

import jax  # noqa: E402 (after XLA_FLAGS: the backend reads them when it starts)

jax.config.update("jax_numpy_rank_promotion", "raise")
_cache = os.environ.get("JAXUNLEARN_TEST_CACHE", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "xla"))
jax.config.update("jax_compilation_cache_dir", _cache)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)



def pytest_addoption(parser):
    parser.addoption("--unlearner-plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                     help="also run the unlearner conformance suite on this plugin's unlearners (repeatable)")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Makes ``xdist_group`` marks group tests again under ``make test`` (``--dist loadgroup``).

    pytest-xdist groups a test by appending ``@GROUP`` to its node id on each worker, but
    xdist 3.8 writes ``item._nodeid``, which pytest 9 no longer reads (it keeps ``item._id``):
    the suffix was lost, every test was scheduled on its own, and the modules that share
    module-scoped fixtures (the notebooks, the fault-test reference run, ...) ran them once
    per worker, while the multi-process tests ran beside each other. The suffix is added
    here where xdist's did not take; with a pytest that reads ``_nodeid`` it is already
    there and nothing changes.
    """
    if not config.getoption("loadgroup", default=False):
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # a pytest before 9: xdist's own suffix works
        return
    for item in items:
        names = {str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                 for m in item.iter_markers("xdist_group")}
        if names and "@" not in item.nodeid and hasattr(item, "_id"):
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(sorted(names))}")


# tests/multidevice/ needs a process with four devices: tests/test_multidevice.py starts one.
collect_ignore = [] if os.environ.get("JAXUNLEARN_MULTIDEVICE") else ["multidevice"]
